"""verify: keep a pair only when a reader reproduces its answer (beyond the paper's yes/no checker).

The check stage asks a model whether a pair is right; a small model says yes too easily. Here two
independent calls per pair are shown the question but never the reference answer:

* **from the document**: the model answers the question from the document alone. The pair is kept
  only if the project's own reward (`reward.compute_score`, what RL training will use) scores that
  answer 1 against the pair's answer; else it is rejected `not_reproduced`, both answers in the
  detail. An empty reply ("the document does not say"), a refusal or an answer to another question
  all score 0: a rejection with its reason, never a silent loss.
* **closed-book**: the question alone. `closed_book_correct` records whether the pair can be
  answered without the document, a difficulty signal for RL (never a reason to reject). When
  that call fails the two closed-book columns stay null: unknown.

Both calls go through the one LLM machinery (response cache, batch mode, budget): the closed-book
call's cache key and reply ride in the second-call columns of `llm_stage`, so the landing caches
both and a rerun pays for neither. `verify.enabled: false` keeps every pair unverified (null
columns, no call); `verify.closed_book: false` skips the second call.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import Config
from ..prompts import defuse_document, defuse_text, stage_prompt
from ..reward import compute_score
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns
from .check import OUT_FIELDS as CHECKED_FIELDS
from .llm_stage import (
    ATTEMPTS,
    CACHE_HIT,
    CACHED_PROMPT_TOKENS,
    CALLS,
    COMPLETION_TOKENS,
    KEY_COL,
    PROMPT_TOKENS,
    RATE_LIMITED,
    REPLY_COL,
    SECOND_CALL,
    no_call_columns,
    run_llm_stage,
)

READS = tuple(f.name for f in CHECKED_FIELDS)
VERIFIED_FIELDS = [
    T.StructField("verified_answer", T.StringType()),
    T.StructField("closed_book_answer", T.StringType()),
    T.StructField("closed_book_correct", T.BooleanType()),
    T.StructField("verify_version", T.StringType()),
]
WRITES = READS + tuple(f.name for f in VERIFIED_FIELDS)

REPLY_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 300}},
    "required": ["answer"],
    "additionalProperties": False,
}
CLOSED = "_closed"  # the closed-book call's output, a struct, joined onto the grounded call's rows


def reproduced(answer: str | None, reference: str, answer_type: str | None) -> bool:
    """The reward's verdict on `answer` against the pair's reference (1 → reproduced)."""
    if not answer or not answer.strip():
        return False
    return compute_score("webscale_rl", answer, reference, {"answer_type": answer_type} if answer_type else None) == 1.0


def version(cfg: Config) -> str:
    grounded = stage_prompt(cfg, "verify").version
    return f"{grounded}+{stage_prompt(cfg, 'verify_closed_book').version}" if cfg.verify.closed_book else grounded


def verify_qa(checked: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(checked, READS, "verify")
    pairs = checked.select(*READS)
    tag = version(ctx.cfg)
    if not ctx.cfg.verify.enabled:
        unverified = [F.lit(None).cast(f.dataType).alias(f.name) for f in VERIFIED_FIELDS[:-1]]
        kept = [F.lit(None).cast("string").alias(REASON), F.lit(None).cast("string").alias(DETAIL)]
        return StageResult(pairs.select("*", *unverified, F.lit(tag).alias("verify_version"), *kept, *no_call_columns()))
    grounded = _answer_from_document(pairs, ctx, tag)
    if not ctx.cfg.verify.closed_book:
        return grounded
    closed = _answer_closed_book(pairs, ctx)
    return StageResult(_with_closed_book(grounded.marked, closed.marked), stats={k: grounded.stats.get(k, 0) + closed.stats.get(k, 0) for k in grounded.stats})


def _answer_from_document(pairs: DataFrame, ctx: StageContext, tag: str) -> StageResult:
    prompt = stage_prompt(ctx.cfg, "verify")
    max_chars = ctx.cfg.llm.max_doc_chars

    def build(row):
        return prompt.messages(document=defuse_document(row["pretrain_text"], max_chars), question=defuse_text(row["question"]))

    def to_rows(row, reply):
        answer = reply["answer"].strip()
        out = {"verified_answer": answer, "verify_version": tag}
        if not reproduced(answer, row["answer"], row["answer_type"]):
            said = repr(answer) if answer else "nothing (the document does not answer it)"
            out.update({REASON: "not_reproduced", DETAIL: f"answered from the document: {said}; reference: {row['answer']!r}"[:500]})
        return [out]

    out_fields = CHECKED_FIELDS + VERIFIED_FIELDS
    return run_llm_stage(
        pairs, ctx, stage="verify", schema_name="qa_answer", reply_schema=REPLY_SCHEMA, build_messages=build, to_rows=to_rows, out_fields=out_fields
    )


def _answer_closed_book(pairs: DataFrame, ctx: StageContext) -> StageResult:
    prompt = stage_prompt(ctx.cfg, "verify_closed_book")

    def build(row):
        return prompt.messages(question=defuse_text(row["question"]))

    def to_rows(row, reply):
        answer = reply["answer"].strip()
        return [{"closed_book_answer": answer, "closed_book_correct": reproduced(answer, row["answer"], row["answer_type"])}]

    fields = [T.StructField("qa_id", T.StringType()), *VERIFIED_FIELDS[1:3]]
    keyed = pairs.select("qa_id", "question", "answer", "answer_type")
    return run_llm_stage(
        keyed, ctx, stage="verify", schema_name="qa_answer_closed_book", reply_schema=REPLY_SCHEMA,
        build_messages=build, to_rows=to_rows, out_fields=fields, progress=False,
    )  # fmt: skip


def _with_closed_book(grounded: DataFrame, closed: DataFrame) -> DataFrame:
    """The grounded call's rows with the closed-book answer, its verdict, its cache key and reply
    (second-call columns) and its tokens added to the row's accounting. The closed-book verdict
    never rejects; its failure (REASON set) only leaves its columns null."""
    failed = F.col(f"{CLOSED}.{REASON}").isNotNull()
    second = closed.select(
        "qa_id",
        F.struct(*[c for c in closed.columns if c != "qa_id"]).alias(CLOSED),
    )
    joined = grounded.join(second, "qa_id", "left")
    accounting = (PROMPT_TOKENS, COMPLETION_TOKENS, CACHED_PROMPT_TOKENS, ATTEMPTS, RATE_LIMITED, CACHE_HIT)
    summed = {c: F.col(c) + F.coalesce(F.col(f"{CLOSED}.{c}"), F.lit(0)) for c in accounting}
    summed[CALLS] = F.when(F.col(ATTEMPTS) > 0, 1).otherwise(0) + F.when(F.coalesce(F.col(f"{CLOSED}.{ATTEMPTS}"), F.lit(0)) > 0, 1).otherwise(0)
    replaced = {
        "closed_book_answer": F.when(~failed, F.col(f"{CLOSED}.closed_book_answer")),
        "closed_book_correct": F.when(~failed, F.col(f"{CLOSED}.closed_book_correct")),
        **summed,
        SECOND_CALL.key: F.col(f"{CLOSED}.{KEY_COL}"),
        SECOND_CALL.reply: F.col(f"{CLOSED}.{REPLY_COL}"),
        SECOND_CALL.prompt_tokens: F.col(f"{CLOSED}.{PROMPT_TOKENS}"),
        SECOND_CALL.completion_tokens: F.col(f"{CLOSED}.{COMPLETION_TOKENS}"),
    }
    kept = [replaced.pop(c).alias(c) if c in replaced else F.col(c) for c in grounded.columns]
    return joined.select(*kept, *[col.alias(name) for name, col in replaced.items()])


STAGE = Stage(
    "verify", READS, WRITES, "verified", verify_qa,
    uses_llm=True, input_key=("qa_id",), rejection_reasons=("not_reproduced",), document="pretrain_text", calls_per_item=2,
    prompt_version=version,
)  # fmt: skip
