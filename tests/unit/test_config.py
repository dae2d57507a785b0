"""The config is a leaf that ships its YAML inside the package: `--config NAME` loads a packaged
config, a path still works, an unknown one is an error that lists the packaged names, and
importing it loads neither Spark nor the pipeline. (The installed wheel: test_installed_wheel.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO as ROOT
from webscale_rl.cli import build_parser, main
from webscale_rl.config import PII_KINDS, ConfigError, load_config, packaged_config_names
from webscale_rl.limits import check_call_budget, document_budget_bytes, with_call_limits

PACKAGED = ("azure", "databricks", "local", "openai", "vllm")
# The stages that call the model (the pipeline derives this list from its stage objects).
LLM_STAGE_NAMES = ("llm_filter", "profile", "generate", "check")


def test_the_packaged_configs_live_inside_the_package():
    assert tuple(packaged_config_names()) == PACKAGED
    assert not (ROOT / "conf").exists()
    assert all((ROOT / "webscale_rl" / "conf" / f"{name}.yaml").is_file() for name in PACKAGED)


def test_config_openai_resolves_by_name_on_the_command_line():
    args = build_parser().parse_args(["run", "--warehouse", "wh", "--config", "openai"])
    cfg = load_config(args.config, args.overrides)
    assert cfg.llm.provider == "openai" and cfg.llm.models["generate"] == "gpt-4.1"
    assert load_config("databricks").llm.api_key_env == "DATABRICKS_TOKEN"


def test_a_path_still_works_and_the_default_is_the_packaged_local(tmp_path, monkeypatch):
    own = tmp_path / "mine.yaml"
    own.write_text("llm:\n  provider: openai\n  max_concurrency: 7\n")
    assert load_config(str(own)).llm.max_concurrency == 7
    assert load_config(own).llm.max_concurrency == 7
    monkeypatch.chdir(tmp_path)  # the default does not depend on the working directory
    default = load_config()
    assert default == load_config("local")
    assert default.llm.max_doc_chars == 2500 and default.llm.rows_per_partition == 8  # local.yaml's, not built-in


@pytest.mark.parametrize("ref", ["opnai", "conf/openai.yaml", "missing.yaml"])
def test_an_unknown_name_or_path_is_an_error_listing_the_packaged_names(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(ref)
    assert repr(ref) in str(info.value)
    assert "azure, databricks, local, openai, vllm" in str(info.value)


def test_the_cli_reports_an_unknown_config_in_one_line(capsys):
    assert main(["run", "--warehouse", "wh", "--config", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config 'nosuch' is neither a file nor a packaged config") and "openai" in err


def test_importing_the_config_loads_no_spark_and_nothing_of_the_pipeline():
    code = (
        "import sys, webscale_rl.config as c; c.load_config('openai');"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')"
        " or m.startswith(('webscale_rl.stages', 'webscale_rl.quality', 'webscale_rl.limits', 'webscale_rl.llm',"
        " 'webscale_rl.pipeline', 'webscale_rl.pii')));"
        "print(bad); assert not bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_checks_name_the_key():
    with pytest.raises(ConfigError, match="limits.on_too_large"):
        load_config(overrides=["limits.on_too_large=drop"])
    with pytest.raises(ConfigError, match="pii.kinds"):
        load_config(overrides=["pii.kinds=[email, ssn]"])
    with pytest.raises(ConfigError, match="quality.severity.unique"):
        load_config(overrides=["quality.severity.unique(qa_id)=fatal"])
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['databricks'\]"):
        load_config(overrides=["databricks.secret_scope=s"])  # one way to name the key's secret: llm.api_key_secret


def test_the_pii_kinds_of_the_config_are_the_scrubbers_kinds():
    from webscale_rl.pii import PII_PATTERNS  # imports pyspark (not a Spark session)

    assert tuple(PII_PATTERNS) == PII_KINDS


def test_the_call_budget_is_checked_when_the_run_fits_its_limits():
    # It needs the prompts of the LLM stages, so loading the config accepts it ...
    cfg = load_config(overrides=["limits.max_input_tokens=1000"])
    # ... and fitting the run's limits refuses it, naming the key.
    with pytest.raises(ConfigError, match=r"limits.max_input_tokens=1000 leaves .* bytes of document"):
        with_call_limits(cfg, LLM_STAGE_NAMES)
    with pytest.raises(ConfigError, match="limits.max_input_tokens"):
        check_call_budget(cfg, LLM_STAGE_NAMES)
    # No LLM stage: no per-call budget.
    assert document_budget_bytes(cfg, ()) is None
    fitted = with_call_limits(load_config(overrides=["limits.max_input_tokens=4000", "llm.max_doc_chars=100000"]), LLM_STAGE_NAMES)
    assert 500 <= fitted.llm.max_doc_chars < 8000


def test_the_json_schema_accepts_the_packaged_configs_and_rejects_what_load_config_rejects(capsys):
    import json

    import jsonschema
    import yaml

    assert main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    for name in PACKAGED:
        text = (ROOT / "webscale_rl" / "conf" / f"{name}.yaml").read_text()
        assert not list(validator.iter_errors(yaml.safe_load(text))), name
    wrong = {"llm": {"provider": "x", "max_concurency": 4}, "limits": {"on_too_large": "drop"}}
    messages = sorted(e.message for e in validator.iter_errors(wrong))
    assert any("'x' is not one of" in m for m in messages) and any("'drop' is not one of" in m for m in messages)
    assert any("'max_concurency' was unexpected" in m for m in messages)
