"""The API key from a Databricks secret scope, when running on Databricks."""

from __future__ import annotations

from ..config import ConfigError


def databricks_secret(scope_key: str) -> str:
    scope, key = scope_key.split("/", 1)
    try:
        from pyspark.dbutils import DBUtils  # only exists on Databricks runtimes
        from pyspark.sql import SparkSession

        dbutils = DBUtils(SparkSession.builder.getOrCreate())
    except ImportError:
        raise ConfigError(
            f"llm.api_key_secret is set ({scope}/…) but this is not a Databricks runtime (no pyspark.dbutils); "
            "use llm.api_key_env and an environment variable instead"
        ) from None
    try:
        value = dbutils.secrets.get(scope=scope, key=key)
    except Exception as exc:  # the message names scope and key only, never a value
        raise ConfigError(f"cannot read Databricks secret {scope}/{key}: {type(exc).__name__}") from None
    if not value:
        raise ConfigError(f"Databricks secret {scope}/{key} is empty")
    return value
