"""webscale-rl: turn web pretraining documents into verifiable QA pairs for RL (Webscale-RL pipeline)."""

__version__ = "0.1.0"

# Stage names in pipeline order; used by --until and in rejections.stage.
STAGES = ("ingest", "filter", "dedup", "llm_filter", "profile", "generate", "check", "decontaminate")

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
