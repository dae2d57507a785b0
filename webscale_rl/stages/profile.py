"""profile: classify each document into one of the paper's ten domains and assign up to three
reader personas (who would read this, and what they care about)."""

from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from ..config import Config
from ..domains import DOMAINS
from ..prompts import defuse_document, stage_prompt
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns
from .llm_stage import run_llm_stage

READS = ("doc_id", "text")
WRITES = ("doc_id", "text", "domain", "personas", "profile_version")

OUT_FIELDS = [
    T.StructField("doc_id", T.StringType()),
    T.StructField("text", T.StringType()),
    T.StructField("domain", T.StringType()),
    T.StructField("personas", T.ArrayType(T.StringType())),
    T.StructField("profile_version", T.StringType()),
]

MAX_PERSONA_CHARS = 200


def reply_schema(max_personas: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "domain": {"type": "string", "enum": list(DOMAINS)},
            "personas": {
                "type": "array",
                "items": {"type": "string", "minLength": 3, "maxLength": MAX_PERSONA_CHARS},
                "minItems": 1,
                "maxItems": max_personas,
            },
        },
        "required": ["domain", "personas"],
        "additionalProperties": False,
    }


def clean_personas(personas: list[str], limit: int) -> list[str]:
    """Trim, drop blanks and case-insensitive repeats; keep the model's order; at most `limit`."""
    seen, out = set(), []
    for p in personas:
        text = re.sub(r"\s+", " ", str(p)).strip().strip('"').strip()
        key = text.lower()
        if text and key not in seen:
            seen.add(key)
            out.append(text[:MAX_PERSONA_CHARS])
    return out[:limit]


def profile_documents(docs: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(docs, READS, "profile")
    prompt = stage_prompt(ctx.cfg, "profile")
    max_chars = ctx.cfg.llm.max_doc_chars
    limit = ctx.cfg.profile.max_personas

    def build(row):
        return prompt.messages(document=defuse_document(row["text"], max_chars), max_personas=str(limit), domains=", ".join(DOMAINS))

    def to_rows(row, reply):
        personas = clean_personas(reply["personas"], limit)
        out = {"domain": reply["domain"], "personas": personas, "profile_version": prompt.version}
        if not personas:
            out.update({REASON: "no_personas", DETAIL: "the model gave no usable persona"})
        return [out]

    return run_llm_stage(
        docs.select("doc_id", "text"),
        ctx,
        stage="profile",
        schema_name="document_profile",
        reply_schema=reply_schema(limit),
        build_messages=build,
        to_rows=to_rows,
        out_fields=OUT_FIELDS,
    )


def prompt_version(cfg: Config) -> str:
    return stage_prompt(cfg, "profile").version


STAGE = Stage("profile", READS, WRITES, "profiles", profile_documents, uses_llm=True, rejection_reasons=("no_personas",), prompt_version=prompt_version)
