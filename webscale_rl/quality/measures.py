"""The one implementation of each expectation kind of `suites.py`, as Spark expressions.

The landing gate (`gates.py`) sums these over every batch; the Great Expectations validation of
the final `qa` table (`expectations.py`) uses GX's own class where GX has one for a kind (a
declarative kind → class table) and otherwise evaluates the predicates below on its batch, so no
rule is written twice. Per-row predicates are true on a violating row; a null value violates
only `not_null`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ..rules.words import contains_words
from .suites import Expectation


def column(name: str) -> Column:
    return F.col(f"`{name}`")


def anchored(pattern: str) -> str:
    """`matches` tests the whole value, not a part of it."""
    return f"^(?:{pattern})$"


def _out_of_bounds(value: Column, lo: Any, hi: Any) -> Column:
    cond = F.lit(False)
    if lo is not None:
        cond = cond | (value < F.lit(lo))
    if hi is not None:
        cond = cond | (value > F.lit(hi))
    return cond


def _in_other_column(e: Expectation) -> Column:
    # The same word-based test as the check stage's answer_in_question (rules/words.py).
    other = column(e.args[0])
    return other.isNotNull() & contains_words(other, column(e.column))


# kind → predicate of a present (non-null) value that violates the expectation
_PRESENT_VALUE_VIOLATES: dict[str, Callable[[Expectation], Column]] = {
    "in_set": lambda e: ~column(e.column).isin(list(e.args[0])),
    "matches": lambda e: ~column(e.column).rlike(anchored(e.args[0])),
    "length_between": lambda e: _out_of_bounds(F.length(column(e.column)), *e.args),
    "value_between": lambda e: _out_of_bounds(column(e.column), *e.args),
    "size_between": lambda e: _out_of_bounds(F.size(column(e.column)), *e.args),
    "not_in": _in_other_column,
}
ROW_KINDS = ("not_null", *_PRESENT_VALUE_VIOLATES)


def row_violation(e: Expectation) -> Column:
    """True on a row that violates the per-row expectation `e`."""
    if e.kind == "not_null":
        return column(e.column).isNull()
    if e.kind not in _PRESENT_VALUE_VIOLATES:
        raise ValueError(f"not a per-row expectation: {e.kind}")
    return column(e.column).isNotNull() & _PRESENT_VALUE_VIOLATES[e.kind](e)


def duplicate_count(e: Expectation) -> Column:
    """`unique`: non-null values minus distinct values (an aggregate)."""
    return F.count(column(e.column)) - F.count_distinct(column(e.column))


def llm_error_count(e: Expectation) -> Column:
    """`max_reject_share`: rejections whose reason starts with `<column>:` (an aggregate)."""
    return F.sum(F.col("reason").startswith(f"{e.column}:").cast("long"))


def schema_problems(df: DataFrame, e: Expectation) -> str | None:
    """`schema`: missing columns and columns of another type, or None."""
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    problems = []
    for name, tp in e.args:
        if name not in types:
            problems.append(f"missing {name}")
        elif types[name] != tp:
            problems.append(f"{name} is {types[name]}, expected {tp}")
    return ", ".join(problems) or None


def distribution_applies(rows: Any, min_rows: int) -> Any:
    """Share checks judge batches of at least `min_rows` rows (an int or a Column)."""
    return rows >= min_rows


def exceeds_share(count: Any, rows: Any, max_share: float) -> Any:
    """`max_share`: one value on more than `max_share` of the rows (ints or Columns; rows > 0)."""
    return count / rows > max_share


def top_value(df: DataFrame, name: str) -> tuple[Any, int]:
    """The most frequent value of a column and its row count."""
    top = df.groupBy(column(name)).count().orderBy(F.desc("count")).limit(1).collect()[0]
    return top[0], int(top["count"])


def row_relation(e: Expectation, rows_in: int, kept: int, rejected: int) -> tuple[bool, str]:
    """(holds?, what was seen) of a row-count relation of one stage's batch."""
    if e.kind == "rows_accounted":
        return kept + rejected == rows_in, f"in {rows_in}, kept {kept} + rejected {rejected}"
    if e.kind == "rows_at_most_input":
        return kept <= rows_in, f"in {rows_in}, kept {kept}"
    raise ValueError(f"not a row-count relation: {e.kind}")


def value_over_share(e: Expectation, rows: int, min_rows: int) -> Column:
    """`max_share` per row, for a validation that judges rows: true on every row whose value is on
    more than the allowed share of the `rows` rows of the batch (false on small batches)."""
    same_value = F.count(F.lit(1)).over(Window.partitionBy(column(e.column)))
    return exceeds_share(same_value, F.lit(rows), e.args[0]) & F.lit(distribution_applies(rows, min_rows))
