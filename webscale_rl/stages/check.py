"""check: keep only QA pairs that are verifiable, grounded and leak-free (the paper's stage 4).

Deterministic checks that cost nothing run first, in Spark; only the pairs that pass them go to
the LLM checker, which answers: is the answer supported by the document, is it correct, does the
question leak it. Each failed check is a rejection naming it. The answer-type rule
(rules/answer_types.py) is one of the deterministic checks, and the type it settles on is the one
that lands. Last, the pairs that passed everything keep one pair per fact of their document
(`duplicate_fact`), judged also against the pairs earlier runs kept.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..injection import about_instructions
from ..prompts import defuse_document, defuse_text, stage_prompt
from ..rules.answer_types import answer_type_column, fact_key_column
from ..rules.words import contains_words, normalise_words
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns, first_failure
from .generate import OUT_FIELDS as QA_FIELDS
from .llm_stage import judged, no_call_columns, run_llm_stage

READS = tuple(f.name for f in QA_FIELDS)
WRITES = tuple(f.name for f in QA_FIELDS) + ("check_version",)

REPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "supported": {"type": "boolean"},
        "correct": {"type": "boolean"},
        "leaks_answer": {"type": "boolean"},
    },
    "required": ["supported", "correct", "leaks_answer"],
    "additionalProperties": False,
}

OUT_FIELDS = QA_FIELDS + [T.StructField("check_version", T.StringType())]

# Set by the runner on incremental runs (work.PRIOR): pairs an earlier run kept, here only to be
# judged against; they win, so a new pair repeating a kept fact is the duplicate.
PRIOR = "_prior"
# The answer-type verdict of a pair, struct<answer_type, detail>: computed once, read twice.
TYPE_VERDICT = "_type_verdict"

# The question must stand alone: no pointing at a source the RL policy will never see.
REFERS_TO_SOURCE = (
    r"(?i)\b(according to|based on|in|from|per) (the|this) (text|passage|article|document|excerpt|author|page|post)\b"
    r"|(?i)\bthe (passage|excerpt)\b"
    r"|(?i)\bthe author\b(?! of)"  # "the author of the waltz" names someone; "what does the author say" points at a source
)


def _words(col: Column) -> Column:
    return F.size(F.filter(F.split(F.trim(col), r"\s+"), lambda w: w != ""))


STOPWORDS = ["the", "a", "an", "of", "in", "on", "and", "or", "to", "for", "by", "with", "at", "from", "is", "was", "are", "were"]


NUMBER_WORDS = dict(
    zip(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
        "eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand".split(),
        [*range(21), 30, 40, 50, 60, 70, 80, 90, 100, 1000],
    )
)


def answer_grounding(answer: Column, document: Column) -> tuple[Column, Column]:
    """(failed?, missing words): every number of the answer, and at least half of its other
    content words, must occur in the document (compared after the same normalisation). A number
    the document spells out ("three" for 3) counts as present."""
    words = F.split(normalise_words(document), " ")
    digits = F.create_map(*[lit for word, n in NUMBER_WORDS.items() for lit in (F.lit(word), F.lit(str(n)))])
    doc_tokens = F.array_union(words, F.filter(F.transform(words, lambda w: digits[w]), lambda d: d.isNotNull()))
    answer_tokens = F.array_except(F.filter(F.split(normalise_words(answer), " "), lambda t: t != ""), F.array(*[F.lit(w) for w in STOPWORDS]))
    missing = F.array_except(answer_tokens, doc_tokens)
    missing_numbers = F.filter(missing, lambda t: t.rlike(r"^\p{N}+$"))
    failed = (F.size(missing_numbers) > 0) | (F.size(missing) * 2 > F.size(answer_tokens))
    return failed, F.concat(F.lit("not in the document: "), F.array_join(F.slice(missing, 1, 8), ", "))


def type_verdict(qa: DataFrame, ctx: StageContext) -> Column:
    """The answer-type verdict: the frame's TYPE_VERDICT column if it has one, else computed."""
    if TYPE_VERDICT in qa.columns:
        return F.col(TYPE_VERDICT)
    return answer_type_column(F.col("answer"), F.col("answer_type"), F.col("question"), ctx.cfg.check.max_answer_words)


def deterministic_checks(qa: DataFrame, ctx: StageContext) -> tuple[Column, Column]:
    cfg = ctx.cfg.check
    q, a = F.col("question"), F.col("answer")
    verdict = type_verdict(qa, ctx)
    grounding_failed, grounding_detail = answer_grounding(a, F.col("pretrain_text"))
    # "yes" or an option label is not a word the document must hold: the LLM checker judges those.
    grounding_failed = grounding_failed & ~F.coalesce(verdict["answer_type"].isin("boolean", "choice"), F.lit(False))
    if not cfg.require_answer_in_document:
        grounding_failed = F.lit(False)
    return first_failure(
        [
            ("empty_answer", normalise_words(a) == "", F.lit("answer has no letters or digits")),
            (
                "answer_too_long",
                _words(a) > cfg.max_answer_words,
                F.format_string(f"answer has %d words, max {cfg.max_answer_words}", _words(a)),
            ),
            ("answer_type_mismatch", verdict["answer_type"].isNull(), verdict["detail"]),
            (
                "question_too_short",
                _words(q) < cfg.min_question_words,
                F.format_string(f"question has %d words, min {cfg.min_question_words}", _words(q)),
            ),
            (
                "question_too_long",
                _words(q) > cfg.max_question_words,
                F.format_string(f"question has %d words, max {cfg.max_question_words}", _words(q)),
            ),
            (
                "answer_in_question",
                contains_words(q, a),
                F.lit("the question contains the answer"),
            ),
            ("refers_to_source", q.rlike(REFERS_TO_SOURCE), F.lit("question refers to the source text instead of standing alone")),
            (
                "about_instructions",
                about_instructions(q, a),
                F.lit("pair is about model instructions, not the document's subject"),
            ),
            ("answer_not_in_document", grounding_failed, grounding_detail),
        ]
    )


def collapse_repeated_questions(flagged: DataFrame, jaccard: float = 0.8, landed: DataFrame | None = None) -> DataFrame:
    """Personas of one document often yield the same or a near-identical question: among the pairs
    that passed the other checks, a question whose word set overlaps an earlier one's (a pair an
    earlier run kept, else a smaller qa_id, same document) by `jaccard` or more is rejected, naming
    the one kept. A rejected twin never takes a good pair down with it. The join stays within one
    document (a few pairs). `landed`: pairs earlier runs kept, only ever the earlier side."""
    words = F.array_distinct(F.filter(F.split(normalise_words(F.col("question")), " "), lambda t: t != ""))
    passing_rows = flagged.filter(F.col(REASON).isNull())
    passing = passing_rows.select("doc_id", "qa_id", words.alias("_words"))

    def as_earlier(rows: DataFrame, prior: bool) -> DataFrame:
        return rows.select("doc_id", F.col("qa_id").alias("_earlier_id"), words.alias("_earlier_words"), F.lit(prior).alias("_earlier_prior"))

    earlier = as_earlier(passing_rows, False)
    if landed is not None:
        earlier = earlier.unionByName(as_earlier(landed, True))
    overlap = F.size(F.array_intersect("_words", "_earlier_words")) / F.greatest(F.size(F.array_union("_words", "_earlier_words")), F.lit(1))
    duplicates = (
        passing.join(earlier, "doc_id")
        .filter((F.col("_earlier_prior") | (F.col("_earlier_id") < F.col("qa_id"))) & (overlap >= F.lit(jaccard)))
        .groupBy("qa_id")
        .agg(F.min(F.struct(~F.col("_earlier_prior"), F.col("_earlier_id")))["_earlier_id"].alias("_duplicate_of"))
    )
    repeated = F.col(REASON).isNull() & F.col("_duplicate_of").isNotNull()
    joined = flagged.join(duplicates, "qa_id", "left")
    return joined.select(
        *[c for c in flagged.columns if c not in (REASON, DETAIL)],
        F.when(repeated, F.lit("duplicate_question")).otherwise(F.col(REASON)).alias(REASON),
        F.when(repeated, F.concat(F.lit("duplicate_of="), F.col("_duplicate_of"))).otherwise(F.col(DETAIL)).alias(DETAIL),
    )


def collapse_repeated_facts(marked: DataFrame, landed: DataFrame | None = None) -> DataFrame:
    """One pair per fact: among a document's pairs that passed every check, those whose answers are
    equal under the reward's normalisation (`rules.answer_types.fact_key`) collapse to the best one,
    whatever the questions' wording; the others are rejected `duplicate_fact`, naming it. Best: a
    pair an earlier run kept (it has landed and stays), then the shortest question (the most direct
    ask of the fact, with the least room for an extra premise or a hint), then the smallest qa_id
    (stable across runs). Yes/no and option answers never collapse: they are shared by different
    facts. `landed`: pairs earlier runs kept, judged against and left out of the result. One window
    over (doc_id, fact) reads `marked` once, so the LLM calls behind it are made once."""
    pool = marked.withColumn(PRIOR, F.lit(False))
    if landed is not None:
        prior = landed.select("doc_id", "qa_id", "question", "answer", "answer_type").withColumn(PRIOR, F.lit(True))
        pool = pool.unionByName(prior, allowMissingColumns=True)
    fact = F.when(F.col(REASON).isNull(), fact_key_column(F.col("answer"), F.col("answer_type")))
    ranked = Window.partitionBy("doc_id", "_fact").orderBy(F.col(PRIOR).desc(), F.length("question"), "qa_id")
    pool = pool.withColumn("_fact", fact).withColumn("_best", F.first(F.struct("qa_id", "answer")).over(ranked))
    repeated = F.col("_fact").isNotNull() & (F.col("_best.qa_id") != F.col("qa_id"))
    detail = F.format_string("duplicate_of=%s (same answer: %s)", F.col("_best.qa_id"), F.col("_best.answer"))
    replaced = {
        REASON: F.when(repeated, F.lit("duplicate_fact")).otherwise(F.col(REASON)),
        DETAIL: F.when(repeated, detail).otherwise(F.col(DETAIL)),
    }
    return pool.filter(~F.col(PRIOR)).select(*[replaced[c].alias(c) if c in replaced else F.col(c) for c in marked.columns])


def split_landed(candidates: DataFrame) -> tuple[DataFrame, DataFrame | None]:
    """(new pairs, pairs earlier runs kept in the same documents, or None on a first run)."""
    names = [f.name for f in QA_FIELDS]
    if PRIOR not in candidates.columns:
        return candidates.select(*names), None
    prior = F.coalesce(F.col(PRIOR), F.lit(False))
    new = candidates.filter(~prior).select(*names)
    landed = candidates.filter(prior).select(*names).join(new.select("doc_id").distinct(), "doc_id", "left_semi")
    return new, landed


def check_qa(candidates: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(candidates, READS, "check")
    prompt = stage_prompt(ctx.cfg, "check")
    max_chars = ctx.cfg.llm.max_doc_chars
    new, landed = split_landed(candidates)
    qa = new.withColumn(TYPE_VERDICT, type_verdict(new, ctx))
    reason, detail = deterministic_checks(qa, ctx)
    marked = qa.withColumn(REASON, reason).withColumn(DETAIL, detail)
    # The type the rule settled on is the one that lands (a rejected pair keeps the declared one).
    typed = marked.withColumn("answer_type", F.coalesce(F.col(TYPE_VERDICT)["answer_type"], F.col("answer_type"))).drop(TYPE_VERDICT)
    flagged = collapse_repeated_questions(typed, ctx.cfg.check.near_duplicate_question_jaccard, landed)

    def build(row):
        return prompt.messages(
            document=defuse_document(row["pretrain_text"], max_chars),
            question=defuse_text(row["question"]),
            answer=defuse_text(row["answer"]),
        )

    def to_rows(row, reply):
        return judged(
            {"check_version": prompt.version},
            [
                (not reply["supported"], "unsupported", "checker: the document does not support the answer"),
                (not reply["correct"], "incorrect", "checker: the answer does not answer the question"),
                (reply["leaks_answer"], "leaks_answer", "checker: the question gives the answer away"),
            ],
        )

    checked = run_llm_stage(
        flagged.filter(F.col(REASON).isNull()).drop(REASON, DETAIL),
        ctx,
        stage="check",
        schema_name="qa_check",
        reply_schema=REPLY_SCHEMA,
        build_messages=build,
        to_rows=to_rows,
        out_fields=OUT_FIELDS,
    )
    failed_early = flagged.filter(F.col(REASON).isNotNull()).select(
        *[f.name for f in QA_FIELDS],
        F.lit(prompt.version).alias("check_version"),
        REASON,
        DETAIL,
        *no_call_columns(),
    )
    return StageResult(collapse_repeated_facts(checked.marked, landed).unionByName(failed_early), stats=checked.stats)


REJECTION_REASONS = (
    "duplicate_question", "empty_answer", "answer_too_long", "answer_type_mismatch", "question_too_short",
    "question_too_long", "answer_in_question", "refers_to_source", "about_instructions", "answer_not_in_document",
    "unsupported", "incorrect", "leaks_answer", "duplicate_fact",
)  # fmt: skip
# needs_landed_rows: a new pair may repeat a question or a fact of a pair an earlier run kept.
STAGE = Stage(
    "check", READS, WRITES, "checked", check_qa,
    uses_llm=True, input_key=("qa_id",), needs_landed_rows=True, rejection_reasons=REJECTION_REASONS, document="pretrain_text",
    slice_key=("doc_id",),  # one pair per fact and one per question compare the pairs of a document
    prompt_version=lambda cfg: stage_prompt(cfg, "check").version,
)  # fmt: skip
