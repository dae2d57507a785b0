"""The one place a SparkSession is obtained.

Order: a live session (Databricks, spark-submit, a notebook) is used as it is; else a Spark
Connect client session if SPARK_REMOTE is set (`webscale-rl run --remote` sets it; --conf values
become session settings, see `connect_conf`); else a local session with Delta Lake, whose jars are
resolved from Maven Central once and then loaded from the user cache (offline afterwards).
Jobs use only the DataFrame/SQL API, so the same code runs under Spark Connect.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree

import pyspark
from pyspark.sql import SparkSession

from .config import Config, ConfigError, cache_dir
from .storage import connector_packages

MIN_JAVA = 17


class EnvironmentProblem(RuntimeError):
    """Something outside the project (Java, jars, network) is missing; the message says what to do."""


def delta_maven_coordinates() -> list[str]:
    """Maven coordinates of the Delta release matching the installed delta-spark wheel."""
    version = importlib.metadata.version("delta-spark")
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) >= (4, 1):
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
        raise EnvironmentProblem(f"Spark 4 needs Java {MIN_JAVA} or newer; found Java {major} at {java}. Install OpenJDK 17 or set JAVA_HOME.")
    return text.splitlines()[0] if text else str(major)


def get_spark(cfg: Config | None = None, storage_uris: Iterable[str] = ()) -> SparkSession:
    """A live session if there is one, else the launcher's, else a Connect session, else a local
    Delta-enabled one. `storage_uris` (inputs and warehouse) decide which Hadoop connectors a local
    session loads (hadoop-aws for s3a://); a session we did not build is used as it is."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if launched_by_spark():
        return submitted_session(cfg or Config())
    remote = os.environ.get("SPARK_REMOTE")
    if remote:
        return connect_session(remote, cfg or Config())
    return build_local_session(cfg or Config(), storage_uris)


DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


# Arrow batches to Python workers are cut at 8 MB as well as at 10,000 rows: memory stays flat
# with large documents, and the JVM reads the next batch while Python works on this one.
ARROW_CONF = {"spark.sql.execution.arrow.maxBytesPerBatch": str(8 << 20)}


def parse_spark_conf(items: Iterable[str]) -> dict[str, str]:
    """`--conf key=value` strings (repeatable, as spark-submit takes them) as a dict; the value may
    itself contain `=`; a later key wins. A malformed item is a ConfigError naming it."""
    conf: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise ConfigError(f"--conf expects key=value (e.g. spark.hadoop.fs.s3a.endpoint=http://host:9000), got {item!r}")
        conf[key] = value
    return conf


def apply_spark_conf(cfg: Config, items: Iterable[str]) -> Config:
    """Add `--conf key=value` items to cfg.spark.conf (they win over the config file's entries)."""
    cfg.spark.conf.update(parse_spark_conf(items))
    return cfg


def launched_by_spark() -> bool:
    """True when a JVM started this Python driver (spark-submit, a Databricks job): the master,
    jars and confs are the launcher's, and building a local session would override its master."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or on_databricks()


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def is_connect_session(spark: SparkSession) -> bool:
    """True for a Spark Connect client session (no sparkContext, no JVM in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def submitted_session(cfg: Config) -> SparkSession:
    """The launcher's session, built by SparkSession.builder alone (serverless has no SparkContext).
    Its --master/--jars/--conf win. Databricks ships Delta itself; elsewhere Delta's catalog and the
    Arrow batch size are set at run time when missing. The Delta SQL extension is a static setting
    that cannot be added to a built session: without it, one clear error says what to pass."""
    spark = SparkSession.builder.getOrCreate()
    if on_databricks():
        return spark
    extensions = spark.conf.get("spark.sql.extensions", None) or ""
    if DELTA_CONF["spark.sql.extensions"] not in extensions:
        raise EnvironmentProblem(
            "the Spark session has no Delta Lake SQL extension; pass it to the launcher: "
            + " ".join(f"--conf {k}={v}" for k, v in DELTA_CONF.items())
            + " (and the Delta jars with --jars or --packages)"
        )
    runtime_defaults = {"spark.sql.catalog.spark_catalog": DELTA_CONF["spark.sql.catalog.spark_catalog"], **ARROW_CONF}
    for key, value in runtime_defaults.items():
        if spark.conf.get(key, None) in (None, "", "builtin"):
            spark.conf.set(key, value)
    ship_wheel_to_executors(spark)
    return spark


def ship_wheel_to_executors(spark: SparkSession) -> Path | None:
    """`spark-submit --py-files x.whl` puts the wheel on the driver's Python path only: Spark adds
    just .zip, .egg and .jar files to the executors' path, so on workers that cannot import the
    package from their own disk every Python UDF fails with "No module named 'webscale_rl'". When
    this package runs from a wheel, ship a .zip copy of it (same bytes) to the executors."""
    wheel = Path(__file__).parent.parent  # .../webscale_rl-X-py3-none-any.whl/webscale_rl/spark.py
    if wheel.suffix != ".whl" or not wheel.is_file():
        return None
    copy = Path(tempfile.mkdtemp(prefix="webscale-rl-pyfiles-")) / f"{wheel.stem}.zip"
    shutil.copyfile(wheel, copy)
    spark.sparkContext.addPyFile(str(copy))
    return copy


# Settings that shape the server's JVM or its launch: a Connect client cannot set them at run time
# (the server refuses most with CANNOT_MODIFY_CONFIG; spark.master it would take and ignore).
CONNECT_LAUNCH_ONLY = ("spark.master", "spark.remote", "spark.submit.", "spark.driver.", "spark.executor.", "spark.jars", "spark.files", "spark.archives")
# Hosts of Databricks workspaces: Databricks Connect serves Delta without Delta's SQL extension.
DATABRICKS_HOSTS = (".cloud.databricks.com", ".azuredatabricks.net", ".gcp.databricks.com")


def connect_conf(conf: dict[str, str]) -> dict[str, str]:
    """cfg.spark.conf as session settings of a Connect client: `spark.hadoop.K` becomes `K` (a
    session setting reaches the Hadoop configuration of the session's reads and writes without the
    prefix, which only SparkConf strips at launch); launch-only settings are a ConfigError naming them."""
    refused = sorted(k for k in conf if k.startswith(CONNECT_LAUNCH_ONLY) or k == "spark.sql.extensions")
    if refused:
        raise ConfigError(
            f"--conf {', '.join(refused)}: cannot be set from a Spark Connect client (they are fixed when "
            "the server starts); set them on the server, e.g. `webscale-rl connect-server --conf KEY=VALUE`"
        )
    return {k.removeprefix("spark.hadoop."): v for k, v in conf.items()}


def connect_session(remote: str, cfg: Config) -> SparkSession:
    """A Spark Connect client session on `remote` (no JVM here, no jars resolved here): the
    server must have Delta; cfg.spark.conf is set as session settings (`connect_conf`)."""
    settings = connect_conf(cfg.spark.conf)
    check_reachable(remote)
    spark = SparkSession.builder.remote(remote).getOrCreate()
    try:
        extensions = spark.conf.get("spark.sql.extensions", None) or ""
    except Exception as exc:  # the first call reaches the server
        raise EnvironmentProblem(f"could not reach the Spark Connect server SPARK_REMOTE={remote}: {str(exc).splitlines()[0][:300]}") from exc
    if DELTA_CONF["spark.sql.extensions"] not in extensions and not on_databricks_connect(remote):
        raise EnvironmentProblem(
            f"the Spark Connect server at {remote} has no Delta Lake SQL extension; start it with the Delta jars and "
            + " ".join(f"--conf {k}={v}" for k, v in DELTA_CONF.items())
            + " (`webscale-rl connect-server` does)"
        )
    for key, value in settings.items():
        try:
            spark.conf.set(key, value)
        except Exception as exc:  # a static setting the list above does not know
            original = key if key in cfg.spark.conf else f"spark.hadoop.{key}"
            raise ConfigError(
                f"--conf {original}: the Spark Connect server refused it ({str(exc).splitlines()[0][:200]}); set it where the server starts"
            ) from exc
    runtime_defaults = {} if on_databricks_connect(remote) else {"spark.sql.catalog.spark_catalog": DELTA_CONF["spark.sql.catalog.spark_catalog"]}
    for key, value in {**runtime_defaults, **ARROW_CONF}.items():
        if key not in settings and spark.conf.get(key, None) in (None, "", "builtin"):
            spark.conf.set(key, value)
    return spark


def connect_address(remote: str) -> tuple[str, int]:
    """(host, port) of a Spark Connect URL sc://host[:port][/;param=value...]; the port defaults to 15002."""
    parsed = urllib.parse.urlparse(remote.split(";", 1)[0])
    if parsed.scheme != "sc" or not parsed.hostname:
        raise ConfigError(f"SPARK_REMOTE / --remote must look like sc://host:15002, got {remote!r}")
    try:
        return parsed.hostname, parsed.port or 15002
    except ValueError as exc:
        raise ConfigError(f"SPARK_REMOTE / --remote has a bad port: {remote!r}") from exc


def check_reachable(remote: str, timeout_s: float = 10) -> None:
    """Fail in seconds on a server that is not there: the Connect client itself retries for minutes."""
    host, port = connect_address(remote)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise EnvironmentProblem(
            f"no Spark Connect server answers at {host}:{port} (SPARK_REMOTE={remote}): {exc}; start one, e.g. `webscale-rl connect-server`"
        ) from exc


def on_databricks_connect(remote: str) -> bool:
    host = re.sub(r"^sc://", "", remote).split("/")[0].split(":")[0].lower()
    return host.endswith(DATABRICKS_HOSTS)


def bundled_hadoop_version() -> str:
    """The Hadoop client release inside pyspark's jars (connectors must match it exactly)."""
    jars = sorted(pyspark_jars_dir().glob("hadoop-client-api-*.jar"))
    if not jars:
        raise EnvironmentProblem(f"no hadoop-client-api jar in {pyspark_jars_dir()}; is pyspark installed completely?")
    return jars[-1].name.removeprefix("hadoop-client-api-").removesuffix(".jar")


def pyspark_jars_dir() -> Path:
    return Path(pyspark.__file__).resolve().parent / "jars"


def connector_maven_coordinates(storage_uris: Iterable[str]) -> list[str]:
    """Maven coordinates of the Hadoop connectors the inputs and warehouse need ([] for local)."""
    return connector_packages(storage_uris, bundled_hadoop_version())


def ivy_jar_name(org: str, name: str, rev: str) -> str:
    """How Spark's Ivy resolution names a jar in <ivy>/jars."""
    return f"{org}_{name}-{rev}.jar"


def declared_dependencies(coordinate: str) -> list[tuple[str, str, str]] | None:
    """(org, name, rev) of the compile/runtime dependencies in the cached Ivy descriptor of
    `coordinate`, or None when the descriptor is not cached yet."""
    org, name, rev = coordinate.split(":")
    descriptor = ivy_dir() / "cache" / org / name / f"ivy-{rev}.xml"
    if not descriptor.is_file():
        return None
    deps = []
    for dep in ElementTree.parse(descriptor).getroot().iter("dependency"):
        scopes = {m.split("->")[0].strip() for m in dep.get("conf", "").split(";")}
        if scopes & {"compile", "runtime"}:
            deps.append((dep.get("org"), dep.get("name"), dep.get("rev")))
    return deps


def cached_connector_jars(coordinates: Iterable[str]) -> list[Path]:
    """Jars of the connectors and their declared dependencies already in the cache ([] unless all)."""
    jars: list[Path] = []
    for coordinate in coordinates:
        deps = declared_dependencies(coordinate)
        if deps is None:
            return []
        for org, name, rev in [tuple(coordinate.split(":")), *deps]:
            jar = ivy_dir() / "jars" / ivy_jar_name(org, name, rev)
            if not jar.is_file():
                return []
            jars.append(jar)
    return jars


def jar_settings(storage_uris: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """spark.jars for what is cached, spark.jars.packages (+ the Ivy cache) for what is not yet;
    also returns the coordinates that still need Maven Central (for the error message)."""
    delta_jars = cached_delta_jars()
    connectors = connector_maven_coordinates(storage_uris)
    connector_jars = cached_connector_jars(connectors)
    local = [*delta_jars, *connector_jars]
    missing = ([] if delta_jars else delta_maven_coordinates()) + ([] if connector_jars else connectors)
    settings = {"spark.jars": ",".join(str(j) for j in local)} if local else {}
    if missing:
        ivy_dir().mkdir(parents=True, exist_ok=True)
        settings.update({"spark.jars.packages": ",".join(missing), "spark.jars.ivy": str(ivy_dir())})
    return settings, missing


def local_builder(cfg: Config) -> SparkSession.Builder:
    return (
        SparkSession.builder.master(cfg.spark.master)
        .appName(cfg.spark.app_name)
        .config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", os.environ.get("WEBSCALE_RL_DRIVER_MEMORY", "4g"))
        # Delta's own small-table defaults are tuned for clusters; 50 log-replay tasks are slow here.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.databricks.delta.properties.defaults.enableChangeDataFeed", "false")
    )


def build_local_session(cfg: Config, storage_uris: Iterable[str] = ()) -> SparkSession:
    """A local session with Delta, plus hadoop-aws when an s3a:// URI is among `storage_uris`.
    Jars come from the user cache; what is not there yet is resolved from Maven Central once."""
    check_java()
    # Workers must run this interpreter, or they start another Python without pyarrow.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    # A local session serves only this machine; never bind the driver to an outside interface.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars, missing = jar_settings(storage_uris)
    builder = local_builder(cfg)
    for key, value in {**DELTA_CONF, **ARROW_CONF, **jars, **cfg.spark.conf}.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # resolution failures surface as opaque JVM errors
        if missing:
            raise EnvironmentProblem(
                f"could not start Spark with the jars {', '.join(missing)}; they are fetched from Maven "
                f"Central once into {ivy_dir()} — check network access or run `webscale-rl setup` where "
                f"it is reachable. Cause: {exc}"
            ) from exc
        raise
    if not is_connect_session(spark):  # a Connect session has no sparkContext
        spark.sparkContext.setLogLevel("ERROR")
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


def resolve_connector_jars(storage_uris: Iterable[str]) -> list[Path]:
    """Set-up step for object stores: put the connectors `storage_uris` need (hadoop-aws and its AWS
    SDK bundle for s3a://) into the cache, in a throwaway JVM like resolve_delta_jars."""
    coordinates = connector_maven_coordinates(storage_uris)
    jars = cached_connector_jars(coordinates)
    if jars or not coordinates:
        return jars
    check_java()
    code = (
        "import sys; from webscale_rl.spark import build_local_session; from webscale_rl.config import Config;"
        "s = build_local_session(Config(), sys.argv[1:]); s.range(1).count(); s.stop()"
    )
    subprocess.run([sys.executable, "-c", code, *storage_uris], check=True)
    jars = cached_connector_jars(coordinates)
    if not jars:
        raise EnvironmentProblem(f"{', '.join(coordinates)} not found in {ivy_dir() / 'jars'} after resolution")
    return jars
