"""The stage contract (stages/base.Stage) without Spark: reads and writes are checked with clear
errors, and every list that used to be keyed by stage name is derived from the stage objects."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from types import SimpleNamespace

import pytest

import webscale_rl
from webscale_rl.config import Config, ConfigError
from webscale_rl.pipeline import check_config
from webscale_rl.quality.suites import batch_suite, reason_pattern, table_suites
from webscale_rl.rules import datatrove as filter_datatrove
from webscale_rl.stages import filter as filter_stage
from webscale_rl.stages.base import ContractError
from webscale_rl.stages.order import LLM_STAGES, PIPELINE, STAGES, stage_named
from webscale_rl.summary import PipelineError


def frame(*columns: str) -> SimpleNamespace:
    return SimpleNamespace(columns=list(columns))  # the checks read the schema only


def test_missing_read_column_names_stage_and_column():
    llm_filter = stage_named("llm_filter")
    llm_filter.check_reads(frame("doc_id", "url", "text", "source", "n_words", "extra"))
    with pytest.raises(ContractError, match=r"stage 'llm_filter' reads column\(s\) url, n_words, which its input lacks") as err:
        llm_filter.check_reads(frame("doc_id", "text", "source"))
    assert isinstance(err.value, PipelineError)  # the CLI reports it as a failed run


def test_missing_write_column_names_stage_and_column():
    generate = stage_named("generate")
    generate.check_writes(frame(*generate.writes, "_reject_reason", "_reject_detail"))
    without_answer = [c for c in generate.writes if c != "answer"]
    with pytest.raises(ContractError, match=r"stage 'generate' declares it writes column\(s\) answer, which its output lacks"):
        generate.check_writes(frame(*without_answer))


def test_names_and_llm_stages_come_from_the_stage_objects():
    assert STAGES == tuple(s.name for s in PIPELINE) == webscale_rl.STAGES
    assert STAGES == ("ingest", "filter", "dedup", "llm_filter", "profile", "generate", "check", "verify", "decontaminate")
    assert LLM_STAGES == ("llm_filter", "profile", "generate", "check", "verify")
    assert [s.name for s in PIPELINE if s.needs_landed_rows] == ["check"]
    # dedup judges new documents against the stored fingerprints of kept ones, not their text.
    assert {s.name: s.beside.name for s in PIPELINE if s.beside} == {"dedup": "dedup_signatures"}
    assert [s.name for s in PIPELINE if s.work_items] == ["generate"]
    # generate's items are personas, keyed by qa_id: a failed persona is retried alone (issue 19).
    assert {s.name: s.input_key for s in PIPELINE if s.input_key != ("doc_id",)} == {
        "generate": ("qa_id",),
        "check": ("qa_id",),
        "verify": ("qa_id",),
        "decontaminate": ("qa_id",),
    }


def test_suites_follow_the_stage_declarations():
    q = Config().quality
    suites = table_suites(q)
    assert all(s.table in suites for s in PIPELINE)
    assert reason_pattern("filter").split("|") == list(filter_stage.REJECTION_REASONS)
    named = [*filter_stage.NAMED_CHECKS, *(r.name for r in filter_stage.RULES), *(r[0] for r in filter_datatrove.RULES)]
    assert set(filter_stage.REJECTION_REASONS) == set(named)  # every rule of both presets, each once
    assert reason_pattern("decontaminate") == "contaminated:.+"
    relations = {s: {e.kind for e in batch_suite(s, q)} for s in STAGES}
    assert {s for s, kinds in relations.items() if "rows_at_most_input" in kinds} == {"ingest", "filter", "dedup", "llm_filter", "profile"}
    assert all("rows_accounted" in kinds for kinds in relations.values())


def test_check_config_needs_a_model_per_llm_stage_and_known_severities():
    cfg = Config()
    check_config(cfg)
    assert cfg.llm.models["verify"] == cfg.llm.models["check"]  # a Config built in Python: verify uses check's model
    no_check_model = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, models={s: "m" for s in LLM_STAGES if s not in ("check", "verify")}))
    with pytest.raises(ConfigError, match=r"llm.models lacks a model for stage\(s\) \['check', 'verify'\]"):
        check_config(no_check_model)
    unknown = dataclasses.replace(cfg, quality=dataclasses.replace(cfg.quality, severity={"no_such_check": "warning"}))
    with pytest.raises(ConfigError, match="unknown expectation 'no_such_check'"):
        check_config(unknown)


def test_loading_the_config_does_not_load_pyspark():
    code = "import sys, webscale_rl, webscale_rl.config; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


class _Conf:
    def __init__(self, master):
        self.master = master

    def get(self, key, default=None):
        return self.master if key == "spark.master" else default


@pytest.mark.parametrize(
    ("provider", "master", "refused"),
    [("local", "spark://10.1.2.3:7077", True), ("local", "yarn", True), ("local", "local[4]", False), ("openai", "spark://10.1.2.3:7077", False)],
)
def test_the_embedded_model_is_refused_on_a_cluster_with_the_setting_to_use(provider, master, refused):
    from webscale_rl.config import load_config
    from webscale_rl.pipeline import check_llm_reachable

    cfg = load_config(None, [f"llm.provider={provider}"])
    spark = SimpleNamespace(conf=_Conf(master))
    if not refused:
        check_llm_reachable(cfg, spark, PIPELINE)
        return
    with pytest.raises(ConfigError, match=r"llm.provider=local .* master .* cannot reach: .* --set llm.base_url=http://HOST:PORT/v1"):
        check_llm_reachable(cfg, spark, PIPELINE)
    check_llm_reachable(cfg, spark, PIPELINE[:3])  # no LLM stage in the run: nothing to reach


def test_the_public_python_api():
    code = (
        "import sys; from webscale_rl import Config, load_config; assert 'pyspark' not in sys.modules; "
        "from webscale_rl import run_pipeline, RunSummary, PipelineError, STAGES; "
        "assert run_pipeline.__module__ == 'webscale_rl.pipeline' and STAGES[-1] == 'decontaminate'; "
        "assert isinstance(load_config('openai'), Config)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
