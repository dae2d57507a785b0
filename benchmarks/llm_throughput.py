"""LLM engine throughput and fault tolerance against the fake OpenAI-compatible server (real HTTP on
127.0.0.1, fixed latency), measured side by side in one run; optionally the embedded model's
tokens/s at 1 and N parallel slots.

    python benchmarks/llm_throughput.py [--concurrency 16] [--latency 0.2] [--requests 640] [--local-model]

Prints: achieved requests/s ÷ (concurrency / latency) (target ≥ 0.9), the server-measured peak of
requests in flight (must be ≤ concurrency), and for a run where 20 % of calls fail (429, 500, hangs,
truncated JSON): items lost (must be 0), retries, 429s and final rejections by reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
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
    args = p.parse_args()
    # Client and server share this machine's CPUs: on a loaded one the 0.2 s row is CPU-bound.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    ok = throughput(args)
    if args.also_latency:
        throughput(args, args.also_latency)
    ok = faults(args) and ok
    if args.local_model:
        local_model(args)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
