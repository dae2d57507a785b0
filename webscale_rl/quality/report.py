"""One MLflow run per pipeline run: config params, per-stage row counts, artifacts.

Everything goes through an `mlflow.MlflowClient` bound to an explicit tracking URI, so the global
MLflow state (`mlflow.set_tracking_uri`, an active fluent run) is neither read nor changed and two
reports in one process stay independent. The URI is `mlflow_cfg.tracking_uri`, else
$MLFLOW_TRACKING_URI, else a SQLite store at `<warehouse>/_mlflow/mlflow.db` whose experiment keeps
its artifacts in `<warehouse>/_mlflow/artifacts`.

Secrets: params (and dicts logged as artifacts) whose key looks like a credential are logged as
"***", and any value containing the current value of a known API-key environment variable is
replaced by "***"; files containing such a value are not uploaded.

mlflow is imported only when a report is enabled and entered (importing it costs seconds).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SECRET_ENV_VARS = ("OPENAI_API_KEY", "DATABRICKS_TOKEN", "AZURE_OPENAI_API_KEY")
REDACTED = "***"
MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_KEY = 250  # MAX_ENTITY_KEY_LENGTH
MAX_TAG_VALUE = 8000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
# Secrets shorter than this are not searched for inside other values (too many false matches).
_MIN_SECRET_LEN = 8

# A credential-like key: contains secret/password/passwd/credential, or "key"/"keys"/"token" not
# followed by a letter (api_key, apikey, access_token, DATABRICKS_TOKEN) — so that counters such
# as `llm.max_tokens.generate` or `tokenizer` are not hidden.
_SECRET_KEY_RE = re.compile(r"secret|passw(or)?d|credential|(keys?|token)(?![a-z])", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY_RE.search(str(name)))


def sanitize_name(name: str) -> str:
    """Make `name` a legal MLflow param/metric key on every platform (no colon, no path tricks)."""
    s = re.sub(r"[^A-Za-z0-9_.\- /]", "_", str(name))
    parts = [p.strip() for p in s.split("/") if p.strip()]
    parts = [re.sub(r"^\.+", "_", p) for p in parts]  # no "." / ".." path parts
    return ("/".join(parts) or "unnamed")[:MAX_KEY]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            pass
    return str(value)


def _default_tracking_uri(warehouse: Path) -> str:
    return "sqlite:///" + str((Path(warehouse) / "_mlflow" / "mlflow.db").resolve())


def _quiet_mlflow_logging() -> None:
    # Database creation runs ~50 alembic migrations, each logged at INFO.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run used, for MLflow's dataset inputs: a Delta table (`delta_path`, or
    `delta_table` in a metastore) at `version`, or a path Spark read (`spark_path`). `context` is
    what the run did with it (read, wrote, input)."""

    name: str
    context: str
    version: int | None = None
    delta_path: str | None = None
    delta_table: str | None = None
    spark_path: str | None = None

    @property
    def location(self) -> str:
        return self.delta_path or self.delta_table or self.spark_path or self.name


class RunReport:
    """Context manager owning one MLflow run. Disabled config → every method is a no-op."""

    def __init__(
        self,
        mlflow_cfg: Any,
        warehouse: Path,
        run_name: str,
        tags: dict[str, str] | None = None,
        secret_env_vars: Iterable[str] = (),
        parent: RunReport | None = None,
    ) -> None:
        self._mlflow_cfg = mlflow_cfg
        self._parent = parent  # a nested run (one per stage) shares the parent's client and experiment
        self.enabled = bool(getattr(mlflow_cfg, "enabled", False))
        self.experiment_name: str = getattr(mlflow_cfg, "experiment", "webscale-rl")
        self.warehouse = Path(warehouse)
        self.run_name = run_name
        self._tags = dict(tags or {})
        # Extra env vars whose values must never be logged (e.g. the one named by llm.api_key_env).
        self._secret_env_vars = tuple(dict.fromkeys([*SECRET_ENV_VARS, *secret_env_vars]))
        self._client: Any = None
        self._params: dict[str, str] = {}
        self.tracking_uri: str | None = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self.artifact_location: str | None = None
        if self.enabled:
            self._default_store = False
            uri = getattr(mlflow_cfg, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
            if not uri and os.environ.get("DATABRICKS_RUNTIME_VERSION"):
                uri = "databricks"  # on a Databricks cluster: the workspace's tracking server
            if not uri:
                uri = _default_tracking_uri(self.warehouse)
                self._default_store = True
            if uri.startswith("databricks") and not self.experiment_name.startswith("/"):
                self.experiment_name = f"/Shared/{self.experiment_name}"  # workspace experiments are paths
            self.tracking_uri = uri

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> RunReport:
        if not self.enabled:
            return self
        _quiet_mlflow_logging()
        from mlflow import MlflowClient

        if self._parent is not None:
            if not self._parent._active:
                raise RuntimeError("the parent RunReport must be entered before a nested run")
            self._client = self._parent._client
            self.experiment_id = self._parent.experiment_id
            tags = {sanitize_name(k): self._scrub(k, v)[:MAX_TAG_VALUE] for k, v in self._tags.items()}
            tags["mlflow.parentRunId"] = self._parent.run_id
            run = self._client.create_run(self.experiment_id, tags=tags, run_name=self._scrub("run_name", self.run_name))
            self.run_id = run.info.run_id
            self.artifact_location = run.info.artifact_uri
            return self

        artifact_location = None
        if self._default_store:
            base = (self.warehouse / "_mlflow").resolve()
            (base / "artifacts").mkdir(parents=True, exist_ok=True)
            artifact_location = (base / "artifacts").as_uri()
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self._client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            self.experiment_id = self._client.create_experiment(self.experiment_name, artifact_location=artifact_location)
        else:
            self.experiment_id = exp.experiment_id
            if exp.lifecycle_stage == "deleted":
                self._client.restore_experiment(exp.experiment_id)
        tags = {sanitize_name(k): self._scrub(k, v)[:MAX_TAG_VALUE] for k, v in self._tags.items()}
        run = self._client.create_run(self.experiment_id, tags=tags, run_name=self._scrub("run_name", self.run_name))
        self.run_id = run.info.run_id
        self.artifact_location = run.info.artifact_uri
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._active:
            return False
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        try:
            if exc is not None:
                from mlflow.entities import RunTag

                msg = self._scrub("error", f"{exc_type.__name__}: {exc}")[:MAX_TAG_VALUE]
                self._client.log_batch(self.run_id, tags=[RunTag("error", msg)])
            self._client.set_terminated(self.run_id, status=status)
        except Exception as err:  # noqa: BLE001 - never mask the pipeline's own exception
            logger.warning("could not close MLflow run %s: %s", self.run_id, err)
        return False

    @property
    def _active(self) -> bool:
        return self.enabled and self._client is not None and self.run_id is not None

    def _require(self) -> bool:
        if not self.enabled:
            return False
        if not self._active:
            raise RuntimeError("RunReport must be entered (`with RunReport(...) as report:`) before logging")
        return True

    def nested(self, run_name: str, tags: dict[str, str] | None = None) -> RunReport:
        """A nested run under this one (e.g. one per stage); enter it with `with`."""
        return RunReport(self._mlflow_cfg, self.warehouse, run_name=run_name, tags=tags, secret_env_vars=self._secret_env_vars, parent=self)

    # -- secrets ---------------------------------------------------------------------------
    def _secret_values(self) -> list[str]:
        vals = [os.environ.get(n) for n in self._secret_env_vars]
        return [v for v in vals if v]

    def _scrub(self, key: str, value: Any) -> str:
        """The string to log for `key`: "***" for credential-like keys or values holding a secret."""
        if is_secret_key(key):
            return REDACTED
        text = _stringify(value)
        for secret in self._secret_values():
            if text == secret or (len(secret) >= _MIN_SECRET_LEN and secret in text):
                return REDACTED
        return text

    def _scrub_obj(self, obj: Any) -> Any:
        """A JSON-ready copy of `obj` with credential-like keys and secret-holding values as "***"."""
        if isinstance(obj, Mapping):
            return {str(k): REDACTED if is_secret_key(str(k)) else self._scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple, set)):
            return [self._scrub_obj(v) for v in obj]
        if obj is None or isinstance(obj, (bool, int, float)):
            return obj
        text = obj if isinstance(obj, str) else str(obj)
        return self._scrub("", text)

    def _file_has_secret(self, path: Path) -> bool:
        secrets = [s.encode() for s in self._secret_values() if len(s) >= _MIN_SECRET_LEN]
        if not secrets:
            return False
        try:
            data = path.read_bytes()
        except OSError:
            return False
        return any(s in data for s in secrets)

    # -- logging ---------------------------------------------------------------------------
    def log_params(self, params: dict[str, object]) -> None:
        if not self._require():
            return
        from mlflow.entities import Param

        batch: dict[str, str] = {}
        for raw_key, value in flatten(params).items():
            key = sanitize_name(raw_key)
            text = self._scrub(raw_key, value)[:MAX_PARAM_VALUE]
            if key in self._params:
                if self._params[key] != text:  # MLflow params are immutable within a run
                    logger.warning("MLflow param %s already logged with another value; keeping the first", key)
                continue
            batch[key] = text
        items = list(batch.items())
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            chunk = items[i : i + _PARAMS_PER_BATCH]
            self._client.log_batch(self.run_id, params=[Param(k, v) for k, v in chunk])
        self._params.update(batch)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self._require():
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        out = []
        for key, value in flatten(metrics).items():
            if value is None:
                continue
            try:
                v = float(value)
            except (TypeError, ValueError):
                logger.warning("MLflow metric %s is not a number (%r); skipped", key, value)
                continue
            if math.isnan(v):
                continue
            out.append(Metric(sanitize_name(key), v, now, int(step or 0)))
        for i in range(0, len(out), _METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=out[i : i + _METRICS_PER_BATCH])

    def log_stage(
        self,
        stage: str,
        rows_in: int,
        rows_out: int,
        rows_rejected: int,
        elapsed_s: float,
        rejected_by_reason: dict[str, int],
    ) -> None:
        if not self.enabled:
            return
        s = sanitize_name(stage).replace("/", "_")
        metrics: dict[str, float] = {
            f"{s}.rows_in": rows_in,
            f"{s}.rows_out": rows_out,
            f"{s}.rows_rejected": rows_rejected,
            f"{s}.elapsed_s": elapsed_s,
        }
        for reason, n in (rejected_by_reason or {}).items():
            r = re.sub(r"[/ _]+", "_", sanitize_name(reason)).strip("_") or "unknown"
            key = f"{s}.rejected.{r}"
            metrics[key] = metrics.get(key, 0) + n  # two reasons may sanitize to one name
        self.log_metrics(metrics)

    def log_datasets(self, datasets: Iterable[DatasetRef]) -> None:
        """The datasets as MLflow dataset inputs of this run (`mlflow.data`), described, not read: a
        Delta table as a `DeltaDatasetSource` with its version, an input path as a Spark source.
        The digest is of location and version, so each version of a table is its own dataset; the
        version is also the input tag `delta.version` (MLflow's Delta source leaves version 0 out)."""
        if not self._require():
            return
        import hashlib

        from mlflow.data.delta_dataset_source import DeltaDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.spark_dataset_source import SparkDatasetSource
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = []
        for ref in datasets:
            location = self._scrub("", ref.location)
            if ref.delta_path:
                source = DeltaDatasetSource(path=location, delta_table_version=ref.version)
            elif ref.delta_table:
                source = DeltaDatasetSource(delta_table_name=location, delta_table_version=ref.version)
            else:
                source = SparkDatasetSource(path=location)
            digest = hashlib.sha256(f"{location}@{ref.version}".encode()).hexdigest()[:8]
            dataset = MetaDataset(source, name=self._scrub("", ref.name), digest=digest)
            tags = [InputTag(MLFLOW_DATASET_CONTEXT, ref.context)]
            if ref.version is not None:
                tags.append(InputTag("delta.version", str(ref.version)))
            inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags))
        if inputs:
            self._client.log_inputs(self.run_id, datasets=inputs)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        if not self._require():
            return
        path = Path(path)
        if not path.exists():
            logger.warning("artifact %s does not exist; not logged", path)
            return
        if path.is_file():
            if self._file_has_secret(path):
                logger.warning("artifact %s contains a secret value; not logged", path)
                return
            self._client.log_artifact(self.run_id, str(path), artifact_path)
            return
        files = [p for p in sorted(path.rglob("*")) if p.is_file()]
        dirty = [p for p in files if self._file_has_secret(p)]
        base = f"{artifact_path}/{path.name}" if artifact_path else path.name
        if not dirty:
            self._client.log_artifacts(self.run_id, str(path), base)
            return
        for p in dirty:
            logger.warning("artifact %s contains a secret value; not logged", p)
        for p in files:
            if p in dirty:
                continue
            rel_parent = p.parent.relative_to(path).as_posix()
            dest = base if rel_parent == "." else f"{base}/{rel_parent}"
            self._client.log_artifact(self.run_id, str(p), dest)

    def log_dict(self, data: dict, name: str) -> None:
        if not self._require():
            return
        if not Path(name).suffix:
            name = f"{name}.json"
        self._client.log_dict(self.run_id, self._scrub_obj(data), name)

    def log_figure(self, figure: Any, name: str) -> None:
        """A matplotlib figure as a PNG artifact (closed afterwards)."""
        if not self._require():
            return
        import matplotlib.pyplot as plt

        try:
            self._client.log_figure(self.run_id, figure, name)
        finally:
            plt.close(figure)

    def log_table(self, frame: Any, name: str) -> None:
        """A pandas DataFrame as an MLflow table artifact (shown in the UI's artifact view and the
        Evaluation tab); cells holding a secret become "***"."""
        if not self._require():
            return
        clean = frame.copy()
        for col in clean.columns:
            if clean[col].dtype == object:
                clean[col] = clean[col].map(lambda v: self._scrub("", v) if isinstance(v, str) else v)
        self._client.log_table(self.run_id, data=clean, artifact_file=name)

    @property
    def ui_hint(self) -> str:
        if not self.enabled:
            return "MLflow tracking is disabled (mlflow.enabled=false)"
        uri = self.tracking_uri or ""
        where = f"experiment '{self.experiment_name}' id {self.experiment_id}, run {self.run_id}"
        if uri.startswith(("http://", "https://")):
            return f"{uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}  ({where})"
        return f"mlflow ui --backend-store-uri {uri}  ({where})"
