"""The wheel built by `pip wheel .` ships the YAML configs, and `webscale-rl run --config openai`
works from the installed wheel outside the repo (no conf/ folder, another working directory)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO as ROOT

PACKAGED = ("azure", "databricks", "local", "openai", "vllm")
ARTICLE = (
    "The Danube is the second-longest river in Europe, after the Volga. It rises in the Black Forest "
    "of Germany and flows for about 2,850 kilometres through ten countries before it reaches the Black "
    "Sea. Four capital cities stand on its banks: Vienna, Bratislava, Budapest and Belgrade. The river "
    "has carried trade since Roman times, when it formed part of the northern frontier of the empire."
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel <project> --no-deps` on a copy of the project (the build must not write into the tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT / "webscale_rl", src / "webscale_rl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp / "dist")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    (built,) = (tmp / "dist").glob("webscale_rl-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(site folder, empty working directory, environment): the wheel installed without its
    dependencies (the test environment has them) into a folder outside the repo."""
    tmp = tmp_path_factory.mktemp("installed")
    site, elsewhere = tmp / "site", tmp / "elsewhere"
    elsewhere.mkdir()
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    return site, elsewhere, {**os.environ, "PYTHONPATH": str(site)}


def test_the_wheel_ships_the_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"webscale_rl/conf/{n}.yaml" for n in PACKAGED} <= names


def test_the_installed_wheel_loads_the_packaged_configs_by_name(installed):
    site, elsewhere, env = installed
    code = (
        "import webscale_rl, webscale_rl.config as c; print(webscale_rl.__file__);"
        "assert c.load_config('openai').llm.provider == 'openai';"
        "assert c.load_config().llm.provider == 'local'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(site))  # the installed copy, not the repo's
    # The console script: an unknown name fails in one line that lists the packaged ones.
    script = [str(site / "bin" / "webscale-rl"), "run", "--warehouse", "w", "--config", "nosuch"]
    bad = subprocess.run(script, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "azure, databricks, local, openai, vllm" in bad.stderr


@pytest.mark.spark_processes
def test_webscale_rl_run_config_openai_from_the_installed_wheel(installed):
    site, elsewhere, env = installed
    docs = elsewhere / "docs.jsonl"
    docs.write_text(json.dumps({"id": "danube", "text": ARTICLE}) + "\n", encoding="utf-8")
    with FakeOpenAI() as fake:
        cmd = [str(site / "bin" / "webscale-rl"), "run", "--config", "openai", "--input", str(docs), "--warehouse", "wh"]
        for setting in (f"llm.base_url={fake.base_url}", "mlflow.enabled=false", "quality.on_failure=warn", "dedup.fuzzy.enabled=false"):
            cmd += ["--set", setting]
        run_env = {**env, "OPENAI_API_KEY": "sk-test", "WEBSCALE_RL_DRIVER_MEMORY": "1g"}
        done = subprocess.run(cmd, cwd=elsewhere, env=run_env, capture_output=True, text=True, timeout=900, check=False)
        calls = len(fake.requests)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "OpenAI-compatible endpoint" in done.stdout and calls > 0  # the packaged openai.yaml was used
    assert (elsewhere / "wh" / "qa" / "_delta_log").is_dir()


def test_spark_and_delta_only_in_the_local_extra(wheel):
    """A Databricks runtime brings its own Spark and Delta: the wheel must not ask pip for them."""
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    requires = [ln for ln in zipfile.ZipFile(wheel).read(metadata).decode().splitlines() if ln.startswith("Requires-Dist:")]
    spark = [ln for ln in requires if ln.split()[1].lower().startswith(("pyspark", "delta-spark"))]
    assert spark and all('extra == "local"' in ln for ln in spark), spark
    assert not any("==" in ln for ln in requires if "extra ==" not in ln), "the wheel's own requirements are ranges"


def test_installing_the_wheel_leaves_another_pyspark_alone(wheel, tmp_path):
    """An environment that has a different pyspark (a runtime's) keeps it: pip's plan for the wheel
    installs no pyspark or delta-spark. The environment sees this test's packages (a .pth line, after
    its own) and has a stand-in pyspark 3.5.0 of its own, found first."""
    import sysconfig

    env_dir = tmp_path / "runtime"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True, timeout=300)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site / "pyspark").mkdir()
    (site / "pyspark" / "__init__.py").write_text('__version__ = "3.5.0"\n')
    info = site / "pyspark-3.5.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyspark\nVersion: 3.5.0\n")
    (info / "RECORD").write_text("")
    report = tmp_path / "plan.json"
    python = env_dir / "bin" / "python"
    cmd = [str(python), "-m", "pip", "install", "--dry-run", "--no-index", "--report", str(report), "-q", str(wheel)]
    # Away from the checkout, without PYTHONPATH: a webscale_rl.egg-info left in the tree by an
    # in-tree build would otherwise count as an installed webscale-rl and empty the plan.
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path, env=clean_env)
    assert done.returncode == 0, done.stderr[-2000:]
    planned = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    # every requirement is met by what is there; nothing replaces pyspark
    assert planned == {"webscale-rl"}, (planned, done.stdout[-3000:], done.stderr[-3000:])
    probe = [str(python), "-c", "import pyspark; print(pyspark.__version__)"]
    version = subprocess.run(probe, capture_output=True, text=True, check=True, cwd=tmp_path, env=clean_env)
    assert version.stdout.strip() == "3.5.0"
