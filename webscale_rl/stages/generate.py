"""generate: one verifiable QA pair per persona (the paper's stage 3)."""

from __future__ import annotations

import json

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import Config
from ..prompts import ANSWER_TYPES, defuse_document, load_fewshot, stage_prompt
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns
from .llm_stage import run_llm_stage

READS = ("doc_id", "text", "domain", "personas")
WRITES = ("qa_id", "doc_id", "pretrain_text", "domain", "persona", "question", "answer", "answer_type", "prompt_version")

REPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 1000},
        "answer": {"type": "string", "minLength": 1, "maxLength": 300},
        "answer_type": {"type": "string", "enum": list(ANSWER_TYPES)},
    },
    "required": ["question", "answer", "answer_type"],
    "additionalProperties": False,
}

OUT_FIELDS = [
    T.StructField("qa_id", T.StringType()),
    T.StructField("doc_id", T.StringType()),
    T.StructField("pretrain_text", T.StringType()),
    T.StructField("domain", T.StringType()),
    T.StructField("persona", T.StringType()),
    T.StructField("question", T.StringType()),
    T.StructField("answer", T.StringType()),
    T.StructField("answer_type", T.StringType()),
    T.StructField("prompt_version", T.StringType()),
]


ITEM_COLUMNS = ("qa_id", "doc_id", "pretrain_text", "domain", "persona")


def reply_schema(prompt_name: str) -> dict:
    """The reply schema, its properties in the order the prompt asks for them: a constrained
    decoder (llama.cpp's grammar, json_schema outputs) writes them in that order."""
    if prompt_name != "generate_answer_first":
        return REPLY_SCHEMA
    order = ("answer", "question", "answer_type")
    return {**REPLY_SCHEMA, "properties": {k: REPLY_SCHEMA["properties"][k] for k in order}, "required": list(order)}


def prompt_version(cfg: Config) -> str:
    """The generate prompt's version and the few-shot library's: both shape a pair, both are recorded."""
    return f"{stage_prompt(cfg, 'generate').version}+{load_fewshot(cfg.generate.fewshot_file).version}"


def persona_items(profiles: DataFrame, ctx: StageContext) -> DataFrame:
    """One work item per (document, persona slot): the runner keeps only items no run has handled,
    so a persona whose call failed transiently is asked again while the others' pairs stay."""
    assert_columns(profiles, READS, "generate")
    version = prompt_version(ctx.cfg)
    return profiles.select(
        "doc_id",
        F.col("text").alias("pretrain_text"),
        "domain",
        F.posexplode("personas").alias("persona_idx", "persona"),
    ).select(
        # Stable id: the same document, persona slot and prompt give the same qa_id on every run.
        F.substring(F.sha2(F.concat_ws("|", "doc_id", F.col("persona_idx").cast("string"), F.lit(version)), 256), 1, 24).alias("qa_id"),
        "doc_id",
        "pretrain_text",
        "domain",
        "persona",
    )


def generate_qa(per_persona: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(per_persona, ITEM_COLUMNS, "generate")
    prompt = stage_prompt(ctx.cfg, "generate")
    fewshot = load_fewshot(ctx.cfg.generate.fewshot_file)
    k = ctx.cfg.generate.fewshot_per_prompt
    version = prompt_version(ctx.cfg)  # the loaders are cached: no second read
    max_chars = ctx.cfg.llm.max_doc_chars

    def build(row):
        return prompt.messages(
            document=defuse_document(row["pretrain_text"], max_chars),
            domain=row["domain"],
            persona=row["persona"],
            examples="\n".join(json.dumps(ex, ensure_ascii=False) for ex in fewshot.for_domain(row["domain"], k)),
        )

    def to_rows(row, reply):
        question, answer = reply["question"].strip(), reply["answer"].strip()
        out = {"question": question, "answer": answer, "answer_type": reply["answer_type"], "prompt_version": version}
        if not question or not answer:
            out.update({REASON: "empty_qa", DETAIL: "question or answer is blank"})
        return [out]

    return run_llm_stage(
        per_persona,
        ctx,
        stage="generate",
        schema_name="qa_pair",
        reply_schema=reply_schema(ctx.cfg.generate.prompt),
        build_messages=build,
        to_rows=to_rows,
        out_fields=OUT_FIELDS,
    )


# One pair per persona: a profile row becomes one work item per persona, each keyed by its qa_id.
STAGE = Stage(
    "generate", READS, WRITES, "qa_candidates", generate_qa,
    uses_llm=True, input_key=("qa_id",), work_items=persona_items, rejection_reasons=("empty_qa",), document="pretrain_text",
    prompt_version=prompt_version,
)  # fmt: skip
