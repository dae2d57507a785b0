"""Word-level text rules as Spark expressions.

`contains_words` is the one test of "this answer is inside that question": the check stage
rejects a pair with it (`answer_in_question`) and the landing gate's `not_in(answer)` expectation
counts violations with it. A substring test would flag "A" inside "What is the first letter of
the ISO basic Latin alphabet?"; comparing whole words after the same normalisation does not.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def normalise_words(col: Column) -> Column:
    """Lower case, every run of characters that are not letters or digits made one space, trimmed."""
    return F.trim(F.regexp_replace(F.lower(col), r"[^\p{L}\p{N}]+", " "))


def contains_words(text: Column, part: Column) -> Column:
    """`part` occurs in `text` as whole words, after the same normalisation of both. A `part`
    without letters or digits contains no words, so it occurs nowhere."""
    words = normalise_words(part)
    found = F.instr(F.concat(F.lit(" "), normalise_words(text), F.lit(" ")), F.concat(F.lit(" "), words, F.lit(" "))) > 0
    return found & (words != "")
