"""Token cost per stage and per run, from `llm.prices` (USD per million tokens, per model name)."""

from __future__ import annotations

from ..config import Config, ConfigError


def priced_model(cfg: Config, stage: str) -> str:
    """The name `llm.prices` knows a stage's model by (`local` for the embedded server)."""
    return "local" if cfg.llm.provider == "local" else cfg.llm.models[stage]


def check_prices_for_budget(cfg: Config, stages: list[str] | tuple[str, ...]) -> None:
    """A budget (llm.max_cost_usd) needs a price for the model of every LLM stage that runs."""
    if cfg.llm.max_cost_usd is None:
        return
    unpriced = sorted({priced_model(cfg, s) for s in stages} - set(cfg.llm.prices))
    if unpriced:
        raise ConfigError(f"llm.max_cost_usd needs a price for every LLM stage's model; llm.prices lacks {unpriced} (set llm.prices.<model>)")


def stage_cost_usd(cfg: Config, stage: str, prompt_tokens: float, completion_tokens: float) -> float | None:
    """None when the stage's model has no price (reported as unknown, never as free)."""
    price = cfg.llm.prices.get(priced_model(cfg, stage))
    if price is None:
        return None
    return (prompt_tokens * price["input_per_1m"] + completion_tokens * price["output_per_1m"]) / 1e6


def cost_summary(cfg: Config, usage_by_stage: dict[str, dict[str, float]]) -> tuple[dict[str, float], list[str]]:
    """→ (metrics for MLflow: `<stage>.llm.cost_usd`, `run.llm.*`; lines for the run summary)."""
    metrics: dict[str, float] = {}
    lines = ["LLM usage (calls / cache hits / retries / 429s / tokens in+out / cost):"]
    totals = {"calls": 0.0, "cache_hits": 0.0, "retries": 0.0, "rate_limited": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0}
    run_cost: float | None = 0.0
    for stage, usage in usage_by_stage.items():
        cost = stage_cost_usd(cfg, stage, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        for k in totals:
            totals[k] += usage.get(k, 0.0)
        if cost is None:
            run_cost = None
        else:
            metrics[f"{stage}.llm.cost_usd"] = cost
            run_cost = None if run_cost is None else run_cost + cost
        model = priced_model(cfg, stage)
        lines.append(
            f"  {stage:<12} {model:<16} {int(usage.get('calls', 0))} / {int(usage.get('cache_hits', 0))} / "
            f"{int(usage.get('retries', 0))} / {int(usage.get('rate_limited', 0))} / "
            f"{int(usage.get('prompt_tokens', 0))}+{int(usage.get('completion_tokens', 0))} / "
            + (f"${cost:.4f}" if cost is not None else "no price for this model (llm.prices)")
        )
    metrics.update({f"run.llm.{k}": v for k, v in totals.items()})
    if run_cost is not None:
        metrics["run.llm.cost_usd"] = run_cost
    lines.append(
        f"  {'run':<12} {'':<16} {int(totals['calls'])} / {int(totals['cache_hits'])} / {int(totals['retries'])} / "
        f"{int(totals['rate_limited'])} / {int(totals['prompt_tokens'])}+{int(totals['completion_tokens'])} / "
        + (f"${run_cost:.4f}" if run_cost is not None else "partly unpriced")
    )
    return metrics, lines
