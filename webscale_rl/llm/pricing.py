"""Token cost per stage and per run, from `llm.prices` (USD per million tokens, per model name).

Prompt tokens the endpoint read from its prompt cache (`cached_prompt_tokens`, part of the prompt
tokens) cost `cached_input_per_1m` when the model's price has one, else `input_per_1m` (no
discount). The budget's worst case passes none: it is priced at the full input price, an upper
bound whatever the cache does."""

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


def stage_cost_usd(cfg: Config, stage: str, prompt_tokens: float, completion_tokens: float, cached_prompt_tokens: float = 0) -> float | None:
    """None when the stage's model has no price (reported as unknown, never as free).
    `cached_prompt_tokens` are part of `prompt_tokens`, priced at the cached input price."""
    price = cfg.llm.prices.get(priced_model(cfg, stage))
    if price is None:
        return None
    cached_price = price.get("cached_input_per_1m", price["input_per_1m"])
    fresh = prompt_tokens - cached_prompt_tokens
    return (fresh * price["input_per_1m"] + cached_prompt_tokens * cached_price + completion_tokens * price["output_per_1m"]) / 1e6


def usage_cost_usd(cfg: Config, stage: str, usage: dict[str, float]) -> float | None:
    """The cost of a stage's `llm_usage` (its prompt, cached prompt and completion tokens)."""
    return stage_cost_usd(cfg, stage, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), usage.get("cached_prompt_tokens", 0))


def cached_share(usage: dict[str, float]) -> float:
    """The share of the prompt tokens the endpoint read from its prompt cache (0 without prompt tokens)."""
    prompt = usage.get("prompt_tokens", 0)
    return usage.get("cached_prompt_tokens", 0) / prompt if prompt else 0.0


def cost_summary(cfg: Config, usage_by_stage: dict[str, dict[str, float]]) -> tuple[dict[str, float], list[str]]:
    """→ (metrics for MLflow: `<stage>.llm.cost_usd`, `<stage>.llm.cached_prompt_share`,
    `run.llm.*`; lines for the run summary). A line's last field is the share of its prompt tokens
    the endpoint read from its prompt cache (the rest it evaluated); the fields before it keep their
    order (benchmarks/qa_quality.py parses them)."""
    metrics: dict[str, float] = {}
    lines = ["LLM usage (calls / cache hits / retries / 429s / tokens in+out / cost / prompt tokens cached):"]
    totals = {k: 0.0 for k in ("calls", "cache_hits", "retries", "rate_limited", "prompt_tokens", "completion_tokens", "cached_prompt_tokens")}
    run_cost: float | None = 0.0
    for stage, usage in usage_by_stage.items():
        cost = usage_cost_usd(cfg, stage, usage)
        for k in totals:
            totals[k] += usage.get(k, 0.0)
        if cost is None:
            run_cost = None
        else:
            metrics[f"{stage}.llm.cost_usd"] = cost
            run_cost = None if run_cost is None else run_cost + cost
        metrics[f"{stage}.llm.cached_prompt_share"] = cached_share(usage)
        model = priced_model(cfg, stage)
        lines.append(
            f"  {stage:<12} {model:<16} {int(usage.get('calls', 0))} / {int(usage.get('cache_hits', 0))} / "
            f"{int(usage.get('retries', 0))} / {int(usage.get('rate_limited', 0))} / "
            f"{int(usage.get('prompt_tokens', 0))}+{int(usage.get('completion_tokens', 0))} / "
            + (f"${cost:.4f}" if cost is not None else "no price for this model (llm.prices)")
            + f" / {_cached(usage)}"
        )
    metrics.update({f"run.llm.{k}": v for k, v in totals.items()})
    metrics["run.llm.cached_prompt_share"] = cached_share(totals)
    if run_cost is not None:
        metrics["run.llm.cost_usd"] = run_cost
    lines.append(
        f"  {'run':<12} {'':<16} {int(totals['calls'])} / {int(totals['cache_hits'])} / {int(totals['retries'])} / "
        f"{int(totals['rate_limited'])} / {int(totals['prompt_tokens'])}+{int(totals['completion_tokens'])} / "
        + (f"${run_cost:.4f}" if run_cost is not None else "partly unpriced")
        + f" / {_cached(totals)}"
    )
    return metrics, lines


def _cached(usage: dict[str, float]) -> str:
    """The cached prompt tokens and their share, e.g. `13267 (45%)`."""
    return f"{int(usage.get('cached_prompt_tokens', 0))} ({cached_share(usage):.0%})"
