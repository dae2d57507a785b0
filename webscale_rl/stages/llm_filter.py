"""llm_filter: the paper's LLM judgement — keep documents that are informative and self-contained."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from ..config import Config
from ..prompts import defuse_document, stage_prompt
from .base import Stage, StageContext, StageResult, assert_columns
from .llm_stage import judged, run_llm_stage

READS = ("doc_id", "url", "text", "source", "n_words")
WRITES = ("doc_id", "url", "text", "source", "n_words", "llm_filter_version")

REPLY_SCHEMA = {
    "type": "object",
    "properties": {"informative": {"type": "boolean"}, "self_contained": {"type": "boolean"}},
    "required": ["informative", "self_contained"],
    "additionalProperties": False,
}

OUT_FIELDS = [
    T.StructField("doc_id", T.StringType()),
    T.StructField("url", T.StringType()),
    T.StructField("text", T.StringType()),
    T.StructField("source", T.StringType()),
    T.StructField("n_words", T.IntegerType()),
    T.StructField("llm_filter_version", T.StringType()),
]


def judge_documents(docs: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(docs, READS, "llm_filter")
    prompt = stage_prompt(ctx.cfg, "llm_filter")
    max_chars = ctx.cfg.llm.max_doc_chars

    def build(row):
        return prompt.messages(document=defuse_document(row["text"], max_chars))

    def to_rows(row, reply):
        return judged(
            {"llm_filter_version": prompt.version},
            [
                (not reply["informative"], "not_informative", "LLM judged the text non-informative"),
                (not reply["self_contained"], "not_self_contained", "LLM judged the text not self-contained"),
            ],
        )

    return run_llm_stage(
        docs.select(*[f.name for f in OUT_FIELDS if f.name != "llm_filter_version"]),
        ctx,
        stage="llm_filter",
        schema_name="document_judgement",
        reply_schema=REPLY_SCHEMA,
        build_messages=build,
        to_rows=to_rows,
        out_fields=OUT_FIELDS,
    )


def prompt_version(cfg: Config) -> str:
    return stage_prompt(cfg, "llm_filter").version


STAGE = Stage(
    "llm_filter", READS, WRITES, "judged", judge_documents,
    uses_llm=True, rejection_reasons=("not_informative", "not_self_contained"), prompt_version=prompt_version,
)  # fmt: skip
