"""Cost model and linear scaling: the whole pipeline on 1× and 10× input against the fake
OpenAI-compatible endpoint (fixed latency per request), side by side in one process and one Spark
session. Prints LLM calls and tokens per kept document per stage, wall time per kept document,
and the 10×/1× ratios. Tokens are the fake's fixed 100+20 per call: use the call counts here and
the token counts of a real-model run (MLflow `<stage>.llm.*_tokens`) for money.

    PYTHONPATH=. python benchmarks/cost_scaling.py [--factor 10] [--latency 0.05]

Input: the demo's real sample (8 documents); 10× is ten editions of it. Prompt tokens are
estimated from the characters actually sent (≈ 4 characters per token for English).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fake_server import FakeOpenAI  # noqa: E402

SCHEMA_STAGE = {"document_judgement": "llm_filter", "document_profile": "profile", "qa_pair": "generate", "qa_check": "check"}


def demo_documents(tmp: Path) -> list[dict]:
    """The demo's real sample (newspaper4k test pages: 6 articles, a duplicate, a front page)."""
    from webscale_rl.samples import fetch_sample

    path = fetch_sample(tmp / "demo-input", n_docs=8)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def scaled(docs: list[dict], factor: int) -> list[dict]:
    """`factor` copies of every document, each copy made distinct by a first line naming its edition
    (so the funnel — duplicate, front page, articles — repeats exactly `factor` times)."""
    out = []
    for k in range(factor):
        for d in docs:
            out.append({"id": f"{d['id']}-e{k}", "text": f"Edition {k + 1}: {d['text']}"})
    return out


def request_chars(fake, since: int) -> dict[str, int]:
    """Characters of the messages sent per stage (the fake's request log from index `since`)."""
    out: dict[str, int] = {}
    for body in fake.requests[since:]:
        name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
        stage = SCHEMA_STAGE.get(name, name)
        out[stage] = out.get(stage, 0) + sum(len(m.get("content", "")) for m in body["messages"])
    return out


def run(spark, docs: list[dict], label: str, fake, tmp: Path) -> dict:
    from webscale_rl.config import load_config
    from webscale_rl.pipeline import run_pipeline

    inputs = tmp / f"docs-{label}.jsonl"
    inputs.write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = load_config("openai", [f"llm.base_url={fake.base_url}", "llm.max_concurrency=8", "quality.enabled=false", "mlflow.enabled=false"])
    since = len(fake.requests)
    t0 = time.monotonic()
    summary = run_pipeline([str(inputs)], tmp / f"wh-{label}", cfg, spark=spark, log=lambda _: None)
    wall = time.monotonic() - t0
    kept_docs = spark.read.format("delta").load(str(tmp / f"wh-{label}" / "qa")).select("doc_id").distinct().count()
    llm = {s.stage: s.llm for s in summary.stages if s.llm}
    chars = request_chars(fake, since)
    return {"docs": len(docs), "kept_docs": kept_docs, "pairs": summary.counts["decontaminate"], "wall_s": wall, "llm": llm, "chars": chars}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per fake request")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    from webscale_rl.config import Config
    from webscale_rl.spark import build_local_session

    cfg = Config()
    cfg.spark.master, cfg.spark.shuffle_partitions = "local[2]", 2
    spark = build_local_session(cfg)
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(latency_s=args.latency) as fake:
        base = demo_documents(Path(tmp))
        run(spark, scaled(base, 1)[:4], "warmup", fake, Path(tmp))  # JIT, Delta, Python workers
        small = run(spark, scaled(base, 1), "1x", fake, Path(tmp))
        large = run(spark, scaled(base, args.factor), f"{args.factor}x", fake, Path(tmp))
    spark.stop()

    print(f"fake endpoint, {args.latency:.2f}s per request, llm.max_concurrency=8, local[2] (shared 2-core machine: wall times are noisy)")
    print(f"{'':24}{'1x':>12}{f'{args.factor}x':>12}{'ratio':>8}")
    for key in ("docs", "kept_docs", "pairs"):
        print(f"{key:24}{small[key]:>12}{large[key]:>12}{large[key] / max(small[key], 1):>8.2f}")
    for r in (small, large):
        r["calls"] = sum(u["calls"] for u in r["llm"].values())
        r["tokens"] = sum(u["prompt_tokens"] + u["completion_tokens"] for u in r["llm"].values())
    for key in ("calls", "tokens", "wall_s"):
        label = "tokens (fake: 120/call)" if key == "tokens" else key
        print(f"{label:24}{small[key]:>12.1f}{large[key]:>12.1f}{large[key] / max(small[key], 1e-9):>8.2f}")
    print("\nper kept document (1x → 10x): LLM calls; prompt tokens ≈ characters sent / 4")
    for stage in small["llm"]:
        a, b = small["llm"][stage], large["llm"][stage]
        ka, kb = max(small["kept_docs"], 1), max(large["kept_docs"], 1)
        ta, tb = small["chars"].get(stage, 0) / 4 / ka, large["chars"].get(stage, 0) / 4 / kb
        print(f"  {stage:<12} calls {a['calls'] / ka:6.2f} → {b['calls'] / kb:6.2f}   prompt tokens {ta:8.0f} → {tb:8.0f}")
    ka, kb = max(small["kept_docs"], 1), max(large["kept_docs"], 1)
    calls = f"calls {small['calls'] / ka:6.2f} → {large['calls'] / kb:6.2f}"
    print(f"  {'all':<12} {calls}   wall {small['wall_s'] / ka:6.2f}s → {large['wall_s'] / kb:6.2f}s")
    total = large["calls"] / max(small["calls"], 1)
    print(f"\nLLM calls grow {total:.2f}x for {args.factor}x input (linear = {args.factor}x)")


if __name__ == "__main__":
    main()
