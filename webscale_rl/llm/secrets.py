"""The one function that finds the LLM API key, `find_api_key`.

Order: the environment variable named by `llm.api_key_env`; else a Databricks secret, named by
`llm.api_key_secret` ("scope/key"; the bundle's one `llm_api_key_secret` variable sets it),
read with dbutils on a Databricks runtime (serverless jobs have no cluster env variables). The key
goes back to the caller only: it is never logged, never put in the config or the environment.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import Config, ConfigError


def key_secret(cfg: Config) -> tuple[str, str] | None:
    """(scope, key) of the Databricks secret holding the API key, if the config names one."""
    if cfg.llm.api_key_secret:
        scope, key = cfg.llm.api_key_secret.split("/", 1)
        return scope, key
    return None


def key_source(cfg: Config) -> str:
    """Where the key is looked for, for error messages (names only, never a value)."""
    secret = key_secret(cfg)
    where = f"${cfg.llm.api_key_env}"
    return f"{where} (or the Databricks secret {secret[0]}/{secret[1]})" if secret else where


def find_api_key(cfg: Config, dbutils: Any = None) -> str | None:
    """The API key, or None when neither the env variable nor a configured secret holds one.
    `dbutils`: Databricks' dbutils (found from the active Spark session when not given)."""
    from_env = os.environ.get(cfg.llm.api_key_env)
    if from_env:
        return from_env
    secret = key_secret(cfg)
    if secret is None:
        return None
    scope, key = secret
    if dbutils is None:
        dbutils = _runtime_dbutils(cfg, scope, key)
    try:
        value = dbutils.secrets.get(scope=scope, key=key)
    except Exception as exc:  # noqa: BLE001 -- any failure: the message names scope and key only, never a value
        raise ConfigError(f"cannot read Databricks secret {scope}/{key}: {type(exc).__name__}") from None
    if not value:
        raise ConfigError(f"Databricks secret {scope}/{key} is empty")
    return value


def _runtime_dbutils(cfg: Config, scope: str, key: str) -> Any:
    try:
        # Imported here: pyspark.dbutils exists only on Databricks runtimes (an optional import, no circle).
        from pyspark.dbutils import DBUtils
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            f"the LLM key's Databricks secret is set ({scope}/{key}) but this is not a Databricks runtime "
            f"(no pyspark.dbutils) and ${cfg.llm.api_key_env} is not set; export ${cfg.llm.api_key_env} instead"
        ) from None
    return DBUtils(SparkSession.builder.getOrCreate())
