"""The stages of a run, in order, and the names derived from them."""

from __future__ import annotations

from . import check, decontaminate, dedup, generate, ingest, llm_filter, profile, verify
from . import filter as filter_stage
from .base import Stage

PIPELINE: tuple[Stage, ...] = (
    ingest.STAGE,
    filter_stage.STAGE,
    dedup.STAGE,
    llm_filter.STAGE,
    profile.STAGE,
    generate.STAGE,
    check.STAGE,
    verify.STAGE,
    decontaminate.STAGE,
)
# Stage names in pipeline order; used by --from/--until and in rejections.stage.
STAGES: tuple[str, ...] = tuple(s.name for s in PIPELINE)
LLM_STAGES: tuple[str, ...] = tuple(s.name for s in PIPELINE if s.uses_llm)


def stage_named(name: str) -> Stage:
    return PIPELINE[STAGES.index(name)]
