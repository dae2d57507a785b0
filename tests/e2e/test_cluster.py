"""spark-submit on real Spark standalone clusters on 127.0.0.1, started from the pyspark distribution's
own launcher (spark-class); the package is built as a wheel and shipped with --py-files, the jars
with --jars; the pipeline runs against the fake LLM endpoint in this process.

A cluster whose worker shares no disk with the driver (tests/support/isolated_cluster.py: another
Unix user, a mount namespace without the driver's /tmp, HOME and checkout): the worker really sees
none of the driver's files; a run with input and warehouse on s3a:// (a moto server) gives the
tables of a local run, shows LLM progress, a re-run answers every call from the response cache, and
the embedded model is refused on a cluster. (A cluster sharing the driver's disk is the easier case
of the same run; it is not run separately.)
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import isolated_cluster as ic
from tests.support.docs import ARTICLE_VARIANTS
from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO
from tests.support.s3_server import FAKE_CREDENTIALS, s3_server  # noqa: F401  (fixture)
from tests.support.warehouse_compare import read_from, snapshot
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.spark import cached_delta_jars, resolve_connector_jars
from webscale_rl.stages.order import STAGES

SPARK_HOME = ic.SPARK_HOME
# ARTICLE_VARIANTS are variants of two articles: near-duplicate dedup (tested in test_dedup) is off so they all go on.
OVERRIDES = ["llm.backoff_base_s=0.01", "llm.rows_per_partition=2", "quality.enabled=false", "mlflow.enabled=false", "dedup.fuzzy.enabled=false"]
# Off the driver's machine live call counts are off (said once) and each committed slice is reported.
PROGRESS_OFF = "progress: live LLM call counts are off on master spark://"
SLICE_DONE = re.compile(r"\[(llm_filter|profile|generate|check)\] \d+/\d+ LLM calls done, .*\(slice \d+/\d+ staged\)")
# What the executors import; the package itself comes with --py-files.
IMPORTS = ("pyspark", "pandas", "pyarrow", "openai", "jsonschema", "numpy")


def cluster_env() -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "OPENAI_API_KEY": "sk-test",
    }


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("webscale_rl-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def isolated_cluster(tmp_path_factory):
    """A master and one isolated worker (two cores) for every test of the module. The worker has
    the S3 server's credentials in its own environment, as a node would have its own."""
    problem = ic.isolation_problem()
    if problem:
        pytest.skip(f"cannot run workers that share no disk with the driver: {problem}")
    cluster = ic.start_cluster(tmp_path_factory.mktemp("isolated-cluster"), n_workers=1, cores=2, memory="2g", worker_extra_env=FAKE_CREDENTIALS)
    yield cluster
    cluster.stop()
    ic.remove_worker_dirs(cluster)


def submit_cmd(master: str, jars: list[Path], py_files: list[Path], confs: list[str], app: Path, *app_args: str) -> list[str]:
    cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master, "--driver-memory", "1g", "--executor-memory", "768m"]
    if jars:
        cmd += ["--jars", ",".join(str(j) for j in jars)]
    if py_files:
        cmd += ["--py-files", ",".join(str(p) for p in py_files)]
    for conf in ["spark.sql.shuffle.partitions=4", "spark.databricks.delta.snapshotPartitions=2", *confs]:
        cmd += ["--conf", conf]
    return [*cmd, str(app), *app_args]


def pipeline_cmd(master: str, jars: list[Path], wheel: Path, confs: list[str], inputs: str, warehouse: str, sets: list[str]) -> list[str]:
    # Delta's SQL extension is static: the launcher must pass it. The Delta catalog is not
    # passed: the job adds it at run time when the launcher did not.
    confs = ["spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension", *confs]
    args = ["--input", inputs, "--warehouse", warehouse, "--config", "openai"]
    for s in sets:
        args += ["--set", s]
    return submit_cmd(master, jars, [wheel], confs, REPO / "jobs" / "run_pipeline.py", *args)


def submit(cmd: list[str], cwd: Path, log: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run spark-submit, keep its whole output in `log`, and fail with the driver's problems."""
    done = subprocess.run(cmd, cwd=cwd, env=cluster_env(), capture_output=True, text=True, timeout=timeout)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    problems = [ln for ln in done.stderr.splitlines() if " INFO " not in ln and " WARN " not in ln]
    assert done.returncode == 0, (f"see {log}", done.stdout[-2000:], "\n".join(problems)[-4000:])
    return done


# --- a cluster that shares no disk with the driver ---------------------------------------------


# What a process of an isolated worker sees: its identity, and each given driver file's fate.
SEES = """
import importlib, json, os, sys
for m in sys.argv[2].split(","):
    importlib.import_module(m)
try:
    open(sys.argv[1]).read()
    got = "read"
except OSError as exc:
    got = type(exc).__name__
print(json.dumps({"uid": os.getuid(), "home": os.environ["HOME"], "tmpdir": os.environ["TMPDIR"], "driver_file": got,
                  "checkout": os.listdir(sys.argv[3]) if os.path.isdir(sys.argv[3]) else None}))
"""


def test_an_isolated_worker_cannot_see_the_drivers_files(tmp_path):
    """No Spark: a process started the way an isolated worker is (user, namespace, folders,
    environment) runs this Python with the executors' imports, yet sees none of the driver's files."""
    problem = ic.isolation_problem()
    if problem:
        pytest.skip(f"cannot run workers that share no disk with the driver: {problem}")
    secret = tmp_path / "driver-only.txt"  # pytest's tmp_path: under /tmp/pytest-of-<user>, mode 0700
    secret.write_text("driver only", encoding="utf-8")
    dirs = ic.WorkerDirs(Path(tempfile.mkdtemp(prefix="wsrl-worker-")))
    try:
        done = ic.run_isolated([sys.executable, "-c", SEES, str(secret), ",".join(IMPORTS), str(REPO)], dirs)
    finally:
        shutil.rmtree(dirs.root, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["uid"] != 0 and seen["uid"] == pwd.getpwnam(ic.WORKER_USER).pw_uid
    assert seen["home"] == str(dirs.home) and seen["tmpdir"] == str(dirs.tmp)
    assert seen["driver_file"] in ("FileNotFoundError", "PermissionError"), seen
    # The checkout is an empty tmpfs there, but for this interpreter's venv mounted back (when it
    # lives in the checkout): no source, no Makefile, no tests.
    venv = Path(sys.prefix)
    mounted_back = [venv.relative_to(REPO).parts[0]] if venv.is_relative_to(REPO) else []
    assert seen["checkout"] == mounted_back, seen
    assert secret.read_text(encoding="utf-8") == "driver only"  # while the driver reads it


@pytest.mark.spark_processes
def test_executors_on_the_isolated_cluster_cannot_read_the_drivers_files(isolated_cluster, tmp_path):
    secret = tmp_path / "driver-only.txt"
    secret.write_text("driver only", encoding="utf-8")
    probe = REPO / "tests" / "support" / "cluster_probe.py"
    done = submit(submit_cmd(isolated_cluster.master, [], [], [], probe, str(secret), str(REPO / "Makefile")), tmp_path, tmp_path / "probe.out", 300)
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    seen = json.loads(line.removeprefix("RESULT "))
    assert seen["driver"]["user"] == os.getuid()
    (worker,) = isolated_cluster.workers
    # One executor, on the one worker: another user, its own HOME and TMPDIR, none of the driver's files.
    assert seen["executors"] == [
        {
            "user": ic.WORKER_USER,
            "uid": pwd.getpwnam(ic.WORKER_USER).pw_uid,
            "home": str(worker.home),
            "tmpdir": str(worker.tmp),
            "files": {str(secret): "FileNotFoundError", str(REPO / "Makefile"): "FileNotFoundError"},
        }
    ], seen


def s3_snapshot(s3, warehouse: str, log: Path) -> dict:
    """The S3 warehouse's tables and duplicate keys, read by a local Spark with s3a in a process
    of its own (the suite's shared session has no hadoop-aws)."""
    cmd = [sys.executable, "-m", "tests.support.s3_warehouse_snapshot", warehouse]
    for arg in s3.conf_args:
        cmd += ["--conf", arg]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (f"see {log}", done.stderr[-3000:])
    return json.loads(lines[-1].removeprefix("RESULT "))


def drop_all_but_the_cache(s3, prefix: str) -> list[str]:
    """Delete the warehouse's objects except the LLM response cache; returns the keys kept."""
    keys = s3.keys(prefix + "/")
    kept = [k for k in keys if k.removeprefix(prefix + "/").split("/")[0] in ("llm_cache", "_llm_cache")]
    for key in set(keys) - set(kept):
        s3.client().delete_object(Bucket=s3.bucket, Key=key)
    return kept


@pytest.mark.spark_processes
@pytest.mark.timeout(2700)  # two whole runs on the cluster, every commit through the S3 server
def test_s3_warehouse_on_a_cluster_without_shared_disk_equals_a_local_run(spark, isolated_cluster, wheel, s3_server, tmp_path):  # noqa: F811
    """Issue 15: workers that cannot see the driver's folders, input and warehouse on s3a://."""
    s3 = s3_server
    prefix = f"cluster-{tmp_path.name}"
    inputs, warehouse = s3.uri(prefix, "in", "docs.jsonl"), s3.uri(prefix, "wh")
    docs = "".join(json.dumps(d) + "\n" for d in ARTICLE_VARIANTS)
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/in/docs.jsonl", Body=docs.encode())
    jars = [*cached_delta_jars(), *resolve_connector_jars([warehouse])]
    assert len(jars) > 2, f"Delta or hadoop-aws jars are missing from the cache: {jars}"
    local_inputs = tmp_path / "docs.jsonl"
    local_inputs.write_text(docs, encoding="utf-8")

    with FakeOpenAI() as fake:
        # Four items per slice: the LLM stages commit (and report) several slices.
        sets = [f"llm.base_url={fake.base_url}", "llm.max_concurrency=2", "llm.slice_rows=4", *OVERRIDES]
        cmd = pipeline_cmd(isolated_cluster.master, jars, wheel, s3.conf_args, inputs, warehouse, sets)
        (worker,) = isolated_cluster.workers
        earlier_apps = set(worker.work.glob("app-*"))
        first = submit(cmd, tmp_path, tmp_path / "submit-1.out")
        paid = len(fake.requests)
        run_pipeline([str(local_inputs)], tmp_path / "wh-local", load_config("openai", sets), spark=spark, log=lambda _: None)
        local_paid = len(fake.requests) - paid

        out = first.stdout + first.stderr
        assert "accounted for" in out
        assert out.count(PROGRESS_OFF) == 1, f"progress should say once that live counts are off: {tmp_path / 'submit-1.out'}"
        assert len([ln for ln in out.splitlines() if SLICE_DONE.search(ln)]) >= 4, f"no per-slice progress in {tmp_path / 'submit-1.out'}"
        assert paid == local_paid > 0  # the cluster paid for what a local run pays for, no more
        # The tasks ran in the isolated worker's executors, and nothing landed on the local disk.
        (app,) = set(worker.work.glob("app-*")) - earlier_apps
        assert any("Running task" in p.read_text(errors="replace") for p in app.glob("*/stderr")), f"no task ran in {app}"
        assert not list(tmp_path.glob("s3a*")) and not (REPO / "s3a:").exists()
        assert f"{prefix}/wh/qa/_delta_log/00000000000000000000.json" in s3.keys(f"{prefix}/wh/qa/")

        local = snapshot(spark, tmp_path / "wh-local")
        on_s3 = s3_snapshot(s3, warehouse, tmp_path / "snapshot-1.out")
        assert on_s3["duplicates"] == {}
        assert on_s3["snapshot"].keys() == local.keys() and len(local["qa"]) == 4  # one fact per document
        for table, rows in read_from(on_s3["snapshot"], inputs, str(local_inputs)).items():
            assert rows == local[table], table

        # The same warehouse again, its tables dropped and its response cache kept: the stages up to
        # profile (the first two LLM stages; every LLM stage caches through the same columns and
        # merge) run again on the cluster and every reply comes from the cache (no shared disk needed).
        assert drop_all_but_the_cache(s3, f"{prefix}/wh"), "the warehouse on S3 holds no LLM response cache"
        again = submit([*cmd, "--until", "profile"], tmp_path, tmp_path / "submit-2.out")
        assert len(fake.requests) == paid + local_paid, f"the re-run made {len(fake.requests) - paid - local_paid} LLM call(s)"
        assert "accounted for" in again.stdout + again.stderr

    on_s3 = s3_snapshot(s3, warehouse, tmp_path / "snapshot-2.out")
    assert on_s3["duplicates"] == {}
    rerun = STAGES[: STAGES.index("profile") + 1]
    expected = {t: rows for t, rows in local.items() if t in ("documents", "filtered", "deduped", "dedup_signatures", "judged", "profiles")}
    expected["rejections"] = [r for r in local["rejections"] if json.loads(r)["stage"] in rerun]
    assert read_from(on_s3["snapshot"], inputs, str(local_inputs)) == expected

    # The embedded model on a cluster: executors on other hosts cannot reach the driver's loopback,
    # so the run refuses at start with one line naming the setting to use instead (issue 16).
    refused_wh = s3.uri(prefix, "wh-refused")
    local_llm = [refused_wh if a == warehouse else a for a in cmd] + ["--set", "llm.provider=local"]
    refused = subprocess.run(local_llm, cwd=tmp_path, env=cluster_env(), capture_output=True, text=True, timeout=600)
    (tmp_path / "refused.out").write_text(refused.stdout + "\n--- stderr ---\n" + refused.stderr)
    assert refused.returncode == 2, refused.stderr[-2000:]
    # spark-submit's Python runner merges the driver's stderr into its stdout.
    message = [ln for ln in (refused.stdout + refused.stderr).splitlines() if ln.startswith("error: ")]
    assert len(message) == 1, refused.stdout[-3000:]
    assert "llm.provider=local" in message[0] and f"master {isolated_cluster.master}" in message[0] and "llm.base_url" in message[0]
    assert not s3.keys(f"{prefix}/wh-refused/"), "the refused run wrote to its warehouse"
