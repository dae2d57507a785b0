"""webscale-rl: turn web pretraining documents into verifiable QA pairs for RL (Webscale-RL pipeline)."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from .config import Config, ConfigError, load_config
from .domains import DOMAINS

if TYPE_CHECKING:
    from .pipeline import PipelineError, RunSummary, run_pipeline
    from .stages.order import STAGES

__all__ = ["DOMAINS", "STAGES", "Config", "ConfigError", "PipelineError", "RunSummary", "__version__", "load_config", "run_pipeline"]

# Names whose modules need pyspark: loaded on first use, so `import webscale_rl` and
# `webscale_rl.config` stay free of pyspark (a config error needs no JVM).
_LAZY = {"STAGES": "stages.order", "run_pipeline": "pipeline", "RunSummary": "pipeline", "PipelineError": "pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'webscale_rl' has no attribute {name!r}")
