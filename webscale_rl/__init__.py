"""webscale-rl: turn web pretraining documents into verifiable QA pairs for RL (Webscale-RL pipeline)."""

from __future__ import annotations

__version__ = "0.1.0"

from .domains import DOMAINS

__all__ = ["DOMAINS", "STAGES", "__version__"]


def __getattr__(name: str):
    # STAGES (the stage names in order) comes from the stage objects, which need pyspark: it is
    # loaded on first use, so `import webscale_rl` and `webscale_rl.config` stay free of pyspark.
    if name == "STAGES":
        from .stages.order import STAGES

        return STAGES
    raise AttributeError(f"module 'webscale_rl' has no attribute {name!r}")
