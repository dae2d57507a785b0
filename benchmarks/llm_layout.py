"""The LLM stages of the demo, old code against new, side by side in one run on one machine.

Runs the command a user types, `webscale-rl demo` (the demo's real sample, the embedded model that
the job starts and stops), once from a checkout of a baseline commit and once from this tree, each
with a fresh warehouse and the response cache off, and prints per side:

- wall seconds of the whole command and of the LLM stages (the funnel's seconds, summed);
- prompt tokens sent, the share the server read from its prompt cache (the rest it evaluated),
  generated tokens, calls, kept pairs and calls per kept pair (from the run's LLM usage summary);

then the ratios baseline / new. The baseline checkout is a `git worktree` of `--baseline-ref` in a
temporary folder; its Python package is imported from there (PYTHONPATH), the venv is shared.

    python benchmarks/llm_layout.py                              # baseline: BASELINE_REF below
    python benchmarks/llm_layout.py --baseline-ref <sha> --docs 8 --set local_llm.parallel=2

Targets (issue 20): the LLM stages >= 2x faster than the baseline; >= 75 % of prompt tokens read
from the cache. The QA-quality benchmark (benchmarks/qa_quality.py) says whether quality held.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run_output import funnel, llm_usage  # noqa: E402

# The last commit before the prompt layout for reuse (issue 20): generate's persona came before its
# examples, and an LLM stage spread one document's calls over its partitions.
BASELINE_REF = "dd28f0e"
LLM_STAGES = ("llm_filter", "profile", "generate", "check", "verify")


def run_demo(tree: Path, warehouse: Path, docs: int, overrides: list[str]) -> dict:
    """One `webscale-rl demo` from `tree`; → its wall seconds, funnel and LLM usage."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "webscale_rl.cli", "demo", "--warehouse", str(warehouse), "--docs", str(docs), "--set", "llm.cache=false"]
    for o in overrides:
        cmd += ["--set", o]
    print(f"$ (cd {tree} &&) {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()
    log = warehouse.parent / f"{warehouse.name}.log"
    log.write_text("\n".join(lines))
    if proc.returncode != 0:
        raise SystemExit(f"the demo from {tree} exited {proc.returncode}; its output: {log}")
    stages = funnel(lines)
    usage = llm_usage(lines)
    if not stages or "run" not in usage:
        raise SystemExit(f"no funnel or LLM usage summary in the output of the demo from {tree}: {log}")
    run = usage["run"]
    kept = int(stages.get("decontaminate", {}).get("kept", 0))
    docs = int(stages.get("llm_filter", {}).get("kept", 0))  # documents the LLM stages worked on
    return {
        "wall_s": wall,
        "llm_s": sum(stages[s]["seconds"] for s in LLM_STAGES if s in stages),
        "calls": run["calls"],
        "prompt_tokens": run["prompt_tokens"],
        "cached_prompt_tokens": run["cached_prompt_tokens"],
        "completion_tokens": run["completion_tokens"],
        "kept_pairs": kept,
        "kept_docs": docs,
        "by_stage": {s: {**stages.get(s, {}), **usage.get(s, {})} for s in LLM_STAGES if s in stages},
        "log": str(log),
    }


def describe(name: str, r: dict) -> list[str]:
    sent, cached = r["prompt_tokens"], r["cached_prompt_tokens"]
    per_pair = f"{r['calls'] / r['kept_pairs']:.1f}" if r["kept_pairs"] else "-"
    out = [
        f"{name}: command {r['wall_s']:.0f} s, LLM stages {r['llm_s']:.0f} s; {r['calls']} calls, "
        f"{sent} prompt tokens sent, {cached} read from cache ({cached / sent:.0%}), {sent - cached} evaluated, "
        f"{r['completion_tokens']} generated; {r['kept_pairs']} kept pairs from {r['kept_docs']} kept documents, {per_pair} calls per kept pair"
    ]
    for stage, s in r["by_stage"].items():
        p, c = s.get("prompt_tokens", 0), s.get("cached_prompt_tokens", 0)
        share = c / p if p else 0
        gen = s.get("completion_tokens", 0)
        out.append(f"  {stage:<11} {s.get('seconds', 0):6.1f} s  {s.get('calls', 0):3d} calls  prompt {p:6d} (cached {share:4.0%})  generated {gen:5d}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline-ref", default=BASELINE_REF, help=f"the commit to compare with (default {BASELINE_REF})")
    p.add_argument("--docs", type=int, default=8, help="documents in the demo sample (default 8)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override for both runs")
    p.add_argument("--new-first", action="store_true", help="run this tree before the baseline (default: baseline first)")
    p.add_argument("--keep", metavar="DIR", help="keep both warehouses and the runs' output in DIR (new or empty)")
    args = p.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="wsrl-layout-") as tmp:
        base_tree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree), args.baseline_ref], check=True)
        try:
            sides = [("baseline", base_tree), ("new", ROOT)]
            if args.new_first:
                sides.reverse()
            print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
            results = {name: run_demo(tree, Path(tmp) / f"wh-{name}", args.docs, args.overrides) for name, tree in sides}
            print(f"load average after: {os.getloadavg()[0]:.1f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
        base, new = results["baseline"], results["new"]
        print(f"\nbaseline = {args.baseline_ref}, new = this tree; demo sample of {args.docs} documents, response cache off")
        for name in ("baseline", "new"):
            print("\n".join(describe(name, results[name])))
        speedup = base["llm_s"] / new["llm_s"] if new["llm_s"] else float("nan")
        evaluated = lambda r: r["prompt_tokens"] - r["cached_prompt_tokens"]  # noqa: E731
        print(
            f"\nLLM stages: {speedup:.2f}x faster (target >= 2); command: {base['wall_s'] / new['wall_s']:.2f}x; "
            f"prompt tokens evaluated: {evaluated(base)} -> {evaluated(new)} "
            f"({new['cached_prompt_tokens'] / new['prompt_tokens']:.0%} read from cache, target >= 75 %); "
            f"generated tokens: {base['completion_tokens']} -> {new['completion_tokens']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
