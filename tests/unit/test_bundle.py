"""The Databricks bundle, checked offline (the `databricks` CLI downloads a binary, so `bundle
validate` cannot run here): structure, targets and variables, one task per stage in dependency
order, every task's entry point exists and its parameters parse with the CLI and load as config,
and the API key comes only from a secret scope."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import tomllib
import yaml

from webscale_rl import STAGES
from webscale_rl.cli import build_parser
from webscale_rl.config import load_config
from webscale_rl.llm.secrets import find_api_key

ROOT = Path(__file__).resolve().parents[2]


def load_bundle() -> tuple[dict, dict]:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    jobs: dict = {}
    for pattern in bundle["include"]:
        for path in sorted(ROOT.glob(pattern)):
            jobs.update(yaml.safe_load(path.read_text())["resources"]["jobs"])
    return bundle, jobs


def substitute(text: str, bundle: dict, target: str = "dev") -> str:
    """Resolve ${var.x} (target value, else default) and ${workspace.file_path} (the synced repo)."""
    values = {k: v.get("default") for k, v in bundle["variables"].items()}
    values.update(bundle["targets"][target].get("variables", {}))

    def one(m):
        ref = m.group(1)
        if ref == "workspace.file_path":
            return str(ROOT)
        assert ref.startswith("var."), ref
        assert ref[4:] in values, f"undefined variable {ref}"
        return str(values[ref[4:]])

    return re.sub(r"\$\{([^}]+)\}", one, text)


def all_tasks(jobs):
    return [(name, task) for name, job in jobs.items() for task in job["tasks"]]


def test_bundle_structure_targets_and_variables():
    bundle, jobs = load_bundle()
    assert bundle["bundle"]["name"] == "webscale-rl"
    assert set(bundle["targets"]) == {"dev", "prod"}
    assert bundle["targets"]["dev"]["mode"] == "development" and bundle["targets"]["prod"]["mode"] == "production"
    assert {"catalog", "schema", "llm_base_url", "secret_scope", "secret_key", "warehouse", "input_path"} <= set(bundle["variables"])
    assert bundle["artifacts"]["default"]["type"] == "whl"
    assert set(jobs) == {"webscale_rl_stages", "webscale_rl_pipeline"}
    # Cluster and serverless: the stage job runs on a job cluster, the whole pipeline serverless.
    stages_job, whole = jobs["webscale_rl_stages"], jobs["webscale_rl_pipeline"]
    cluster_keys = {c["job_cluster_key"] for c in stages_job["job_clusters"]}
    assert all(t["job_cluster_key"] in cluster_keys for t in stages_job["tasks"])
    env_keys = {e["environment_key"] for e in whole["environments"]}
    assert all(t["environment_key"] in env_keys for t in whole["tasks"])


def test_one_task_per_stage_in_dependency_order():
    _, jobs = load_bundle()
    tasks = jobs["webscale_rl_stages"]["tasks"]
    by_key = {t["task_key"]: t for t in tasks}
    assert set(by_key) == set(STAGES)
    # Walk depends_on from the task nobody depends on back to the root: that must be STAGES.
    parents = {k: [d["task_key"] for d in t.get("depends_on", [])] for k, t in by_key.items()}
    assert all(len(p) <= 1 for p in parents.values())
    order, seen = [], set()
    while len(order) < len(by_key):
        ready = [k for k in by_key if k not in seen and all(p in seen for p in parents[k])]
        assert len(ready) == 1, f"ambiguous or cyclic order at {order}: {ready}"
        order.append(ready[0])
        seen.add(ready[0])
    assert order == list(STAGES)
    for key, task in by_key.items():
        params = task["python_wheel_task"]["parameters"]
        assert params[params.index("--from") + 1] == key and params[params.index("--until") + 1] == key


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_every_task_entry_point_exists_and_its_parameters_parse(target):
    bundle, jobs = load_bundle()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    scripts = project["scripts"]
    for job, task in all_tasks(jobs):
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"].replace("_", "-") == project["name"], job
        target_fn = scripts[wheel_task["entry_point"]]  # KeyError: no such entry point
        module, func = target_fn.split(":")
        assert callable(getattr(__import__(module, fromlist=[func]), func))
        params = [substitute(str(p), bundle, target) for p in wheel_task["parameters"]]
        args = build_parser().parse_args(params)
        assert args.command == "run" and args.warehouse
        cfg = load_config(args.config, args.overrides)  # unknown keys, wrong types → ConfigError
        assert cfg.llm.provider == "openai"
        assert cfg.warehouse.catalog == bundle["targets"][target]["variables"]["catalog"]
        assert cfg.warehouse.schema == bundle["variables"]["schema"]["default"]
        if "ingest" in (args.start, None):
            assert args.input, f"{job}/{task['task_key']} ingests but has no --input"


def test_api_key_only_from_the_secret_scope():
    bundle, jobs = load_bundle()
    cluster = jobs["webscale_rl_stages"]["job_clusters"][0]["new_cluster"]
    assert cluster["spark_env_vars"]["OPENAI_API_KEY"] == "{{secrets/${var.secret_scope}/${var.secret_key}}}"
    for job, task in all_tasks(jobs):
        text = " ".join(str(p) for p in task["python_wheel_task"]["parameters"])
        assert "secrets/" not in text and "api_key=" not in text and "sk-" not in text, job
    # Serverless: the job reads the scope itself when the env variable is missing.
    whole = jobs["webscale_rl_pipeline"]["tasks"][0]["python_wheel_task"]["parameters"]
    args = build_parser().parse_args([substitute(p, bundle) for p in whole])
    cfg = load_config(args.config, args.overrides)
    assert (cfg.databricks.secret_scope, cfg.databricks.secret_key) == ("webscale_rl", "llm_api_key")


class FakeDBUtils:
    """dbutils with one secret; records what was read."""

    def __init__(self, value: str = "sk-from-scope") -> None:
        self.value, self.reads = value, []
        self.secrets = self

    def get(self, scope, key):
        self.reads.append((scope, key))
        return self.value


def test_the_key_comes_from_the_secret_scope_when_its_env_variable_is_unset(monkeypatch):
    monkeypatch.delenv("WEBSCALE_TEST_KEY", raising=False)
    cfg = load_config(None, ["databricks.secret_scope=s", "databricks.secret_key=k", "llm.api_key_env=WEBSCALE_TEST_KEY"])
    dbutils = FakeDBUtils()
    assert find_api_key(cfg, dbutils=dbutils) == "sk-from-scope"
    assert dbutils.reads == [("s", "k")]
    # Returned only: the key is not put into the environment (nor anywhere else).
    assert "WEBSCALE_TEST_KEY" not in os.environ


def test_an_env_variable_already_set_wins_over_the_secret_scope(monkeypatch):
    monkeypatch.setenv("WEBSCALE_TEST_KEY", "sk-from-env")
    cfg = load_config(None, ["databricks.secret_scope=s", "databricks.secret_key=k", "llm.api_key_env=WEBSCALE_TEST_KEY"])
    dbutils = FakeDBUtils("sk-from-scope")  # would give a different key if it were asked
    assert find_api_key(cfg, dbutils=dbutils) == "sk-from-env"
    assert dbutils.reads == []


def test_both_ways_of_naming_the_secret_reach_the_same_function(monkeypatch):
    monkeypatch.delenv("WEBSCALE_TEST_KEY", raising=False)
    cfg = load_config(None, ["llm.api_key_secret=scope2/key2", "llm.api_key_env=WEBSCALE_TEST_KEY"])
    dbutils = FakeDBUtils("sk-2")
    assert find_api_key(cfg, dbutils=dbutils) == "sk-2" and dbutils.reads == [("scope2", "key2")]
    # No secret configured and no env variable: no key (a keyless local server is fine).
    assert find_api_key(load_config(None, ["llm.api_key_env=WEBSCALE_TEST_KEY"]), dbutils=FakeDBUtils()) is None
