"""The one place a SparkSession is obtained.

Order: a live session (Databricks, spark-submit, a notebook) is used as it is; else a Spark
Connect server if SPARK_REMOTE is set; else a local session with Delta Lake, whose jars are
resolved from Maven Central once and then loaded from the user cache (offline afterwards).
Jobs use only the DataFrame/SQL API, so the same code runs under Spark Connect.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from .config import Config, cache_dir

MIN_JAVA = 17


class EnvironmentProblem(RuntimeError):
    """Something outside the project (Java, jars, network) is missing; the message says what to do."""


def delta_maven_coordinates() -> list[str]:
    """Maven coordinates of the Delta release matching the installed delta-spark wheel."""
    version = importlib.metadata.version("delta-spark")
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) >= (4, 1):
        import pyspark

        spark_mm = ".".join(pyspark.__version__.split(".")[:2])
        artifact = f"delta-spark_{spark_mm}_2.13"
    else:
        artifact = "delta-spark_2.13"
    return [f"io.delta:{artifact}:{version}"]


def ivy_dir() -> Path:
    return cache_dir() / "ivy"


def cached_delta_jars() -> list[Path]:
    """Jars already resolved into the cache for the pinned Delta release ([] if not all there)."""
    version = importlib.metadata.version("delta-spark")
    jars_dir = ivy_dir() / "jars"
    if not jars_dir.is_dir():
        return []
    jars = sorted(jars_dir.glob(f"io.delta_delta-*{version}.jar")) + sorted(jars_dir.glob("org.antlr_antlr4-runtime-*.jar"))
    names = " ".join(j.name for j in jars)
    if "delta-spark" in names and "delta-storage" in names and "antlr4" in names:
        return jars
    return []


def check_java() -> str:
    """Return the Java version string, or raise a clear error if Java is missing or too old."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise EnvironmentProblem(
            f"Java {MIN_JAVA}+ is required by Spark but no `java` was found "
            "(install OpenJDK 17, e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME)."
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"could not run `{java} -version`: {exc}") from exc
    text = out.stderr + out.stdout
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        raise EnvironmentProblem(f"could not read the Java version from `{java} -version`: {text.strip()[:200]}")
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8" style
        major = int(m.group(2))
    if major < MIN_JAVA:
        raise EnvironmentProblem(
            f"Spark 4 needs Java {MIN_JAVA} or newer; found Java {major} at {java}. Install OpenJDK 17 or set JAVA_HOME."
        )
    return text.splitlines()[0] if text else str(major)


def get_spark(cfg: Config | None = None) -> SparkSession:
    """A live session if there is one, else a Connect session, else a local Delta-enabled one."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if launched_by_spark():
        return submitted_session(cfg or Config())
    remote = os.environ.get("SPARK_REMOTE")
    if remote:
        return SparkSession.builder.remote(remote).getOrCreate()
    return build_local_session(cfg or Config())


DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


# Arrow batches to Python workers are cut at 8 MB as well as at 10,000 rows: memory stays flat
# with large documents, and the JVM reads the next batch while Python works on this one.
ARROW_CONF = {"spark.sql.execution.arrow.maxBytesPerBatch": str(8 << 20)}


def launched_by_spark() -> bool:
    """True when a JVM started this Python driver (spark-submit, a Databricks job): the master,
    jars and confs are the launcher's, and building a local session would override its master."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "DATABRICKS_RUNTIME_VERSION" in os.environ


def submitted_session(cfg: Config) -> SparkSession:
    """The launcher's session. Its --master/--jars/--conf win; only Delta's two settings are added
    when the launcher did not give them (the jars must be on its classpath: --jars or --packages)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to the launcher's JVM, so SparkConf sees its settings
    launcher = SparkConf()
    builder = SparkSession.builder.appName(launcher.get("spark.app.name", cfg.spark.app_name))
    for key, value in {**DELTA_CONF, **ARROW_CONF}.items():
        if not launcher.contains(key):
            builder = builder.config(key, value)
    return builder.getOrCreate()


def build_local_session(cfg: Config) -> SparkSession:
    check_java()
    # Workers must run this interpreter, or they start another Python without pyarrow.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    # A local session serves only this machine; never bind the driver to an outside interface.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.master(cfg.spark.master)
        .appName(cfg.spark.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", os.environ.get("WEBSCALE_RL_DRIVER_MEMORY", "4g"))
        # Delta's own small-table defaults are tuned for clusters; 50 log-replay tasks are slow here.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.databricks.delta.properties.defaults.enableChangeDataFeed", "false")
    )
    for key, value in ARROW_CONF.items():
        builder = builder.config(key, value)
    jars = cached_delta_jars()
    if jars:
        builder = builder.config("spark.jars", ",".join(str(j) for j in jars))
    else:
        ivy_dir().mkdir(parents=True, exist_ok=True)
        builder = builder.config("spark.jars.packages", ",".join(delta_maven_coordinates())).config(
            "spark.jars.ivy", str(ivy_dir())
        )
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # resolution failures surface as opaque JVM errors
        if not jars:
            raise EnvironmentProblem(
                "could not start Spark with the Delta Lake jars "
                f"({', '.join(delta_maven_coordinates())}); they are fetched from Maven Central once "
                f"into {ivy_dir()} — check network access or run `webscale-rl setup` where it is reachable. "
                f"Cause: {exc}"
            ) from exc
        raise
    spark.sparkContext.setLogLevel("ERROR")  # classic local session only
    return spark


def resolve_delta_jars() -> list[Path]:
    """Set-up step: make sure the Delta jars are in the cache (starts a throwaway local session)."""
    jars = cached_delta_jars()
    if jars:
        return jars
    check_java()
    ivy_dir().mkdir(parents=True, exist_ok=True)
    # A separate JVM resolves the jars so the caller's process can still build its own session.
    code = (
        "from webscale_rl.spark import build_local_session; from webscale_rl.config import Config;"
        "s = build_local_session(Config()); s.range(1).count(); s.stop()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    jars = cached_delta_jars()
    if not jars:
        raise EnvironmentProblem(f"Delta jars were not found in {ivy_dir() / 'jars'} after resolution")
    return jars
