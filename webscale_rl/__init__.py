"""webscale-rl: turn web pretraining documents into verifiable QA pairs for RL (Webscale-RL pipeline)."""

from __future__ import annotations

__version__ = "0.1.0"

# The ten domains of the authors' code (PAPER.md); profile assigns one, the quality suite checks it.
DOMAINS = (
    "Math",
    "Technology & Engineering",
    "Coding",
    "Social Science",
    "Natural Science",
    "Travel & Lifestyle",
    "Commerce & Economics",
    "Medicine & Health",
    "Education",
    "Other",
)


def __getattr__(name: str):
    # STAGES (the stage names in order) comes from the stage objects, which need pyspark: it is
    # loaded on first use, so `import webscale_rl` and `webscale_rl.config` stay free of pyspark.
    if name == "STAGES":
        from .stages.order import STAGES

        return STAGES
    raise AttributeError(f"module 'webscale_rl' has no attribute {name!r}")
