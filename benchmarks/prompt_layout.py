"""Prompt layout for the embedded server's prompt cache: the layouts of `llm.prompt_layout`
(instructions first, document first) on the calls a demo run makes, side by side in one run.

Each layout gets a fresh `llama-server` (the embedded model, as the job starts it: its slots and
host-RAM prompt cache). The calls are the pipeline's, in its order: stage after stage over the demo
sample's articles — llm_filter, profile, generate (one call per persona), check and verify (one per
pair), verify's closed-book call — with fixed personas and questions, each document's calls of a
stage one after another (as the LLM stages schedule them) and documents `--concurrency` at a time.
`max_tokens=1`: the layout changes only what the server must read, so only reading is timed.

- instructions_first: the prompt files as they are (system message = the stage's instructions, then
  the document, then what differs per call);
- document_first: the same text with the document block moved to the front of the system message,
  so that every stage's calls about one document share it.
The messages are the product's (`prompts.stage_prompt`), not a copy.

Prints prompt tokens sent, read from the cache and evaluated, and seconds, per layout and stage.

    python benchmarks/prompt_layout.py [--docs 4] [--concurrency 2] [--layouts instructions_first document_first]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webscale_rl.config import LocalLLMConfig, load_config  # noqa: E402
from webscale_rl.domains import DOMAINS  # noqa: E402
from webscale_rl.llm.engine import EndpointSpec, request_body  # noqa: E402
from webscale_rl.llm.local_server import LocalLLMServer  # noqa: E402
from webscale_rl.prompts import PROMPT_LAYOUTS, defuse_document, load_fewshot, stage_prompt  # noqa: E402
from webscale_rl.samples import fetch_sample  # noqa: E402

PERSONAS = ("a student preparing for an exam", "a journalist checking facts", "a teacher writing a quiz")
QUESTIONS = ("Which person or organisation does the first paragraph name?", "In which year did the main event happen?")


def stage_calls(text: str, max_chars: int, layout: str) -> list[tuple[str, list[dict[str, str]]]]:
    """(stage, messages) for every call the pipeline makes about one document, in stage order, with
    the product's prompts in `layout` (`prompts.stage_prompt`, what the stages send)."""
    cfg = load_config("local", [f"llm.prompt_layout={layout}"])
    doc = defuse_document(text, max_chars)
    examples = "\n".join(json.dumps(ex) for ex in load_fewshot().for_domain("Social Science", 2))
    prompt = {stage: stage_prompt(cfg, stage) for stage in ("llm_filter", "profile", "generate", "check", "verify", "verify_closed_book")}
    calls = [("llm_filter", prompt["llm_filter"].messages(document=doc))]
    calls.append(("profile", prompt["profile"].messages(document=doc, max_personas=str(cfg.profile.max_personas), domains=", ".join(DOMAINS))))
    calls += [("generate", prompt["generate"].messages(document=doc, domain="Social Science", examples=examples, persona=p)) for p in PERSONAS]
    calls += [("check", prompt["check"].messages(document=doc, question=q, answer="2019")) for q in QUESTIONS]
    calls += [("verify", prompt["verify"].messages(document=doc, question=q)) for q in QUESTIONS]
    calls += [("verify_closed_book", prompt["verify_closed_book"].messages(question=q)) for q in QUESTIONS]
    return calls


def run_layout(layout: str, documents: list[str], concurrency: int, max_chars: int) -> dict:
    server = LocalLLMServer(LocalLLMConfig(parallel=concurrency), log=lambda _: None)
    base = server.start()
    spec = EndpointSpec(base_url=base, model="local", api_key="none", max_tokens=1)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def post(stage: str, messages: list[dict[str, str]]) -> None:
        body = request_body(spec, messages, "reply", {"type": "object"})
        body.pop("response_format")
        req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=600) as r:
            usage = json.loads(r.read())["usage"]
        t = totals[stage]
        t["calls"] += 1
        t["sent"] += usage["prompt_tokens"]
        t["cached"] += (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        t["call_s"] += time.monotonic() - t0

    per_doc = [stage_calls(d, max_chars, layout) for d in documents]
    stages = list(dict.fromkeys(stage for stage, _ in per_doc[0]))
    t_start = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            for stage in stages:  # stage after stage, as the pipeline runs them
                t0 = time.monotonic()
                chains = [[m for s, m in calls if s == stage] for calls in per_doc]
                list(pool.map(lambda chain: [post(stage, m) for m in chain], chains))  # noqa: B023
                totals[stage]["wall_s"] = time.monotonic() - t0
    finally:
        server.stop()
    return {"stages": totals, "wall_s": time.monotonic() - t_start}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=4, help="articles of the demo sample (default 4, at most 6)")
    p.add_argument("--concurrency", type=int, default=2, help="server slots, and documents in flight (default 2)")
    p.add_argument("--layouts", nargs="+", choices=PROMPT_LAYOUTS, default=list(PROMPT_LAYOUTS), help="the first is the baseline of the ratios")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sample = fetch_sample(Path(tmp), n_docs=8)
        documents = [json.loads(line)["text"] for line in sample.read_text().splitlines()][: min(args.docs, 6)]
    max_chars = load_config("local").llm.max_doc_chars  # what the demo sends per call
    results = {layout: run_layout(layout, documents, args.concurrency, max_chars) for layout in args.layouts}
    print(f"\n{len(documents)} documents of the demo sample, {args.concurrency} slots, max_tokens=1 (prompt reading only)")
    for name, r in results.items():
        sent = sum(s["sent"] for s in r["stages"].values())
        cached = sum(s["cached"] for s in r["stages"].values())
        print(f"{name}: {r['wall_s']:.0f} s; prompt tokens sent {sent:.0f}, read from cache {cached:.0f} ({cached / sent:.0%}), evaluated {sent - cached:.0f}")
        for stage, s in r["stages"].items():
            print(f"  {stage:<19} {s['calls']:3.0f} calls  {s['wall_s']:6.1f} s  sent {s['sent']:6.0f}  cached {s['cached'] / s['sent']:4.0%}")
    base = results[args.layouts[0]]
    for layout in args.layouts[1:]:
        print(f"{layout} / {args.layouts[0]}, seconds: {results[layout]['wall_s'] / base['wall_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
