"""The ten domains of the authors' code (PAPER.md); profile assigns one, the quality suite checks it."""

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
