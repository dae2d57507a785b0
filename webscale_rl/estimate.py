"""`webscale-rl estimate`: what a run on an input would call, use and cost, before it pays.

1. The cheap stages (ingest..dedup) run on the input, or on its first `sample` documents, in a
   scratch warehouse (never the user's): how many documents reach the LLM stages.
2. The LLM stages run, really calling the configured endpoint, on `llm_sample` of those documents
   (chosen by a hash of doc_id) in a second scratch warehouse. Each staged batch keeps its per-row
   usage (reported tokens; read back by Delta time travel), so every measured document gets its
   calls, tokens and cost per stage.
3. Whole-input figure = documents reaching the LLM stages x the per-document mean. The range is a
   95% interval: mean +- 1.96 standard errors of the per-document mean over the measured documents
   (with the finite-population correction: measuring every document leaves no sampling error),
   combined with the sampling error of the share that reaches the LLM stages when only `sample`
   input documents went through the cheap stages; and at least as wide as the rule of three
   allows: a kind of document none of the n measured shows may be up to 3/n of them, costing as
   little as one the first LLM stage rejects or as much as the dearest measured one. It says nothing of what sampling cannot see:
   replies the user's LLM cache already holds (a real run pays less), duplicates across the
   sample's edge (`sample` finds fewer), a model that answers differently on another day.
Prices are `llm.prices` through `llm.pricing` (the one implementation of cost)."""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from .config import Config, WarehouseConfig
from .llm.pricing import priced_model, stage_cost_usd, usage_cost_usd
from .pipeline import run_pipeline
from .readers import read_documents
from .spark import get_spark
from .stages.llm_stage import ATTEMPTS, CACHED_PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS
from .stages.order import LLM_STAGES, PIPELINE, STAGES
from .storage import is_local, join_uri, local_path
from .warehouse import Warehouse

Z_95 = 1.96
LAST_CHEAP = STAGES[STAGES.index(LLM_STAGES[0]) - 1]  # dedup
CHEAP_TABLE = PIPELINE[STAGES.index(LAST_CHEAP)].table  # what the first LLM stage reads
QUANTITIES = ("calls", "prompt_tokens", "completion_tokens", "cost_usd")


@dataclass(frozen=True)
class Range:
    expected: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low - 1e-9 <= value <= self.high + 1e-9


@dataclass
class Estimate:
    """A whole-input estimate: per LLM stage (and "total") a Range per quantity (calls,
    prompt_tokens, completion_tokens, cost_usd; cost None when a model has no price)."""

    input_documents: int
    llm_documents: float  # documents expected to reach the first LLM stage
    cheap_documents: int  # input documents the cheap stages ran on
    measured_documents: int  # documents the LLM stages ran on
    stages: dict[str, dict[str, Range | None]]
    measured: dict[str, float]  # what measuring used: calls, tokens and cost
    models: dict[str, str]

    def lines(self) -> list[str]:
        sampled = "all of them" if self.cheap_documents >= self.input_documents else f"the first {self.cheap_documents}"
        out = [
            f"estimate for {self.input_documents} input document(s): ingest..{LAST_CHEAP} ran on {sampled}; "
            f"about {self.llm_documents:.0f} reach the LLM stages; the LLM stages were measured on {self.measured_documents} of them",
            f"  {'stage':<11} {'model':<14} {'calls':>20} {'prompt tokens':>26} {'completion tokens':>24} {'cost USD':>26}",
        ]
        for stage, q in self.stages.items():
            out.append(
                f"  {stage:<11} {self.models.get(stage, ''):<14} {_fmt(q['calls'], '{:.0f}'):>20} {_fmt(q['prompt_tokens'], '{:.0f}'):>26} "
                f"{_fmt(q['completion_tokens'], '{:.0f}'):>24} {_fmt(q['cost_usd'], '{:.4f}'):>26}"
            )
        out.append("  figures: expected (low-high); the range is a 95% interval from the sampling: mean +- 1.96 standard errors of the")
        out.append("  per-document mean over the measured documents, and of the share reaching the LLM stages when --sample cut the input.")
        out.append("  It cannot see replies your warehouse's LLM cache already holds (a real run pays less for those).")
        cost = self.measured.get("cost_usd")
        out.append(
            f"  measuring made {self.measured['calls']:.0f} call(s), {self.measured['prompt_tokens']:.0f}+{self.measured['completion_tokens']:.0f} tokens"
            + (f", ${cost:.4f}" if cost is not None else "")
        )
        total = self.stages["total"]["cost_usd"]
        if total is not None:
            out.append(f"  to cap a run at the high end: webscale-rl run ... --max-cost-usd {max(total.high, 0.0001):.4f}")
        return out


def _fmt(r: Range | None, number: str) -> str:
    if r is None:
        return "no price (llm.prices)"
    return f"{number.format(r.expected)} ({number.format(r.low)}-{number.format(r.high)})"


def estimate_run(
    inputs: list[str],
    cfg: Config,
    *,
    sample: int | None = None,
    llm_sample: int = 20,
    scratch: str | None = None,
    spark: SparkSession | None = None,
    log: Callable[[str], None] = print,
) -> Estimate:
    """Measure and extrapolate (see the module docstring). `scratch`: where the two scratch
    warehouses go (default: a temporary folder on this machine, removed afterwards)."""
    if llm_sample < 1:
        raise ValueError("the LLM sample needs at least one document")
    spark = spark or get_spark(cfg, storage_uris=[*inputs, *([scratch] if scratch else [])])
    base = join_uri(scratch, f"webscale-rl-estimate-{uuid.uuid4().hex[:8]}") if scratch else tempfile.mkdtemp(prefix="webscale-rl-estimate-")
    quiet = _measuring_config(cfg)
    try:
        cheap = run_pipeline(inputs, join_uri(base, "cheap"), quiet, until=LAST_CHEAP, limit=sample, spark=spark, log=log)
        cheap_wh = cheap.warehouse
        n_cheap = next(s.rows_in for s in cheap.stages if s.stage == PIPELINE[0].name)
        survivors = cheap_wh.read(CHEAP_TABLE).select("doc_id")
        n_survivors = survivors.count()
        n_input = n_cheap if sample is None else read_documents(spark, inputs, on_bad_record=cfg.limits.on_bad_record).count()
        picked = [r["doc_id"] for r in survivors.orderBy(F.xxhash64("doc_id"), "doc_id").limit(llm_sample).collect()]
        per_doc, measured = _measure(spark, cheap_wh, picked, quiet, join_uri(base, "llm"), log) if picked else ({}, {})
    finally:
        if is_local(base):
            shutil.rmtree(local_path(base), ignore_errors=True)
        else:
            log(f"estimate: scratch warehouses left in {base} (remove them when done)")
    return _extrapolate(cfg, per_doc, measured, picked, n_input, n_cheap, n_survivors)


def _measuring_config(cfg: Config) -> Config:
    """The user's config for the scratch runs: tables as folders under the scratch root (never in
    the user's catalog), no MLflow, no final validation or landing gates (they decide nothing about
    calls), no budget, no cache (an empty scratch warehouse), online calls (a Batch API answers
    within a day; tokens are the same)."""
    return dataclasses.replace(
        cfg,
        warehouse=WarehouseConfig(),
        mlflow=dataclasses.replace(cfg.mlflow, enabled=False),
        quality=dataclasses.replace(cfg.quality, enabled=False, gates=False),
        llm=dataclasses.replace(cfg.llm, max_cost_usd=None, cache=False, mode="online"),
    )


def _measure(
    spark: SparkSession, cheap_wh: Warehouse, doc_ids: list[str], cfg: Config, root: str, log: Callable[[str], None]
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float]]:
    """Run the LLM stages on `doc_ids` in a scratch warehouse → (per stage, per document:
    calls, tokens, cost; what it all used)."""
    wh = Warehouse.open(spark, root)
    chosen = spark.createDataFrame([(d,) for d in doc_ids], "doc_id string")
    for table in (PIPELINE[0].table, CHEAP_TABLE):  # what the LLM stages read, and what "nothing vanished" counts
        wh.append_once(cheap_wh.read(table).join(chosen, "doc_id", "left_semi"), table, "webscale-rl/estimate/sample")
    run = run_pipeline([], root, cfg, start=LLM_STAGES[0], until=LLM_STAGES[-1], spark=spark, log=log)
    per_doc: dict[str, dict[str, dict[str, float]]] = {}
    for stage in LLM_STAGES:
        batch = wh.read_discarded_batch(stage, run.run_id)
        if batch is None:
            per_doc[stage] = {}
            continue
        rows = (
            batch.groupBy("doc_id")
            .agg(
                F.sum(F.when(F.col(ATTEMPTS) > 0, 1).otherwise(0)).alias("calls"),
                F.sum(PROMPT_TOKENS).alias("prompt_tokens"),
                F.sum(COMPLETION_TOKENS).alias("completion_tokens"),
                (F.sum(CACHED_PROMPT_TOKENS) if CACHED_PROMPT_TOKENS in batch.columns else F.lit(0)).alias("cached_prompt_tokens"),
            )
            .collect()
        )
        per_doc[stage] = {r["doc_id"]: {k: float(r[k] or 0) for k in ("calls", "prompt_tokens", "completion_tokens", "cached_prompt_tokens")} for r in rows}
        for usage in per_doc[stage].values():
            # Measured tokens at their price: what the endpoint's prompt cache served is cheaper.
            usage["cost_usd"] = usage_cost_usd(cfg, stage, usage)
    totals = {k: sum(s.llm.get(k, 0.0) for s in run.stages) for k in ("calls", "prompt_tokens", "completion_tokens")}
    costs = [usage_cost_usd(cfg, s.stage, s.llm) for s in run.stages if s.llm]
    measured = {**totals, "cost_usd": None if None in costs else sum(c for c in costs if c is not None)}
    return per_doc, measured


def _extrapolate(
    cfg: Config,
    per_doc: dict[str, dict[str, dict[str, float]]],
    measured: dict[str, float],
    docs: list[str],
    n_input: int,
    n_cheap: int,
    n_survivors: int,
) -> Estimate:
    """Per stage and quantity: every measured document's value (0 where the stage never saw it)."""
    n_measured = len(docs)
    # Share of input documents that reach the LLM stages, and its relative standard error when
    # only n_cheap of n_input documents went through the cheap stages.
    share = n_survivors / n_cheap if n_cheap else 0.0
    llm_docs = share * n_input
    share_rel_se = 0.0
    if n_cheap < n_input and 0 < share < 1:
        share_rel_se = math.sqrt((1 - share) / (share * n_cheap)) * _fpc(n_input, n_cheap)
    fpc = _fpc(n_survivors, n_measured)
    stages: dict[str, dict[str, Range | None]] = {}
    totals: dict[str, list[float | None]] = {q: [0.0] * n_measured for q in QUANTITIES}
    for stage in LLM_STAGES:
        stages[stage] = {}
        for q in QUANTITIES:
            values: list[float | None] = [per_doc.get(stage, {}).get(d, {}).get(q, 0.0) for d in docs]
            if q == "cost_usd" and stage_cost_usd(cfg, stage, 0, 0) is None:
                values = [None] * n_measured
            # The cheapest document an unseen kind could be: one the first LLM stage rejects.
            cheapest = min((v for v in values if v is not None), default=0.0) if stage == LLM_STAGES[0] else 0.0
            stages[stage][q] = _range(values, llm_docs, fpc, share_rel_se, cheapest)
            totals[q] = [None if (a is None or b is None) else a + b for a, b in zip(totals[q], values)]
    first = stages[LLM_STAGES[0]]
    stages["total"] = {q: _range(totals[q], llm_docs, fpc, share_rel_se, _low_doc(first[q], llm_docs)) for q in QUANTITIES}
    models = {s: priced_model(cfg, s) for s in LLM_STAGES}
    measured = measured or {"calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0, "cost_usd": 0.0}
    return Estimate(n_input, llm_docs, n_cheap, n_measured, stages, measured, models)


def _fpc(population: int, sample: int) -> float:
    """Finite-population correction: 0 when the sample is the whole population."""
    return math.sqrt((population - sample) / (population - 1)) if population > 1 and sample < population else 0.0


def _low_doc(first_stage: Range | None, n_docs: float) -> float:
    """The cheapest a document can be in total: what the first LLM stage costs per document."""
    return first_stage.expected / n_docs if first_stage is not None and n_docs else 0.0


def _range(values: list[float | None], n_docs: float, fpc: float, share_rel_se: float, cheapest: float) -> Range | None:
    """`n_docs` x the mean of `values`, and a range: the wider of the 95% interval of the mean and
    the rule of three: a kind of document no measured one shows may make up to 3/n of them (95%),
    costing as little as `cheapest` or as much as the dearest measured document."""
    if any(v is None for v in values):
        return None
    n = len(values)
    if n == 0:
        return Range(0.0, 0.0, 0.0)
    xs = [float(v) for v in values if v is not None]
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else mean  # one document: its own size as the spread
    rel_se = math.hypot(sd / math.sqrt(n) * fpc / mean, share_rel_se) if mean > 0 else 0.0
    expected = mean * n_docs
    unseen = min(1.0, 3 / n) if fpc > 0 else 0.0  # nothing is unseen when every document was measured
    low = min(expected * (1 - Z_95 * rel_se), n_docs * ((1 - unseen) * mean + unseen * cheapest))
    high = max(expected * (1 + Z_95 * rel_se), n_docs * ((1 - unseen) * mean + unseen * max(xs)))
    return Range(expected, max(0.0, low), high)
