"""Answer types that hold, and the fact a pair's answer states: one implementation, used by the
check stage and by any gate that guards it.

`check_answer_type` is deterministic. It reads what the value clearly is (a yes/no word, a date,
a number with at most a unit, a math expression) with the reward's own parsing, so a pair is typed
the way `reward.compute_score` will score it:

* the declared type holds → it is kept;
* the value clearly is another type → the pair is retyped ("42 km" → numeric, "yes" → boolean;
  a date → short_text, which the reward compares as text: there is no `date` type);
* otherwise → `answer_type_mismatch`. Plain text is never "clearly" anything: a phrase typed
  numeric, boolean or expression means the question expected something the answer is not.

`choice` holds when the answer is one of the options the question lists (a label such as "B"
of "A) … B) …", or an option's words); `entity`/`short_text` when within the word limit.

`fact_key` says which answers are the same under the reward's normalisation, so the check stage
keeps one pair per fact of a document (`duplicate_fact`).

The functions are plain Python; the `*_column` helpers wrap them as pandas UDFs for Spark
(pyspark is imported only there).
"""

from __future__ import annotations

import re
from functools import cache

import pandas as pd

from ..prompts import ANSWER_TYPES
from ..reward import looks_mathy, normalize_text, parse_math, parse_number, unit_canon

DATE_AS = "short_text"  # the type a date lands as (the reward compares it as text)
BOOLEAN_WORDS = frozenset({"yes", "no", "true", "false"})
CLOSED_SET_TYPES = frozenset({"boolean", "choice"})  # answers shared by different facts
_SHOWN_CHARS = 80

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_YEAR = r"\d{3,4}"
_DATE_RE = re.compile(
    "|".join(
        [
            rf"(?:(?:early|mid|late)[- ])?{_MONTH},?\s+(?:{_DAY},?\s+)?{_YEAR}",  # January 2006, May 5, 1889
            rf"{_DAY}\s+(?:of\s+)?{_MONTH},?(?:\s+{_YEAR})?",  # 5 May 1889, 5th of May
            rf"{_MONTH}\s+{_DAY}",  # May 5
            r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}",  # 2006-01-15, 15/01/2006
            r"(?:the\s+)?(?:early\s+|mid-?\s*|late\s+)?\d{2,3}0'?s",  # the 1990s
            rf"(?:spring|summer|autumn|fall|winter)\s+(?:of\s+)?{_YEAR}",
            r"\d{1,4}\s*(?:bc|bce|ad|ce)|(?:ad|ce)\s*\d{1,4}",  # 300 BC, AD 79
        ]
    ),
    re.IGNORECASE,
)
# "A) x", "(b) y", "C. z", "D: w": a label, then whitespace. Two distinct labels make a list.
_LABEL_RE = re.compile(r"(?:^|[\s:,;(])\(?([A-Ha-h]|[1-9])[).:](?=\s)")

_NOT_WHAT = {
    "numeric": "a number with at most a unit",
    "boolean": "yes/no/true/false",
    "expression": "a math expression",
}


def shown(answer: str) -> str:
    """The answer as a detail quotes it: repr, cut to a readable length."""
    text = answer if len(answer) <= _SHOWN_CHARS else answer[: _SHOWN_CHARS - 1] + "…"
    return repr(text)


def is_boolean(answer: str) -> bool:
    return normalize_text(answer) in BOOLEAN_WORDS


def is_date(answer: str) -> bool:
    return _DATE_RE.fullmatch(answer.strip().rstrip(".").strip()) is not None


def _math_object(answer: str):
    """The SymPy object math-verify reads from an answer that looks like math, else None. Text
    ("January 2006") is never sent: math-verify would read it as a product of letters."""
    if not looks_mathy(answer):
        return None
    parsed = parse_math(answer)
    return parsed[0] if parsed and not isinstance(parsed[0], str) else None


def value_kind(answer: str) -> str | None:
    """What the value clearly is: boolean, date, numeric or expression; None for plain text."""
    if is_boolean(answer):
        return "boolean"
    if is_date(answer):  # before numbers: "300 BC" is not 300 of a unit "BC"
        return "date"
    if parse_number(answer) is not None:
        return "numeric"
    obj = _math_object(answer)
    if obj is None:
        return None
    return "numeric" if getattr(obj, "is_number", False) else "expression"


def word_count(text: str) -> int:
    return len(text.split())


def choice_labels(question: str) -> set[str]:
    """Option labels the question lists ("A) … B) …"); empty unless there are two or more."""
    labels = {m.group(1).lower() for m in _LABEL_RE.finditer(question)}
    return labels if len(labels) >= 2 else set()


def _contains_words(text: str, part: str) -> bool:
    words = " ".join(re.sub(r"[^\w]+", " ", part.lower()).split())
    return bool(words) and f" {words} " in " " + " ".join(re.sub(r"[^\w]+", " ", text.lower()).split()) + " "


def _choice(answer: str, question: str, kind: str | None) -> tuple[str | None, str | None]:
    labels = choice_labels(question)
    label = answer.strip().strip("().:").strip().lower()
    if labels and label in labels:
        return "choice", None
    lists_options = bool(labels) or re.search(r"\bor\b", question, re.IGNORECASE) is not None
    if lists_options and _contains_words(question, answer):
        return "choice", None
    if lists_options:
        return None, f"answer_type choice, but {shown(answer)} is not one of the options in the question"
    if kind is not None:  # not a choice question at all, but the value says what it is
        return (DATE_AS if kind == "date" else kind), None
    return None, f"answer_type choice, but the question lists no options (answer {shown(answer)})"


def check_answer_type(answer: str, answer_type: str, question: str, max_words: int = 12) -> tuple[str | None, str | None]:
    """(type to land, None) when the type holds or the value clearly is another type;
    (None, detail) for an `answer_type_mismatch`. `max_words` bounds entity/short_text answers."""
    answer, question = answer or "", question or ""
    declared = (answer_type or "").strip().lower()
    if declared not in ANSWER_TYPES:
        return None, f"answer_type {answer_type!r} is not one of {', '.join(ANSWER_TYPES)}"
    kind = value_kind(answer)
    if declared == "choice":
        return _choice(answer, question, kind)
    if kind == "date":
        return DATE_AS, None
    if kind is not None:
        return kind, None
    if declared in _NOT_WHAT:
        return None, f"answer_type {declared}, but {shown(answer)} is not {_NOT_WHAT[declared]}"
    n = word_count(answer)
    if n > max_words:
        return None, f"answer_type {declared}, but {shown(answer)} has {n} words, max {max_words}"
    return declared, None


def fact_key(answer: str, answer_type: str) -> str | None:
    """Equal keys = the same answer under the reward's normalisation: a number by its value and
    unit ("2,850 km" = "2850 km"; a unit is not assumed where one side has none), an expression
    by its characters without spaces, text by `reward.normalize_text` ("The Danube." = "danube").
    None for answers of a closed set (yes/no, an option label): two questions answered "yes" are
    not one fact."""
    answer = answer or ""
    if (answer_type or "").strip().lower() in CLOSED_SET_TYPES or is_boolean(answer):
        return None
    number = parse_number(answer)
    if number is not None:
        value, unit, _ = number
        return f"number:{value:.12g}:{unit_canon(unit)}"
    if (answer_type or "").strip().lower() == "expression":
        compact = re.sub(r"\s+", "", answer)
        return f"expression:{compact}" if compact else None
    text = normalize_text(answer)
    return f"text:{text}" if text else None


# --- Spark wrappers (pyspark imported on use: the rules above stay plain Python) ------------


@cache
def _type_udf(max_words: int):
    from pyspark.sql import functions as F

    @F.pandas_udf("answer_type string, detail string")
    def verdicts(answers: pd.Series, types: pd.Series, questions: pd.Series) -> pd.DataFrame:
        rows = [check_answer_type(a, t, q, max_words) for a, t, q in zip(answers, types, questions)]
        return pd.DataFrame(rows, columns=["answer_type", "detail"], index=answers.index)

    return verdicts


@cache
def _fact_udf():
    from pyspark.sql import functions as F

    @F.pandas_udf("string")
    def keys(answers: pd.Series, types: pd.Series) -> pd.Series:
        return pd.Series([fact_key(a, t) for a, t in zip(answers, types)], index=answers.index, dtype=object)

    return keys


def answer_type_column(answer, answer_type, question, max_words: int = 12):
    """struct<answer_type, detail> of `check_answer_type` (answer_type null on a mismatch)."""
    return _type_udf(max_words)(answer, answer_type, question)


def fact_key_column(answer, answer_type):
    """`fact_key` as a string Column (null: the answer is never collapsed)."""
    return _fact_udf()(answer, answer_type)
