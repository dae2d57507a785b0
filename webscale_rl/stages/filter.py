"""filter: cheap heuristic rules before any LLM token is paid for.

Rules are data: a name, a measured value (a column expression), a comparison and a threshold from
`conf/`. All values are computed in one pass; the first rule that fails names the rejection, and
the detail records the measured value against its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ..config import FilterConfig
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns, first_failure

READS = ("doc_id", "text")
WRITES = ("doc_id", "url", "text", "source", "source_format", "n_chars", "n_words")


@dataclass(frozen=True)
class Rule:
    name: str  # the rejection reason
    value: str  # a column computed by measures()
    op: str  # "min": value must be >= threshold; "max": value must be <= threshold
    threshold_key: str  # attribute of FilterConfig


RULES = (
    Rule("too_long", "n_chars", "max", "max_doc_chars"),
    Rule("too_few_words", "n_words", "min", "min_words"),
    Rule("too_many_words", "n_words", "max", "max_words"),
    Rule("mean_word_length_low", "mean_word_length", "min", "min_mean_word_length"),
    Rule("mean_word_length_high", "mean_word_length", "max", "max_mean_word_length"),
    Rule("few_alphabetic_words", "alpha_word_ratio", "min", "min_alpha_word_ratio"),
    Rule("symbol_to_word_ratio_high", "symbol_word_ratio", "max", "max_symbol_word_ratio"),
    Rule("few_lines_end_in_punctuation", "punct_line_ratio", "min", "min_lines_ending_punct_ratio"),
    Rule("short_line_ratio_high", "short_line_ratio", "max", "max_short_line_ratio"),
    Rule("separator_to_word_ratio_high", "separator_word_ratio", "max", "max_separator_word_ratio"),
)


# Text addressed to an LLM rather than to a human reader: instructions to ignore rules, fake
# system turns, fake structured replies. Such documents never reach a model (they are adversarial,
# and a pair built from them could follow the instruction); they are rejected with the match.
PROMPT_INJECTION = (
    r"(?i)("
    r"\b(ignore|disregard|forget|override)\s+(all\s+|any\s+|the\s+|your\s+|these\s+)*(previous\s+|prior\s+|above\s+|earlier\s+|system\s+)*(instructions|prompts?|rules|directions|guidelines)\b"
    r"|(^|\n|\.\s)\s*(system|assistant)\s*(prompt)?\s*:"
    r"|<\|?\s*(im_start|im_end|system|endoftext)\s*\|?>|\[/?(system|inst)\]"
    r"|\b(reveal|print|output|show|repeat|leak)\s+(your|the)\s+(system\s+prompt|instructions|api\s*key|secret|password)"
    r"|\b(you\s+are\s+now|act\s+as)\s+(an?\s+)?(ai|assistant|language\s+model|chatbot|dan)\b"
    r"|\{\s*\"(question|answer|informative|self_contained|domain|personas|supported|leaks_answer)\"\s*:"
    # Text that speaks to an AI reader: "note for any AI model reading this", "if you are an LLM".
    r"|\b(note|message|instructions?)\s+(for|to)\s+(any\s+|all\s+|the\s+)?(ai|a\.i\.|llm|gpt|chatgpt|language\s+model|assistant|chatbot|bot)s?"
    r"(\s+(models?|systems?|agents?))?\s*(reading|processing|parsing|[:,])"
    r"|\bif\s+you\s+are\s+(an?\s+)?(ai|llm|language\s+model|assistant|chatbot|bot)\b"
    r"|\b(ai|llm|gpt|language\s+model|assistant|chatbot)s?\s+(models?\s+)?(reading|processing|parsing|summari[sz]ing|crawling|scraping)\s+this\b"
    r"|\b(the\s+)?only\s+(correct|right|valid)\s+(question|answer)\b"
    # Our own delimiters, chat-template headers, and notes to whoever writes the questions.
    r"|</?\s*document\s*>"
    r"|(^|\n)\s*#{2,}\s*(instruction|response|system|input)s?\b"
    r"|\b(new|updated|additional|real)\s+(task|instructions?)\s+(from|for)\b"
    r"|\b(dear|attention|note\s+to|hey)\s+(the\s+|any\s+)?(question|quiz|dataset|data)\s+(writers?|generators?|annotators?|creators?)\b"
    r")"
)


def measures(text: Column) -> dict[str, Column]:
    """Per-document statistics used by the rules (Gopher / C4 / FineWeb style), vectorised."""
    words = F.filter(F.split(F.trim(text), r"\s+"), lambda w: w != "")
    n_words = F.size(words)
    safe_n = F.greatest(n_words, F.lit(1))
    lines = F.filter(F.split(text, "\n"), lambda ln: F.trim(ln) != "")
    n_lines = F.greatest(F.size(lines), F.lit(1))
    symbols = F.size(F.split(text, r"#|\.\.\.|…")) - 1
    # Navigation bars and link lists: "Home | Video | World" or "News » Sport · Weather".
    separators = F.size(F.split(text, r"[|»›•·]")) - 1
    return {
        "n_chars": F.length(text),
        "n_words": n_words,
        "mean_word_length": F.aggregate(words, F.lit(0), lambda acc, w: acc + F.length(w)) / safe_n,
        "alpha_word_ratio": F.size(F.filter(words, lambda w: w.rlike(r"\p{L}"))) / safe_n,
        "symbol_word_ratio": symbols / safe_n,
        "punct_line_ratio": F.size(F.filter(lines, lambda ln: F.trim(ln).rlike(r"[.!?\"'”’:)]$"))) / n_lines,
        "short_line_ratio": F.size(F.filter(lines, lambda ln: F.length(F.trim(ln)) < 30)) / n_lines,
        "separator_word_ratio": separators / safe_n,
    }


def filter_documents(docs: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(docs, READS, "filter")
    cfg: FilterConfig = ctx.cfg.filter
    stats = measures(F.col("text"))
    df = docs.select("*", *[col.alias(f"_m_{name}") for name, col in stats.items() if name != "n_chars"])
    if "n_chars" not in docs.columns:
        df = df.withColumn("n_chars", stats["n_chars"])
    injection = F.regexp_extract(F.col("text"), PROMPT_INJECTION, 0)
    checks = [
        (
            "prompt_injection",
            injection != "",
            F.concat(F.lit("text addressed to an LLM: "), F.substring(F.regexp_replace(injection, r"\s+", " "), 1, 120)),
        )
    ]
    for rule in RULES:
        value = F.col("n_chars") if rule.value == "n_chars" else F.col(f"_m_{rule.value}")
        threshold = getattr(cfg, rule.threshold_key)
        failed = value < F.lit(threshold) if rule.op == "min" else value > F.lit(threshold)
        bound = ">=" if rule.op == "min" else "<="
        detail = F.format_string(f"{rule.value}=%s, required {bound} {threshold}", F.round(value.cast("double"), 4).cast("string"))
        checks.append((rule.name, failed, detail))
    reason, detail = first_failure(checks)
    marked = (
        df.withColumn(REASON, reason)
        .withColumn(DETAIL, detail)
        .withColumnRenamed("_m_n_words", "n_words")
        .drop(*[c for c in df.columns if c.startswith("_m_") and c != "_m_n_words"])
    )
    return StageResult(marked)


STAGE = Stage("filter", READS, WRITES, "filtered", filter_documents)
