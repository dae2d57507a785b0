"""A run's LLM budget (`llm.max_cost_usd`, `webscale-rl run --max-cost-usd`).

The runner stages an LLM stage a slice at a time (`runner.stage_llm_slices`). Before a slice it
asks what the slice may cost at worst: per item, the prompt's own tokens and the document's (both
at `limits.bytes_per_token`, the document cut to `llm.max_doc_chars` bytes as the call cuts it)
plus `llm.max_tokens` of reply, at the stage model's price (`llm.pricing`, the one price list).
A slice whose worst case fits the rest of the budget runs whole; otherwise only its first items
(in key-hash order) whose worst cases fit run, and the run stops after them. After each slice the
spend is what the staged rows really used: the endpoint's reported tokens, cache hits free.
What is done lands; the items never called are in no table yet, so the next run takes them."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from .config import Config
from .limits import prompt_overhead_tokens
from .llm.pricing import stage_cost_usd
from .stages.base import Stage

WORST = "_budget_worst_usd"
SPENT = "_budget_spent_usd"


@dataclass(frozen=True)
class BudgetStop:
    """Where a run stopped for its budget: spent and budget in USD, the stage, its items done this run and left."""

    spent_usd: float
    limit_usd: float
    stage: str
    done: int
    left: int

    def line(self) -> str:
        return (
            f"budget reached: spent ${self.spent_usd:.4f} of llm.max_cost_usd ${self.limit_usd:.4f}; "
            f"stage '{self.stage}' did {self.done} item(s) and left {self.left} (and the later stages) for the next run"
        )


@dataclass
class Budget:
    limit_usd: float
    spent_by_stage: dict[str, float] = field(default_factory=dict)
    stop: BudgetStop | None = None

    @property
    def spent_usd(self) -> float:
        return sum(self.spent_by_stage.values())

    @property
    def remaining_usd(self) -> float:
        return self.limit_usd - self.spent_usd


def run_budget(cfg: Config) -> Budget | None:
    return Budget(cfg.llm.max_cost_usd) if cfg.llm.max_cost_usd is not None else None


def worst_case_usd(cfg: Config, stage: Stage) -> Column:
    """The most the calls of `stage` on a row may cost (see the module docstring): each of its
    `calls_per_item` calls is bounded by the one that carries the document."""
    bytes_per_token = cfg.limits.bytes_per_token
    doc_bytes = F.least(F.coalesce(F.octet_length(F.col(stage.document)), F.lit(0)), F.lit(cfg.llm.max_doc_chars))
    prompt_tokens = F.lit(prompt_overhead_tokens(cfg, stage.name)) + F.ceil(doc_bytes / F.lit(bytes_per_token))
    completion_tokens = cfg.llm.max_tokens.get(stage.name, 256)  # the engine's default too (llm_stage.endpoint_for)
    cost = stage_cost_usd(cfg, stage.name, prompt_tokens, completion_tokens)  # type: ignore[arg-type]  # Column arithmetic
    if cost is None:  # pricing.check_prices_for_budget refused this config at start
        raise AssertionError(f"no price for stage {stage.name}")
    return cost * stage.calls_per_item if stage.calls_per_item > 1 else cost


def affordable(part: DataFrame, cfg: Config, stage: Stage, remaining_usd: float) -> tuple[DataFrame, int]:
    """(the first items of `part`, in key-hash order, whose worst cases add up to at most
    `remaining_usd`; how many). Called only when the whole slice does not fit."""
    order = Window.orderBy(F.xxhash64(*stage.input_key), *stage.input_key).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    ranked = part.withColumn(WORST, worst_case_usd(cfg, stage)).withColumn(SPENT, F.sum(WORST).over(order))
    fitting = ranked.filter(F.col(SPENT) <= F.lit(remaining_usd)).drop(WORST, SPENT)
    return fitting, fitting.count()
