"""QA-quality benchmark: how well `webscale-rl run --from check` separates good QA pairs from bad ones.

The labelled cases (`benchmarks/qa_quality/cases.jsonl`, see its README) are pairs over real
documents, each `good` or `bad` with the failure that makes it bad. The benchmark writes them as the
`qa_candidates` table of a fresh warehouse (the `documents` table beside it, which a run needs to
account for every document), runs the command a user types:

    python -m webscale_rl.cli run --from check --warehouse W --config C [--set ...]

(every stage from check to the end, whatever they are), then reads `qa` (kept pairs) and
`rejections` back and scores them against the labels:

    precision = usable kept / kept        recall = good kept / good
    targets: precision >= 0.90 with recall >= 0.50

A kept pair is usable when it is labelled good, or when it is a `type_mismatch` case the check
stage retyped (its answer-type rule lands the type the value clearly is, e.g. a date typed numeric
lands as short_text): its only fault was repaired. Such a case is counted as `repaired`, not as a
bad pair kept.

plus, per failure kind, how many were rejected and by which reasons; the good cases wrongly
rejected, by reason; and the LLM calls and tokens per kept pair, from the run's own LLM usage
summary (what `webscale-rl run` prints, computed from each LLM stage's per-row accounting; MLflow
logs the same numbers as `run.llm.*`).

    python benchmarks/qa_quality.py                                  # embedded local model (slow)
    OPENAI_API_KEY=... python benchmarks/qa_quality.py --config openai
    python benchmarks/qa_quality.py --config openai --set llm.base_url=http://127.0.0.1:8000/v1 --limit 8 --out r.json

The documents are not committed: they are fetched by `tests.support.real_corpora` (Python 3.11
docs from Debian's python3.11-doc, newspaper4k 0.9.6's saved pages), cached under the user cache,
and checked against each case's sha256. Spark runs in short-lived child processes (writing the
tables, reading the results), never beside the run's own JVM.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run_output import llm_usage  # noqa: E402

CASES = ROOT / "benchmarks" / "qa_quality" / "cases.jsonl"
TARGET_PRECISION = 0.90
TARGET_RECALL = 0.50
FAILURES = ("wrong_answer", "not_in_document", "leaks_answer", "ambiguous", "refers_to_source", "type_mismatch", "duplicate_fact")
CORPORA = ("python_doc", "newspaper")
CASE_KEYS = {"case_id", "doc", "question", "answer", "answer_type", "label", "failure", "duplicate_of", "origin", "note"}
# Fixed values for what generate would have made: a domain of the paper's ten and a persona.
DOMAIN = {"python_doc": "Coding", "newspaper": "Social Science"}
PERSONA = "a careful reader building a quiz"
PROMPT_VERSION = "benchmark"
SETUP_RUN_ID = "qa-quality-benchmark"
USAGE_SOURCE = "the run's LLM usage summary printed by `webscale-rl run` (per-row accounting of each LLM stage; MLflow logs it as run.llm.*)"


class BenchmarkError(Exception):
    """A problem with the cases, the documents or the run, in one line."""


def log(msg: str) -> None:
    print(msg, flush=True)


# --- cases ----------------------------------------------------------------------------------------


def validate_case(case: object, where: str) -> dict:
    """The case if it is well formed, else BenchmarkError naming `where` (file, line, case id)."""
    from webscale_rl.prompts import ANSWER_TYPES

    if not isinstance(case, dict):
        raise BenchmarkError(f"{where}: not a JSON object")
    where = f"{where} (case {case.get('case_id', '?')})"
    missing, extra = CASE_KEYS - set(case), set(case) - CASE_KEYS
    if missing or extra:
        raise BenchmarkError(f"{where}: " + "; ".join(filter(None, [missing and f"missing {sorted(missing)}", extra and f"unknown {sorted(extra)}"])))
    if not isinstance(case["case_id"], str) or not re.fullmatch(r"c\d{3,}", case["case_id"]):
        raise BenchmarkError(f"{where}: case_id must look like c001")
    doc = case["doc"]
    if not isinstance(doc, dict) or set(doc) != {"corpus", "id", "sha256"}:
        raise BenchmarkError(f"{where}: doc must be an object with corpus, id, sha256")
    if doc["corpus"] not in CORPORA:
        raise BenchmarkError(f"{where}: doc.corpus must be one of {CORPORA}, got {doc['corpus']!r}")
    if not isinstance(doc["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", doc["sha256"]):
        raise BenchmarkError(f"{where}: doc.sha256 must be 64 lower-case hex digits")
    for key in ("question", "answer", "note"):
        if not isinstance(case[key], str) or not case[key].strip():
            raise BenchmarkError(f"{where}: {key} must be a non-empty string")
    if case["answer_type"] not in ANSWER_TYPES:
        raise BenchmarkError(f"{where}: answer_type must be one of {ANSWER_TYPES}, got {case['answer_type']!r}")
    if case["label"] == "good":
        if case["failure"] is not None or case["duplicate_of"] is not None:
            raise BenchmarkError(f"{where}: a good case has failure and duplicate_of null")
    elif case["label"] == "bad":
        if case["failure"] not in FAILURES:
            raise BenchmarkError(f"{where}: a bad case needs failure, one of {FAILURES}; got {case['failure']!r}")
        if (case["failure"] == "duplicate_fact") != (case["duplicate_of"] is not None):
            raise BenchmarkError(f"{where}: duplicate_of is set exactly for failure duplicate_fact")
    else:
        raise BenchmarkError(f"{where}: label must be good or bad, got {case['label']!r}")
    if case["origin"] != "hand":
        raise BenchmarkError(f"{where}: origin must be 'hand'")
    return case


def load_cases(path: Path) -> list[dict]:
    """Every case of the file, validated line by line, ids unique, duplicate_of naming a good case
    of the same document."""
    cases: list[dict] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"{path.name} line {n}: not JSON ({exc})") from None
        cases.append(validate_case(raw, f"{path.name} line {n}"))
    by_id: dict[str, dict] = {}
    for c in cases:
        if c["case_id"] in by_id:
            raise BenchmarkError(f"{path.name}: case_id {c['case_id']} is used twice")
        by_id[c["case_id"]] = c
    for c in cases:
        target = by_id.get(c["duplicate_of"]) if c["duplicate_of"] else None
        if c["duplicate_of"] and (target is None or target["label"] != "good" or target["doc"] != c["doc"]):
            raise BenchmarkError(f"{path.name} (case {c['case_id']}): duplicate_of {c['duplicate_of']} must be a good case of the same document")
    if not cases:
        raise BenchmarkError(f"{path.name}: no cases")
    return cases


def select(cases: list[dict], limit: int | None) -> list[dict]:
    """The first `limit` cases in file order, plus the good case each selected duplicate repeats
    (so a duplicate is always judged beside the pair it repeats)."""
    if limit is None or limit >= len(cases):
        return cases
    chosen = {c["case_id"] for c in cases[:limit]}
    chosen |= {c["duplicate_of"] for c in cases[:limit] if c["duplicate_of"]}
    return [c for c in cases if c["case_id"] in chosen]


# --- documents ------------------------------------------------------------------------------------


def corpus_records(corpus: str) -> list[dict[str, str]]:
    from tests.support import real_corpora

    return real_corpora.python_doc() if corpus == "python_doc" else real_corpora.newspaper_pages()


def resolve_documents(cases: list[dict], records=corpus_records) -> dict[str, str]:
    """doc id → text for every case, fetched by id and checked against the case's sha256 (an id
    may name several records: page names repeat across the Python docs' folders)."""
    texts: dict[str, str] = {}
    loaded: dict[str, dict[str, list[str]]] = {}
    for c in cases:
        corpus, doc_id, sha = c["doc"]["corpus"], c["doc"]["id"], c["doc"]["sha256"]
        if corpus not in loaded:
            index: dict[str, list[str]] = defaultdict(list)
            for r in records(corpus):
                index[r["id"]].append(r["text"])
            loaded[corpus] = index
        candidates = loaded[corpus].get(doc_id)
        if not candidates:
            raise BenchmarkError(f"case {c['case_id']}: document {doc_id!r} is not in the {corpus} corpus")
        match = [t for t in candidates if hashlib.sha256(t.encode("utf-8")).hexdigest() == sha]
        if not match:
            raise BenchmarkError(f"case {c['case_id']}: document {doc_id!r} of the {corpus} corpus does not have sha256 {sha[:12]}… (the corpus changed?)")
        texts[doc_id] = match[0]
    return texts


# --- Spark, in child processes --------------------------------------------------------------------


def in_child(fn, *args):
    """fn(*args) in a fresh spawned process: its Spark JVM ends with it."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _session(config: str | None, overrides: list[str], warehouse: str):
    from webscale_rl.config import load_config
    from webscale_rl.spark import get_spark
    from webscale_rl.warehouse import Warehouse

    cfg = load_config(config, overrides)
    spark = get_spark(cfg, storage_uris=[warehouse])
    return spark, Warehouse.open(spark, warehouse, cfg.warehouse.catalog, cfg.warehouse.schema)


def write_tables(config: str | None, overrides: list[str], warehouse: str, cases: list[dict], texts: dict[str, str]) -> None:
    """The warehouse a run `--from check` needs: `qa_candidates` (the cases, as generate writes
    them) and `documents` (the ingest table: the run proves every document it ever ingested ends
    in `qa` or `rejections`)."""
    from pyspark.sql import types as T

    from webscale_rl.stages import generate, ingest

    spark, wh = _session(config, overrides, warehouse)
    try:
        names = [f.name for f in generate.OUT_FIELDS]
        rows = [
            {
                "qa_id": c["case_id"],
                "doc_id": c["doc"]["id"],
                "pretrain_text": texts[c["doc"]["id"]],
                "domain": DOMAIN[c["doc"]["corpus"]],
                "persona": PERSONA,
                "question": c["question"],
                "answer": c["answer"],
                "answer_type": c["answer_type"],
                "prompt_version": PROMPT_VERSION,
                "run_id": SETUP_RUN_ID,
            }
            for c in cases
        ]
        schema = T.StructType([*generate.OUT_FIELDS, T.StructField("run_id", T.StringType())])
        candidates = spark.createDataFrame([tuple(r[n] for n in [*names, "run_id"]) for r in rows], schema)
        corpus_of = {c["doc"]["id"]: c["doc"]["corpus"] for c in cases}
        doc_schema = T.StructType(
            [T.StructField(n, T.LongType() if n == "n_chars" else T.StringType()) for n in ingest.WRITES] + [T.StructField("run_id", T.StringType())]
        )
        doc_values = {
            d: {"doc_id": d, "url": None, "text": t, "source": corpus_of[d], "source_format": "benchmark", "n_chars": len(t), "run_id": SETUP_RUN_ID}
            for d, t in texts.items()
        }
        documents = spark.createDataFrame([tuple(v[f.name] for f in doc_schema) for v in doc_values.values()], doc_schema)
        wh.append_once(documents, ingest.STAGE.table, "webscale-rl/qa-quality-benchmark/documents")
        wh.append_once(candidates, generate.STAGE.table, "webscale-rl/qa-quality-benchmark/qa_candidates")
    finally:
        spark.stop()


def read_results(config: str | None, overrides: list[str], warehouse: str) -> dict:
    """{"kept": {qa_id: answer_type}, "rejected": {qa_id: [stage, reason, detail]}} of the run."""
    from webscale_rl.warehouse import REJECTIONS

    spark, wh = _session(config, overrides, warehouse)
    try:
        kept = {r["qa_id"]: r["answer_type"] for r in wh.read("qa").select("qa_id", "answer_type").collect()} if wh.exists("qa") else {}
        rejected = {}
        if wh.exists(REJECTIONS):
            for r in wh.read(REJECTIONS).select("qa_id", "stage", "reason", "detail").collect():
                if r["qa_id"] is not None:
                    rejected[r["qa_id"]] = [r["stage"], r["reason"], r["detail"]]
        return {"kept": kept, "rejected": rejected, "has_qa": wh.exists("qa")}
    finally:
        spark.stop()


# --- the run ----------------------------------------------------------------------------------------


def run_command(warehouse: str, config: str | None, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "webscale_rl.cli", "run", "--from", "check", "--warehouse", warehouse]
    if config:
        cmd += ["--config", config]
    for o in overrides:
        cmd += ["--set", o]
    return cmd


def run_pipeline_command(cmd: list[str]) -> tuple[int, list[str]]:
    """The command as a child process, its output streamed here line by line and kept."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        print("  | " + line.rstrip("\n"), flush=True)
        lines.append(line.rstrip("\n"))
    return proc.wait(), lines


# --- the report -------------------------------------------------------------------------------------


def score(cases: list[dict], kept: dict[str, str], rejected: dict[str, list], usage: dict[str, dict[str, int]]) -> dict:
    """The report: counts, precision and recall, per failure kind, good cases rejected, LLM cost
    per kept pair and the targets."""
    good = [c for c in cases if c["label"] == "good"]
    kept_cases = [c for c in cases if c["case_id"] in kept]
    rejected_cases = [c for c in cases if c["case_id"] in rejected and c["case_id"] not in kept]
    unaccounted = [c["case_id"] for c in cases if c["case_id"] not in kept and c["case_id"] not in rejected]
    good_kept = sum(1 for c in kept_cases if c["label"] == "good")
    repaired = [c["case_id"] for c in kept_cases if c["failure"] == "type_mismatch" and kept[c["case_id"]] != c["answer_type"]]
    precision = (good_kept + len(repaired)) / len(kept_cases) if kept_cases else None
    recall = good_kept / len(good) if good else None
    per_failure = {}
    for kind in FAILURES:
        of_kind = [c for c in cases if c["failure"] == kind]
        caught = [c for c in of_kind if c["case_id"] in rejected and c["case_id"] not in kept]
        per_failure[kind] = {
            "cases": len(of_kind),
            "rejected": len(caught),
            "kept": sum(1 for c in of_kind if c["case_id"] in kept),
            "reasons": dict(Counter(rejected[c["case_id"]][1] for c in caught).most_common()),
            "kept_ids": [c["case_id"] for c in of_kind if c["case_id"] in kept and c["case_id"] not in repaired],
            "repaired_ids": [c["case_id"] for c in of_kind if c["case_id"] in repaired],
        }
    wrongly = defaultdict(list)
    for c in rejected_cases:
        if c["label"] == "good":
            wrongly[rejected[c["case_id"]][1]].append(c["case_id"])
    run_usage = usage.get("run", {})
    per_pair = None
    if run_usage and kept_cases:
        per_pair = {
            "calls": round(run_usage["calls"] / len(kept_cases), 3),
            "prompt_tokens": round(run_usage["prompt_tokens"] / len(kept_cases), 1),
            "completion_tokens": round(run_usage["completion_tokens"] / len(kept_cases), 1),
            "tokens": round((run_usage["prompt_tokens"] + run_usage["completion_tokens"]) / len(kept_cases), 1),
        }
    met = precision is not None and recall is not None and precision >= TARGET_PRECISION and recall >= TARGET_RECALL
    return {
        "cases": len(cases),
        "good": len(good),
        "bad": len(cases) - len(good),
        "kept": len(kept_cases),
        "rejected": len(rejected_cases),
        "unaccounted": unaccounted,
        "good_kept": good_kept,
        "repaired": len(repaired),
        "bad_kept": len(kept_cases) - good_kept - len(repaired),
        "precision": round(precision, 4) if precision is not None else None,
        "recall": round(recall, 4) if recall is not None else None,
        "per_failure": per_failure,
        "good_rejected_by_reason": {k: v for k, v in sorted(wrongly.items(), key=lambda kv: -len(kv[1]))},
        "llm_usage": {"source": USAGE_SOURCE, "by_stage": usage, "per_kept_pair": per_pair},
        "by_case": [
            {
                "case_id": c["case_id"],
                "label": c["label"],
                "failure": c["failure"],
                "outcome": "kept" if c["case_id"] in kept else "rejected" if c["case_id"] in rejected else "unaccounted",
                "landed_type": kept.get(c["case_id"]),
                "stage": rejected[c["case_id"]][0] if c["case_id"] in rejected and c["case_id"] not in kept else None,
                "reason": rejected[c["case_id"]][1] if c["case_id"] in rejected and c["case_id"] not in kept else None,
                "detail": rejected[c["case_id"]][2] if c["case_id"] in rejected and c["case_id"] not in kept else None,
            }
            for c in cases
        ],
        "targets": {"precision": TARGET_PRECISION, "recall": TARGET_RECALL, "met": met},
    }


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def report_lines(r: dict) -> list[str]:
    lines = [
        "",
        "=== QA-quality benchmark ===",
        f"cases {r['cases']} (good {r['good']}, bad {r['bad']}): kept {r['kept']}, rejected {r['rejected']}"
        + (f", unaccounted {len(r['unaccounted'])} {r['unaccounted'][:10]}" if r["unaccounted"] else ""),
        f"precision {fmt(r['precision'])} (usable kept {r['good_kept'] + r['repaired']} / kept {r['kept']}: good {r['good_kept']}, "
        f"type_mismatch retyped {r['repaired']}, bad {r['bad_kept']})",
        f"recall    {fmt(r['recall'])} (good kept {r['good_kept']} / good {r['good']})",
        "",
        f"{'failure kind':<18}{'cases':>6}{'rejected':>10}  rejected by",
    ]
    for kind, v in r["per_failure"].items():
        reasons = ", ".join(f"{k}={n}" for k, n in v["reasons"].items()) or "-"
        kept = f"; kept: {', '.join(v['kept_ids'])}" if v["kept_ids"] else ""
        kept += f"; kept retyped: {', '.join(v['repaired_ids'])}" if v["repaired_ids"] else ""
        lines.append(f"{kind:<18}{v['cases']:>6}{v['rejected']:>10}  {reasons}{kept}")
    lines.append("")
    if r["good_rejected_by_reason"]:
        lines.append("good cases rejected, by reason:")
        lines += [f"  {reason}: {len(ids)} ({', '.join(ids)})" for reason, ids in r["good_rejected_by_reason"].items()]
    else:
        lines.append("good cases rejected: none")
    u = r["llm_usage"]
    run = u["by_stage"].get("run")
    lines.append("")
    if run:
        per = u["per_kept_pair"]
        lines.append(f"LLM: {run['calls']} calls, {run['prompt_tokens']}+{run['completion_tokens']} tokens (cache hits {run['cache_hits']})")
        lines.append(
            f"  per kept pair: {per['calls']} calls, {per['tokens']} tokens ({per['prompt_tokens']} in + {per['completion_tokens']} out)"
            if per
            else "  per kept pair: n/a (nothing kept)"
        )
    else:
        lines.append("LLM: no usage reported (no call made, or the run printed no summary)")
    lines.append(f"  source: {u['source']}")
    t = r["targets"]
    lines.append("")
    lines.append(f"targets: precision >= {t['precision']:.2f} with recall >= {t['recall']:.2f}: {'MET' if t['met'] else 'NOT MET'}")
    return lines


# --- main -------------------------------------------------------------------------------------------


def document_chars_note(config: str | None, overrides: list[str], longest: int) -> tuple[list[str], str | None]:
    """Extra --set so the checker sees each whole document (the cases are about all of it): raise
    llm.max_doc_chars to the longest document unless the user set it. → (overrides, note)."""
    from webscale_rl.config import load_config
    from webscale_rl.limits import with_call_limits
    from webscale_rl.stages.order import LLM_STAGES

    if any(o.split("=", 1)[0].strip() == "llm.max_doc_chars" for o in overrides):
        extra: list[str] = []
    else:
        cfg = load_config(config, overrides)
        extra = [f"llm.max_doc_chars={longest}"] if cfg.llm.max_doc_chars < longest else []
    fitted = with_call_limits(load_config(config, [*extra, *overrides]), LLM_STAGES).llm.max_doc_chars
    note = None if fitted >= longest else f"warning: the run sends at most {fitted} document characters per call; the longest document has {longest}"
    return extra, note


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="local", help="config name or file for the run (default: local, the embedded model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override for the run (repeatable)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N cases (plus the good cases their duplicates repeat)")
    p.add_argument("--out", metavar="FILE", help="write the report as JSON")
    p.add_argument("--keep-warehouse", metavar="DIR", help="build the warehouse in DIR (new or empty) and keep it")
    p.add_argument("--cases", default=str(CASES), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        return run(args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    t0 = time.monotonic()
    if args.limit is not None and args.limit < 1:
        raise BenchmarkError("--limit must be >= 1")
    cases = select(load_cases(Path(args.cases)), args.limit)
    texts = resolve_documents(cases)
    log(f"{len(cases)} case(s) over {len(texts)} document(s) (longest {max(map(len, texts.values()))} characters)")
    extra, note = document_chars_note(args.config, args.overrides, max(map(len, texts.values())))
    overrides = [*extra, *args.overrides]
    if note:
        log(note)
    if args.keep_warehouse:
        warehouse = Path(args.keep_warehouse).resolve()
        if warehouse.exists() and any(warehouse.iterdir()):
            raise BenchmarkError(f"--keep-warehouse {warehouse} is not empty: the benchmark needs a fresh warehouse")
        warehouse.mkdir(parents=True, exist_ok=True)
        scratch = None
    else:
        scratch = tempfile.TemporaryDirectory(prefix="qa-quality-")
        warehouse = Path(scratch.name) / "warehouse"
    try:
        log(f"writing qa_candidates and documents to {warehouse}")
        in_child(write_tables, args.config, overrides, str(warehouse), cases, texts)
        cmd = run_command(str(warehouse), args.config, overrides)
        log("running: " + " ".join(cmd[1:]))
        code, lines = run_pipeline_command(cmd)
        results = in_child(read_results, args.config, overrides, str(warehouse))
        if code != 0:
            log(f"warning: the run exited with code {code}")
            if not results["has_qa"]:
                raise BenchmarkError(f"the run exited with code {code} and left no 'qa' table (its output is above)")
        report = score(cases, results["kept"], results["rejected"], llm_usage(lines))
        elapsed = round(time.monotonic() - t0, 1)
        report.update({"command": " ".join(["python", *cmd[1:]]), "exit_code": code, "config": args.config, "overrides": overrides, "elapsed_s": elapsed})
        for line in report_lines(report):
            log(line)
        if args.keep_warehouse:
            log(f"warehouse kept: {warehouse}")
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            log(f"report written to {args.out}")
        return 0 if code == 0 else 1
    finally:
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    sys.exit(main())
