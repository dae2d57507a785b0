"""LLM engine throughput and fault tolerance against the fake OpenAI-compatible server (real HTTP on
127.0.0.1, fixed latency), measured side by side in one run; a whole LLM stage as a user runs it;
optionally the embedded model's tokens/s at 1 and N parallel slots.

    python benchmarks/llm_throughput.py [--concurrency 16] [--latency 0.2] [--requests 640] [--local-model]
    python benchmarks/llm_throughput.py --stage-only [--peer /path/to/other/checkout]

Prints: achieved requests/s ÷ (concurrency / latency) (target ≥ 0.9), the server-measured peak of
requests in flight (must be ≤ concurrency), and for a run where 20 % of calls fail (429, 500, hangs,
truncated JSON): items lost (must be 0), retries, 429s and final rejections by reason.

The stage row runs `webscale-rl run --from llm_filter --until llm_filter` (cache off) on a warehouse
that `--until dedup` prepared from Debian python3.11-doc chunks the engine rows never see (a seeded
sample, `--stage-seed`), and prints the server's time-weighted mean of requests in flight between
the first request and the last reply over llm.max_concurrency (target ≥ 0.9) and where the mean
fell short (in flight per tenth of the window). `--peer DIR` runs the same stage with another
checkout's code (e.g. main's) in the same run, for a before/after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from webscale_rl.llm.engine import EndpointSpec, complete_many
from webscale_rl.prompts import load_prompt
from webscale_rl.stages.llm_filter import REPLY_SCHEMA

# The fake server is a test double (tests/support/), not part of the package: run it from the checkout.
ROOT = Path(__file__).resolve().parent.parent


def requests_for(n: int) -> list[list[dict[str, str]]]:
    prompt = load_prompt("llm_filter")
    return [prompt.messages(document=f"Document {i}: a short article about rivers, trade and birds.") for i in range(n)]


class Served:
    """The fake server in its own process (its threads must not share the client's GIL)."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def stats(self) -> dict:
        with urllib.request.urlopen(self.base_url + "/_stats") as r:
            return json.loads(r.read())

    def spans(self) -> list[list[float]]:
        with urllib.request.urlopen(self.base_url + "/_stats/spans") as r:
            return json.loads(r.read())

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.base_url + "/_stats/reset", data=b"{}", method="POST")).read()


@contextlib.contextmanager
def fake_server(latency: float, fault_rate: float = 0.0, hang: float = 5.0, seed: int = 0):
    cmd = [
        sys.executable,
        "-m",
        "tests.support.fake_server",
        "--latency",
        str(latency),
        "--fault-rate",
        str(fault_rate),
        "--hang",
        str(hang),
        "--seed",
        str(seed),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield Served(proc.stdout.readline().strip())
    finally:
        proc.kill()
        proc.wait()


def run_engine(fake: Served, n: int, concurrency: int, **spec_kw) -> tuple[float, list]:
    spec = EndpointSpec(base_url=fake.base_url, model="fake", api_key="sk-bench", concurrency=concurrency, **spec_kw)
    reqs = requests_for(n)
    t0 = time.monotonic()
    results = complete_many(spec, reqs, "document_judgement", REPLY_SCHEMA)
    return time.monotonic() - t0, results


def throughput(args, latency: float | None = None) -> bool:
    latency = latency or args.latency
    bound = args.concurrency / latency
    with fake_server(latency) as fake:
        run_engine(fake, args.concurrency * 2, args.concurrency)  # warm-up: connections, imports
        fake.reset()
        elapsed, results = run_engine(fake, args.requests, args.concurrency, timeout_s=30, max_retries=3)
        peak = fake.stats()["peak_in_flight"]
    rps = args.requests / elapsed
    ratio = rps / bound
    ok = sum(r.ok for r in results)
    print(f"[throughput] {args.requests} requests, concurrency {args.concurrency}, latency {latency:g} s")
    print(f"  achieved {rps:.1f} req/s; bound concurrency/latency = {bound:.1f} req/s; ratio = {ratio:.3f} (target >= 0.9)")
    print(f"  peak in flight (measured by the server) = {peak} (limit {args.concurrency}); replies ok {ok}/{args.requests}")
    return ratio >= 0.9 and peak <= args.concurrency and ok == args.requests


def faults(args) -> bool:
    n = args.requests // 2
    with fake_server(args.latency, fault_rate=0.2, hang=args.hang, seed=11) as fake:
        elapsed, results = run_engine(fake, n, args.concurrency, timeout_s=args.timeout, max_retries=6, backoff_base_s=0.05, backoff_max_s=2.0)
        stats = fake.stats()
        peak, sent = stats["peak_in_flight"], stats["faults"]
    lost = sum(r is None for r in results)
    reasons = Counter(r.reason for r in results if r is not None and not r.ok)
    retries = sum(r.attempts for r in results if r) - len(results)
    print(f"[faults] {n} requests, 20 % of calls fail (faults sent: {sent}); timeout {args.timeout:g} s, hang {args.hang:g} s")
    print(f"  {elapsed:.1f} s; items lost = {lost}; ok = {sum(r.ok for r in results if r)}; rejected = {dict(reasons) or 0}")
    print(f"  retries = {retries}; 429s met = {sum(r.rate_limited for r in results if r)}; peak in flight = {peak} (limit {args.concurrency})")
    return lost == 0 and peak <= args.concurrency and len(results) == n


def _cli(code: Path, args: list[str], log: Path) -> str:
    """`webscale-rl ARGS` with `code`'s package (its checkout first on PYTHONPATH, which Spark's
    Python workers inherit), as a user types it; → its output."""
    env = {**os.environ, "PYTHONPATH": str(code), "OPENAI_API_KEY": "sk-bench", "PYTHONUNBUFFERED": "1", "WEBSCALE_RL_DRIVER_MEMORY": "1g"}
    proc = subprocess.run([sys.executable, "-m", "webscale_rl.cli", *args], cwd=code, env=env, capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"webscale-rl {' '.join(args[:1])} failed ({proc.returncode}); see {log}")
    return proc.stdout


def stage_sample(n_docs: int, seed: int, path: Path) -> None:
    """A seeded sample of python3.11-doc chunks (the filter keeps about 38 % of them)."""
    sys.path.insert(0, str(ROOT))
    from tests.support.real_corpora import python_doc

    docs = python_doc()
    random.Random(seed).shuffle(docs)
    with path.open("w", encoding="utf-8") as fh:
        for r in docs[:n_docs]:
            fh.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")


def in_flight_profile(spans: list[list[float]], window: float, parts: int = 10) -> list[float]:
    """Mean requests in flight in each of `parts` equal pieces of the window."""
    width = window / parts
    out = []
    for k in range(parts):
        lo, hi = k * width, (k + 1) * width
        out.append(sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in spans) / width)
    return out


def stage_rows(args) -> bool:
    """llm_filter through the CLI against the fake server: mean in flight / llm.max_concurrency."""
    work = Path(tempfile.mkdtemp(prefix="wsrl-bench-stage-"))
    ok = True
    try:
        sample = work / "docs.jsonl"
        stage_sample(args.stage_docs, args.stage_seed, sample)
        prepared = work / "prepared"
        common = ["--config", "openai", "--set", "mlflow.enabled=false"]
        prep = ["run", "--input", str(sample), "--warehouse", str(prepared), "--until", "dedup", *common, "--set", "llm.base_url=http://127.0.0.1:9/v1"]
        _cli(ROOT, prep, work / "prep.log")
        runs = [("this checkout", ROOT)] + ([("peer " + args.peer, Path(args.peer).resolve())] if args.peer else [])
        with fake_server(args.latency) as fake:
            for label, code in runs:
                wh = work / f"wh-{len(label)}-{code.name}"
                shutil.copytree(prepared, wh)
                fake.reset()
                t0 = time.monotonic()
                settings = [f"llm.base_url={fake.base_url}", f"llm.max_concurrency={args.concurrency}", "llm.cache=false"]
                stage = ["run", "--warehouse", str(wh), "--from", "llm_filter", "--until", "llm_filter", *common, *[a for s in settings for a in ("--set", s)]]
                out = _cli(code, stage, work / f"{wh.name}.log")
                elapsed = time.monotonic() - t0
                stats, spans = fake.stats(), fake.spans()
                done = next((line.strip() for line in out.splitlines() if line.startswith("[llm_filter] done")), "?")
                mean, window, n = stats["mean_in_flight"], stats["window_s"], stats["requests"]
                ratio = mean / args.concurrency
                profile = " ".join(f"{x:.1f}" for x in in_flight_profile(spans, window))
                print(f"[stage: {label}] `webscale-rl run --from llm_filter --until llm_filter`, cache off, {n} calls, latency {args.latency:g} s")
                print(f"  {done}; command {elapsed:.1f} s; first request to last reply {window:.2f} s (ideal {n * args.latency / args.concurrency:.2f} s)")
                peak = stats["peak_in_flight"]
                print(f"  mean in flight {mean:.2f} / max_concurrency {args.concurrency} = {ratio:.3f} (target >= 0.9); peak {peak} (limit {args.concurrency})")
                print(f"  in flight per tenth of the window: {profile}")
                if code == ROOT:
                    ok = ratio >= 0.9 and peak <= args.concurrency and n >= 500
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ok


def local_model(args) -> None:
    from webscale_rl.config import LocalLLMConfig
    from webscale_rl.llm.local_server import LocalLLMServer

    prompt = load_prompt("llm_filter")
    base = "The Danube rises in the Black Forest and flows for about 2,850 kilometres to the Black Sea. "
    for slots in (1, args.slots):
        cfg = LocalLLMConfig(parallel=slots, model=args.local_model_name)
        with LocalLLMServer(cfg, log=lambda _: None) as server:
            spec = EndpointSpec(base_url=server.base_url, model="local", concurrency=slots, max_tokens=48, timeout_s=600, max_retries=0)
            reqs = [prompt.messages(document=f"({i}) " + base * 3) for i in range(args.local_requests)]
            complete_many(spec, reqs[:1], "document_judgement", REPLY_SCHEMA)  # warm-up
            t0 = time.monotonic()
            results = complete_many(spec, reqs, "document_judgement", REPLY_SCHEMA)
            elapsed = time.monotonic() - t0
        gen = sum(r.completion_tokens for r in results)
        total = gen + sum(r.prompt_tokens for r in results)
        print(
            f"[local model] {slots} slot(s): {len(reqs)} requests in {elapsed:.1f} s; "
            f"{gen / elapsed:.1f} generated tokens/s, {total / elapsed:.1f} tokens/s incl. prompt"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--requests", type=int, default=640)
    p.add_argument("--timeout", type=float, default=1.0, help="per-request timeout in the fault run")
    p.add_argument("--hang", type=float, default=1.5, help="how long a hung call hangs in the fault run")
    p.add_argument("--local-model", action="store_true", help="also measure the embedded model (slow on 2 cores)")
    p.add_argument("--local-model-name", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--local-requests", type=int, default=4)
    p.add_argument("--also-latency", type=float, default=1.0, help="a second, less CPU-bound row (0: skip)")
    p.add_argument("--stage-docs", type=int, default=1700, help="python3.11-doc chunks to ingest for the stage row (0: skip the row)")
    p.add_argument("--stage-seed", type=int, default=7, help="which seeded sample of chunks the stage row reads")
    p.add_argument("--stage-only", action="store_true", help="only the stage row")
    p.add_argument("--peer", help="another checkout (e.g. main's) whose code runs the stage row too, for a before/after")
    args = p.parse_args()
    # Client and server share this machine's CPUs: on a loaded one the 0.2 s row is CPU-bound.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    ok = True
    if not args.stage_only:
        ok = throughput(args)
        if args.also_latency:
            throughput(args, args.also_latency)
        ok = faults(args) and ok
    if args.stage_docs:
        ok = stage_rows(args) and ok
    if args.local_model:
        local_model(args)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
