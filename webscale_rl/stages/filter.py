"""filter: cheap heuristic rules before any LLM token is paid for.

Rules are data: a name (the rejection reason), a measured value, a comparison and a threshold from
`conf/` (`null` switches a rule off). Values come from one Arrow-batch function (`quality_rules`:
Arrow's C++ string kernels and numpy, no per-row Python) returning a struct; Spark compares them
with the thresholds. All values are computed in one pass; the first rule that fails names the rejection, and the detail
records the preset and the measured value against its threshold. Order: text addressed to an LLM,
length, Gopher quality (language just before its English stop words), C4, FineWeb, Gopher repetition.

`filter.preset: datatrove` swaps in DataTrove's four filters (`rules.datatrove`): their defaults,
their order (Gopher repetition, Gopher quality, C4, FineWeb) and their spaCy words; language then
comes right after the injection check, as DataTrove's LanguageFilter comes first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import FilterConfig
from ..injection import PROMPT_INJECTION, injection_detail  # noqa: F401  (PROMPT_INJECTION re-exported)
from ..rules import datatrove
from . import quality_rules
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns, first_failure

READS = ("doc_id", "text")
WRITES = ("doc_id", "url", "text", "source", "source_format", "n_chars", "n_words", "language", "language_score")


@dataclass(frozen=True)
class Rule:
    name: str  # the rejection reason
    value: str  # a measure (see measures() and quality_rules)
    op: str  # "min": value must be >= threshold; "max": value must be <= threshold
    threshold_key: str  # attribute of FilterConfig


def _repetition_rules() -> tuple[Rule, ...]:
    top = [Rule(f"top_{n}gram_chars_high", f"top_{n}gram_char_ratio", "max", f"max_top_{n}gram_char_ratio") for n in quality_rules.TOP_NGRAMS]
    dup = [
        Rule(f"duplicate_{n}gram_chars_high", f"duplicate_{n}gram_char_ratio", "max", f"max_duplicate_{n}gram_char_ratio")
        for n in quality_rules.DUPLICATE_NGRAMS
    ]
    return tuple(top + dup)


RULES = (
    Rule("too_few_words", "n_words", "min", "min_words"),
    Rule("too_many_words", "n_words", "max", "max_words"),
    # Gopher quality
    Rule("mean_word_length_low", "mean_word_length", "min", "min_mean_word_length"),
    Rule("mean_word_length_high", "mean_word_length", "max", "max_mean_word_length"),
    Rule("few_alphabetic_words", "alpha_word_ratio", "min", "min_alpha_word_ratio"),
    Rule("symbol_to_word_ratio_high", "symbol_word_ratio", "max", "max_symbol_word_ratio"),
    Rule("bullet_lines_high", "bullet_line_ratio", "max", "max_bullet_line_ratio"),
    Rule("ellipsis_lines_high", "ellipsis_line_ratio", "max", "max_ellipsis_line_ratio"),
    Rule("too_few_stop_words", "stop_words", "min", "min_stop_words"),
    # C4
    Rule("lorem_ipsum", "lorem_ipsum", "max", "max_lorem_ipsum"),
    Rule("curly_bracket", "curly_brackets", "max", "max_curly_brackets"),
    Rule("javascript_lines_high", "javascript_line_ratio", "max", "max_javascript_line_ratio"),
    Rule("policy_lines_high", "policy_line_ratio", "max", "max_policy_line_ratio"),
    # FineWeb (and navigation bars)
    Rule("few_lines_end_in_punctuation", "punct_line_ratio", "min", "min_lines_ending_punct_ratio"),
    Rule("short_line_ratio_high", "short_line_ratio", "max", "max_short_line_ratio"),
    Rule("newline_to_word_ratio_high", "newline_word_ratio", "max", "max_newline_word_ratio"),
    Rule("separator_to_word_ratio_high", "separator_word_ratio", "max", "max_separator_word_ratio"),
    # Gopher repetition (the line-character rule is also FineWeb's)
    Rule("duplicate_lines_high", "duplicate_line_ratio", "max", "max_duplicate_line_ratio"),
    Rule("duplicate_paragraphs_high", "duplicate_paragraph_ratio", "max", "max_duplicate_paragraph_ratio"),
    Rule("duplicate_line_chars_high", "duplicate_line_char_ratio", "max", "max_duplicate_line_char_ratio"),
    Rule("duplicate_paragraph_chars_high", "duplicate_paragraph_char_ratio", "max", "max_duplicate_paragraph_char_ratio"),
    *_repetition_rules(),
)

# Reasons of the checks that are not threshold rules (the quality suite lists every reason).
NAMED_CHECKS = ("prompt_injection", "language_not_allowed", "language_score_low")

# Language is checked before the stop-word rule, which is English-specific (so a French page is
# named as French, not as lacking "the" and "of").
LANGUAGE_AFTER = "ellipsis_lines_high"


def _datatrove_frame(texts: pd.Series, language_max_chars: int | None) -> pd.DataFrame:
    """The datatrove preset's measures, the injection passage and (when asked) the language."""
    from . import arrow_text

    arr = arrow_text.as_strings(texts)
    parts = [pd.DataFrame(datatrove.measure_slice(arr.slice(lo, hi - lo))) for lo, hi in arrow_text.slices(arr)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(datatrove.MEASURE_COLUMNS))
    frame[quality_rules.INJECTION_COLUMN] = quality_rules.injections(arr)
    if language_max_chars is not None:
        frame = pd.concat([frame, quality_rules.language_measures(texts.reset_index(drop=True), language_max_chars)], axis=1)
    return frame


def measure_columns(cfg: FilterConfig) -> tuple[str, ...]:
    return datatrove.MEASURE_COLUMNS if cfg.preset == datatrove.PRESET else quality_rules.MEASURE_COLUMNS


def batch_measures(cfg: FilterConfig):
    """Every measure as one pandas UDF returning a struct: one pass over the text, in Arrow kernels
    (`quality_rules`, or `rules.datatrove` for that preset)."""
    fields = [T.StructField(c, T.DoubleType()) for c in measure_columns(cfg)]
    fields += [T.StructField(quality_rules.INJECTION_COLUMN, T.StringType())]
    fields += [T.StructField("language", T.StringType()), T.StructField("language_score", T.DoubleType())]
    lang = cfg.language

    @F.pandas_udf(T.StructType(fields))
    def text_measures(texts: pd.Series) -> pd.DataFrame:
        max_chars = lang.max_chars if lang.enabled else None
        if cfg.preset == datatrove.PRESET:
            frame = _datatrove_frame(texts, max_chars)
        else:
            frame = quality_rules.document_measures(texts, max_chars)
        if not lang.enabled:
            frame["language"], frame["language_score"] = None, np.nan
        return frame[[f.name for f in fields]]

    return text_measures


def _fmt(value: Column) -> Column:
    return F.round(value.cast("double"), 4).cast("string")


def language_checks(cfg: FilterConfig) -> list[tuple[str, Column, Column]]:
    lang = cfg.language
    if not lang.enabled:
        return []
    measured = F.format_string("lang=%s, score=%s", F.col("language"), _fmt(F.col("language_score")))
    checks = []
    if lang.languages:
        allowed = ",".join(lang.languages)
        checks.append(("language_not_allowed", ~F.col("language").isin(*lang.languages), F.concat(measured, F.lit(f", allowed [{allowed}]"))))
    checks.append(("language_score_low", F.col("language_score") < F.lit(lang.min_score), F.concat(measured, F.lit(f", required >= {lang.min_score}"))))
    return checks


def _rule_check(name: str, value: Column, measure: str, op: str, threshold) -> tuple[str, Column, Column]:
    failed = value < F.lit(threshold) if op == "min" else value > F.lit(threshold)
    bound = ">=" if op == "min" else "<="
    return name, failed, F.format_string(f"{measure}=%s, required {bound} {threshold}", _fmt(value))


def threshold_checks(cfg: FilterConfig) -> list[tuple[str, Column, Column]]:
    """The preset's rules and the language checks, in order, over the `_m_*` measure columns."""
    if cfg.preset == datatrove.PRESET:
        rules = [_rule_check(name, F.col(f"_m_{m}"), m, op, t) for name, m, op, t in datatrove.RULES]
        return language_checks(cfg) + rules
    checks = []
    for rule in RULES:
        threshold = getattr(cfg, rule.threshold_key)
        if threshold is not None:
            value = F.col("n_chars") if rule.value == "n_chars" else F.col(f"_m_{rule.value}")
            checks.append(_rule_check(rule.name, value, rule.value, rule.op, threshold))
        if rule.name == LANGUAGE_AFTER:
            checks += language_checks(cfg)
    return checks


def filter_documents(docs: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(docs, READS, "filter")
    cfg: FilterConfig = ctx.cfg.filter
    columns = measure_columns(cfg)
    measured = docs.select("*", batch_measures(cfg)(F.col("text")).alias("_batch"))
    df = measured.select(
        "*",
        *[F.col(f"_batch.{c}").alias(f"_m_{c}") for c in columns],
        F.col(f"_batch.{quality_rules.INJECTION_COLUMN}").alias("_injection"),
        *[F.col(f"_batch.{c}").alias(c) for c in quality_rules.LANGUAGE_COLUMNS],
    ).drop("_batch")
    if "n_chars" not in docs.columns:
        df = df.withColumn("n_chars", F.length("text"))
    injection = F.col("_injection")
    checks = [("prompt_injection", injection != "", injection_detail(injection)), *threshold_checks(cfg)]
    reason, detail = first_failure(checks)
    marked = (
        df.withColumn(REASON, reason)
        # Every rejection names the preset that judged it.
        .withColumn(DETAIL, F.concat(F.lit(f"preset={cfg.preset}; "), detail))
        .withColumnRenamed("_m_n_words", "n_words")
        .withColumn("n_words", F.col("n_words").cast("int"))
        .drop("_injection", *[c for c in df.columns if c.startswith("_m_") and c != "_m_n_words"])
    )
    return StageResult(marked)


REJECTION_REASONS = tuple(dict.fromkeys([*NAMED_CHECKS, *(rule.name for rule in RULES), *(name for name, _, _, _ in datatrove.RULES)]))
STAGE = Stage("filter", READS, WRITES, "filtered", filter_documents, rejection_reasons=REJECTION_REASONS)
