"""The Databricks bundle's stage order and entry point, and the one function that finds the API key.
The bundle's schema, targets and parameters are checked against the Databricks CLI in
tests/unit/test_bundle_schema.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import tomllib
import yaml

from webscale_rl import STAGES
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


def test_one_task_per_stage_in_dependency_order():
    _, jobs = load_bundle()
    # The quality report runs after the stages (tests/unit/test_bundle_schema.py checks it).
    tasks = [t for t in jobs["webscale_rl_stages"]["tasks"] if "python_wheel_task" in t]
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


def test_the_wheel_tasks_entry_point_exits_non_zero_on_failure(tmp_path, monkeypatch, capsys):
    """A python_wheel_task calls the entry point's function and ignores what it returns: a failed
    run must leave through SystemExit with a non-zero code, as the console script does."""
    _, jobs = load_bundle()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry_points = {task["python_wheel_task"]["entry_point"] for _, task in all_tasks(jobs) if "python_wheel_task" in task}
    assert entry_points == {"webscale-rl"}
    module, func = scripts["webscale-rl"].split(":")
    entry = getattr(__import__(module, fromlist=[func]), func)
    monkeypatch.setattr("sys.argv", ["webscale-rl", "run", "--warehouse", str(tmp_path), "--config", "no-such-config"])
    with pytest.raises(SystemExit) as exited:
        entry()
    assert exited.value.code == 2
    assert "no-such-config" in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["webscale-rl", "--version"])
    with pytest.raises(SystemExit) as exited:
        entry()
    assert exited.value.code == 0


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
    cfg = load_config(None, ["llm.api_key_secret=s/k", "llm.api_key_env=WEBSCALE_TEST_KEY"])
    dbutils = FakeDBUtils()
    assert find_api_key(cfg, dbutils=dbutils) == "sk-from-scope"
    assert dbutils.reads == [("s", "k")]
    # Returned only: the key is not put into the environment (nor anywhere else).
    assert "WEBSCALE_TEST_KEY" not in os.environ


def test_an_env_variable_already_set_wins_over_the_secret_scope(monkeypatch):
    monkeypatch.setenv("WEBSCALE_TEST_KEY", "sk-from-env")
    cfg = load_config(None, ["llm.api_key_secret=s/k", "llm.api_key_env=WEBSCALE_TEST_KEY"])
    dbutils = FakeDBUtils("sk-from-scope")  # would give a different key if it were asked
    assert find_api_key(cfg, dbutils=dbutils) == "sk-from-env"
    assert dbutils.reads == []


def test_no_secret_and_no_env_variable_is_no_key(monkeypatch):
    monkeypatch.delenv("WEBSCALE_TEST_KEY", raising=False)
    # No secret configured and no env variable: no key (a keyless local server is fine).
    assert find_api_key(load_config(None, ["llm.api_key_env=WEBSCALE_TEST_KEY"]), dbutils=FakeDBUtils()) is None


@pytest.mark.parametrize("job", [["jobs/run_pipeline.py"], ["jobs/run_stage.py", "filter"]])
def test_the_spark_submit_entry_points_exit_non_zero_on_failure(job, tmp_path):
    """spark-submit and a Databricks spark_python_task run the job file: a bad config must fail the
    process (exit 2, one line naming it), not end as a success."""
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / job[0]), *job[1:], "--warehouse", str(tmp_path / "wh"), "--config", "no-such-config"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr[-1000:]
    assert "no-such-config" in done.stderr
