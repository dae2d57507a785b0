"""Throughput of the filter and dedup stages against DataTrove, side by side in one run, and the
near-duplicate recall / precision of our MinHash dedup against brute-force Jaccard on a sample.

Corpus: the Python 3.11 documentation from the Debian package `python3.11-doc` (real HTML pages,
text by lxml, cut into ~3,000-character documents at paragraph breaks). Scaled by repetition with
perturbation: copy k > 0 of a document has 30 % of its words replaced (a different document to
dedup); then 5 % of documents get an exact copy (upper-cased) and 10 % a near copy (1 % of words
replaced), so the duplicates are known.

    pip install -e '.[bench]'
    python benchmarks/filter_dedup.py                      # 1x and 10x, DataTrove at both
    python benchmarks/filter_dedup.py --scales 1 --base-mb 2 --datatrove-scales 1
    python benchmarks/filter_dedup.py --cli                # the whole command: 1.6x (~20 MB), 16x (~200 MB)

With --cli, `webscale-rl run --input <corpus> --warehouse <fresh> --until dedup --set
filter.preset=datatrove` (JVM start, ingest, Delta commits, gates and MLflow included) and DataTrove's
four filters with default parameters + its four MinHash steps (each writing its output as JSONL) run
each as a fresh process, one after the other on the same corpus and cores; printed: wall seconds,
how many times faster ours is, and the peak memory of each process tree.

MB/s per core = input MB / (wall seconds x cores). The machine may be shared: compare the ratios
printed for one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEB = "python3.11-doc"
END_TO_END = "filter + dedup, end to end"
PIPELINE_RUN = "filter + dedup stages of `webscale-rl run`"


def log(msg: str) -> None:
    print(msg, flush=True)


# --- corpus ---------------------------------------------------------------------------------------


def base_corpus(cache: Path, base_mb: float) -> list[str]:
    # Debian's python3.11-doc pages in ~3,000-character chunks: the same corpus (and cache) the
    # filter-preset test reads, fetched by one function.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.real_corpora import python_doc

    texts = [r["text"] for r in python_doc() if len(r["text"]) >= 500]
    random.Random(0).shuffle(texts)
    keep, size = [], 0
    for t in texts:
        if size >= base_mb * 1e6:
            break
        keep.append(t)
        size += len(t.encode())
    return keep


def perturb(text: str, rate: float, vocab: list[str], rng: random.Random) -> str:
    # Replace words in place (keeps lines and punctuation around them).
    tokens = re.split(r"(\s+)", text)
    for i in range(0, len(tokens), 2):
        if tokens[i] and rng.random() < rate:
            tokens[i] = rng.choice(vocab)
    return "".join(tokens)


def scaled_corpus(base: list[str], scale: float, out_dir: Path, shards: int = 2) -> tuple[list[dict], float]:
    """`scale` copies of `base` (a fractional scale ends with part of a copy: 1.6 = the base and
    60 % of one perturbed copy)."""
    scale = int(scale) if float(scale).is_integer() else scale  # integer scales: the corpora as before
    rng = random.Random(scale)
    vocab = [w for t in base[:200] for w in t.split() if w.isalpha()][:20000]
    docs = []
    for k in range(math.ceil(scale)):
        share = min(1.0, scale - k)
        for i, t in enumerate(base[: round(len(base) * share)]):
            docs.append({"id": f"d{k:02d}-{i:06d}", "text": t if k == 0 else perturb(t, 0.3, vocab, rng), "family": f"{k}-{i}"})
    extra = []
    for d in docs:
        r = rng.random()
        if r < 0.05:
            extra.append({"id": d["id"] + "-exact", "text": d["text"].upper(), "family": d["family"]})
        elif r < 0.15:
            extra.append({"id": d["id"] + "-near", "text": perturb(d["text"], 0.01, vocab, rng), "family": d["family"]})
    docs += extra
    rng.shuffle(docs)
    out_dir.mkdir(parents=True, exist_ok=True)
    handles = [(out_dir / f"part-{s}.jsonl").open("w") for s in range(shards)]
    for i, d in enumerate(docs):
        handles[i % shards].write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")
    for h in handles:
        h.close()
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    return docs, mb


class PeakMemory:
    """Peak resident memory of Spark's Python workers (our Arrow-batch code runs there) and of the
    JVM, sampled every 0.2 s while a scale runs: flat memory means the same peaks at 1x and 10x."""

    def __init__(self) -> None:
        import threading

        import psutil

        self.me = psutil.Process()
        self.peak_python = self.peak_worker = self.peak_jvm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            python = jvm = worker = 0
            for proc in self.me.children(recursive=True):
                try:
                    name, rss = proc.name(), proc.memory_info().rss
                except psutil.Error:
                    continue
                if name.startswith("java"):
                    jvm += rss
                elif name.startswith("python"):
                    python, worker = python + rss, max(worker, rss)
            self.peak_python, self.peak_jvm = max(self.peak_python, python), max(self.peak_jvm, jvm)
            self.peak_worker = max(self.peak_worker, worker)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- ours -----------------------------------------------------------------------------------------


def run_ours(spark, input_dir: Path, work: Path) -> dict[str, float]:
    """Seconds per stage, each read from the JSONL files (as DataTrove reads them) and written out."""
    from pyspark.sql import functions as F

    from webscale_rl.config import Config
    from webscale_rl.stages import dedup
    from webscale_rl.stages import filter as filter_stage
    from webscale_rl.stages.base import StageContext

    def ctx(language: bool = True, fuzzy: bool = True) -> StageContext:
        cfg = Config()
        cfg.filter.language.enabled = language
        cfg.dedup.fuzzy.enabled = fuzzy
        return StageContext(cfg=cfg, run_id="bench", log=lambda _: None)

    def docs():
        return spark.read.schema("id string, text string").json(str(input_dir)).select(F.col("id").alias("doc_id"), "text")

    def timed(stage, context) -> float:
        t0 = time.perf_counter()  # before the call: dedup runs its checkpoints inside it
        stage(docs(), context).marked.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - t0

    times = {
        "filter": timed(filter_stage.filter_documents, ctx(language=False)),
        "filter + language ID": timed(filter_stage.filter_documents, ctx()),
        "exact dedup": timed(dedup.dedup_documents, ctx(fuzzy=False)),
        "exact + fuzzy dedup": timed(dedup.dedup_documents, ctx()),
    }
    # As the pipeline runs them (default configuration): the filter's kept documents go to dedup;
    # the survivors and every rejection are written.
    t0 = time.perf_counter()
    filtered = filter_stage.filter_documents(docs(), ctx()).marked.localCheckpoint()
    rejected = filtered.filter(F.col("_reject_reason").isNotNull()).select("doc_id", "_reject_reason", "_reject_detail")
    deduped = dedup.dedup_documents(filtered.filter(F.col("_reject_reason").isNull()).drop("_reject_reason", "_reject_detail"), ctx()).marked
    deduped.filter(F.col("_reject_reason").isNull()).write.mode("overwrite").parquet(str(work / "ours_kept"))
    decisions = deduped.filter(F.col("_reject_reason").isNotNull()).select("doc_id", "_reject_reason", "_reject_detail")
    rejected.unionByName(decisions).write.mode("overwrite").parquet(str(work / "ours_rejected"))
    times[END_TO_END] = time.perf_counter() - t0
    # The same through `webscale-rl run --until dedup`: Delta tables written twice (staged, then landed
    # idempotently), quality gates, counts and MLflow; ingest is not counted.
    from webscale_rl.pipeline import run_pipeline

    summary = run_pipeline([str(input_dir)], work / f"warehouse_{input_dir.name}", Config(), until="dedup", spark=spark, log=lambda _: None)
    elapsed = {s.stage: s.elapsed_s for s in summary.stages}
    times[PIPELINE_RUN] = elapsed["filter"] + elapsed["dedup"]
    return times


# --- DataTrove ------------------------------------------------------------------------------------


def _xxhash_accepts_str() -> None:
    """DataTrove 0.10 hashes str with xxhash<4; the project pins xxhash 4, which wants bytes."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)


def run_datatrove(input_dir: Path, work: Path, cores: int) -> dict[str, float]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.utils.hashing import HashConfig

    from webscale_rl.config import Config

    _xxhash_accepts_str()
    shutil.rmtree(work, ignore_errors=True)  # DataTrove skips work it finds completed
    f = Config().filter
    shards = len(list(input_dir.glob("*.jsonl")))
    times = {}

    def reader():
        return JsonlReader(str(input_dir), id_key="id")

    def execute(name, pipeline, tasks, depends=None):
        # fork: workers inherit the xxhash shim below.
        ex = LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=cores, logging_dir=str(work / "dt_logs" / name), depends=depends, start_method="fork"
        )
        return ex

    filters = [
        reader(),
        GopherRepetitionFilter(
            dup_line_frac=f.max_duplicate_line_ratio,
            dup_para_frac=f.max_duplicate_paragraph_ratio,
            dup_line_char_frac=0.2,
            dup_para_char_frac=f.max_duplicate_paragraph_char_ratio,
        ),
        GopherQualityFilter(
            min_doc_words=f.min_words,
            max_doc_words=f.max_words,
            min_avg_word_length=f.min_mean_word_length,
            max_avg_word_length=f.max_mean_word_length,
            max_symbol_word_ratio=f.max_symbol_word_ratio,
            max_bullet_lines_ratio=f.max_bullet_line_ratio,
            max_ellipsis_lines_ratio=f.max_ellipsis_line_ratio,
            max_non_alpha_words_ratio=f.min_alpha_word_ratio,
            min_stop_words=f.min_stop_words,
        ),
        C4QualityFilter(filter_no_terminal_punct=False, min_num_sentences=-1),
        FineWebQualityFilter(
            line_punct_thr=f.min_lines_ending_punct_ratio,
            short_line_thr=f.max_short_line_ratio,
            char_duplicates_ratio=f.max_duplicate_line_char_ratio,
            new_line_ratio=f.max_newline_word_ratio,
        ),
    ]
    t0 = time.perf_counter()
    execute("filters", filters, shards).run()
    times["filter"] = time.perf_counter() - t0

    mh = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8, n_grams=5)
    sigs, buckets, clusters = work / "dt_sigs", work / "dt_buckets", work / "dt_clusters"
    t0 = time.perf_counter()
    execute("sig", [reader(), MinhashDedupSignature(output_folder=str(sigs), config=mh)], shards).run()
    execute("buckets", [MinhashDedupBuckets(input_folder=str(sigs), output_folder=str(buckets), config=mh)], mh.num_buckets).run()
    execute("cluster", [MinhashDedupCluster(input_folder=str(buckets), output_folder=str(clusters), config=mh)], 1).run()
    execute("filter_dups", [reader(), MinhashDedupFilter(input_folder=str(clusters))], shards).run()
    times["exact + fuzzy dedup"] = time.perf_counter() - t0
    return times


# --- the whole command: `webscale-rl run --until dedup` against DataTrove's pipeline ---------------
# Both sides run as a fresh process of their own, timed from the outside (interpreter, imports, JVM
# start, reading, writing all included), one after the other on the same corpus and cores.


class TreeMemory:
    """Peak of the summed resident memory of a process and all its descendants (Spark's JVM and
    Python workers; DataTrove's forked workers), sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        import threading

        import psutil

        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed_process(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak tree memory in bytes, output) of `cmd`; a failure stops the benchmark."""
    import subprocess

    t0 = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        memory = TreeMemory(proc.pid)
        code = proc.wait()
    wall = time.perf_counter() - t0
    peak = memory.stop()
    text = log_path.read_text()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {code}; its output is in {log_path}:\n{text[-3000:]}")
    return wall, peak, text


def webscale_rl_command() -> list[str]:
    """The console script of this interpreter's environment, as a user types it."""
    script = Path(sys.executable).parent / "webscale-rl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "webscale_rl.cli"]


def stage_seconds(output: str) -> dict[str, float]:
    """Each stage's seconds from the run's own `[stage] done in ...` lines."""
    out = {}
    for stage, minutes, seconds in re.findall(r"^\[(\w+)\] done in (?:(\d+)m)?([\d.]+)s", output, re.M):
        out[stage] = int(minutes or 0) * 60 + float(seconds)
    return out


def run_datatrove_pipeline(input_dir: Path, work: Path, cores: int) -> dict[str, float]:
    """DataTrove as its users run it: the four filters with their default parameters, the kept
    documents written as JSONL; then its four MinHash steps (default MinhashConfig: 5-grams,
    14 buckets x 8 hashes) over them, the survivors written as JSONL."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from tests.support.datatrove_reference import filters

    _xxhash_accepts_str()
    shutil.rmtree(work, ignore_errors=True)  # DataTrove skips work it finds completed
    shards = len(list(input_dir.glob("*.jsonl")))
    filtered, deduped = work / "filtered", work / "deduped"
    mh = MinhashConfig()
    sigs, buckets, clusters = work / "sigs", work / "buckets", work / "clusters"

    def execute(name: str, pipeline: list, tasks: int) -> None:
        logs = str(work / "logs" / name)
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=cores, logging_dir=logs, start_method="fork").run()

    times = {}
    t0 = time.perf_counter()
    execute("filters", [JsonlReader(str(input_dir), id_key="id"), *filters(), JsonlWriter(str(filtered))], shards)
    times["filters"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    execute("signatures", [JsonlReader(str(filtered)), MinhashDedupSignature(output_folder=str(sigs), config=mh)], shards)
    execute("buckets", [MinhashDedupBuckets(input_folder=str(sigs), output_folder=str(buckets), config=mh)], mh.num_buckets)
    execute("cluster", [MinhashDedupCluster(input_folder=str(buckets), output_folder=str(clusters), config=mh)], 1)
    execute("filter", [JsonlReader(str(filtered)), MinhashDedupFilter(input_folder=str(clusters)), JsonlWriter(str(deduped))], shards)
    times["minhash dedup"] = time.perf_counter() - t0
    return times


def datatrove_job_main(argv: list[str]) -> None:
    """`--datatrove-job INPUT WORK CORES`: the DataTrove side in a process of its own."""
    input_dir, work, cores = Path(argv[0]), Path(argv[1]), int(argv[2])
    times = run_datatrove_pipeline(input_dir, work, cores)
    print("DATATROVE_TIMES " + json.dumps(times), flush=True)


def cli_benchmark(args) -> None:
    """`webscale-rl run --until dedup` (default config + the datatrove filter preset) against
    DataTrove's filters and MinHash dedup, each a fresh process, at each scale."""
    import platform

    work = Path(args.work or tempfile.mkdtemp(prefix="run_vs_datatrove_"))
    base = base_corpus(work, args.base_mb)
    log(f"base corpus: {len(base)} documents, {sum(len(t.encode()) for t in base) / 1e6:.2f} MB (Debian {DEB})")
    env = {**os.environ, "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    sets = [item for kv in args.set for item in ("--set", kv)]
    results = []
    for scale in args.scales:
        input_dir = work / f"corpus_{scale}x"
        docs, mb = scaled_corpus(base, scale, input_dir)
        log(f"\n== {scale}x: {len(docs)} documents, {mb:.1f} MB; load average {os.getloadavg()[0]:.2f} ==")
        warehouse = work / f"warehouse_{scale}x"
        shutil.rmtree(warehouse, ignore_errors=True)
        ours_cmd = [*webscale_rl_command(), "run", "--input", str(input_dir), "--warehouse", str(warehouse), "--until", "dedup", *sets]
        log("ours: " + " ".join(ours_cmd))
        ours_s, ours_mem, out = timed_process(ours_cmd, work / f"ours_{scale}x.log", env)
        stages = stage_seconds(out)
        log(f"  {ours_s:.1f} s wall, peak {ours_mem / 1e6:,.0f} MB; stages " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
        dt_cmd = [sys.executable, str(Path(__file__).resolve()), "--datatrove-job", str(input_dir), str(work / f"dt_{scale}x"), str(args.cores)]
        log("DataTrove: " + " ".join(dt_cmd))
        dt_s, dt_mem, out = timed_process(dt_cmd, work / f"datatrove_{scale}x.log", env)
        dt_steps = json.loads(re.search(r"^DATATROVE_TIMES (.*)$", out, re.M).group(1))
        log(f"  {dt_s:.1f} s wall, peak {dt_mem / 1e6:,.0f} MB; " + ", ".join(f"{k} {v:.1f} s" for k, v in dt_steps.items()))
        results.append((scale, len(docs), mb, ours_s, ours_mem, stages, dt_s, dt_mem))

    log(f"\nmachine: {platform.node()}, {os.cpu_count()} cores, --cores {args.cores}; {time.strftime('%Y-%m-%d %H:%M')}; load average now {os.getloadavg()}")
    log(f"ours: webscale-rl run --until dedup {' '.join(sets)} (default config otherwise: language ID, gates, MLflow, Delta)")
    log(
        "scale | docs | MB | ours wall s | DataTrove wall s | ours faster by | ours peak MB | DataTrove peak MB"
        " | ours stages (ingest, filter, dedup) s | ours outside stages s"
    )
    for scale, n, mb, ours_s, ours_mem, stages, dt_s, dt_mem in results:
        inside = sum(stages.values())
        log(
            f"{scale}x | {n} | {mb:.1f} | {ours_s:.1f} | {dt_s:.1f} | {dt_s / ours_s:.2f}x | {ours_mem / 1e6:,.0f} | {dt_mem / 1e6:,.0f} | "
            + ", ".join(f"{stages.get(k, 0):.1f}" for k in ("ingest", "filter", "dedup"))
            + f" | {ours_s - inside:.1f}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        log(
            f"input x{last[2] / first[2]:.1f}: ours peak memory x{last[4] / first[4]:.2f}, DataTrove's x{last[7] / first[7]:.2f}; "
            f"targets: >= 2x faster at ~20 MB ({first[6] / first[3]:.2f}x), >= 5x at ~200 MB ({last[6] / last[3]:.2f}x)"
        )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


# --- recall / precision -----------------------------------------------------------------------------


def brute_force_pairs(docs: list[dict], threshold: float) -> set[tuple[str, str]]:
    """All pairs with shingle Jaccard >= threshold: exact, via an inverted index of the same shingles."""
    import pandas as pd

    from webscale_rl.config import Config
    from webscale_rl.stages import minhash

    cfg = Config().dedup
    norm = pd.Series([re.sub(r"\s+", " ", re.sub(r"[^\w\s]|_", " ", d["text"].lower())).strip() for d in docs])
    shingles, offsets = minhash.shingle_sets(norm, cfg.fuzzy.ngram)
    ids = [d["id"] for d in docs]
    sizes = dict(zip(range(len(docs)), (offsets[1:] - offsets[:-1]).tolist()))
    import numpy as np

    doc_of = np.repeat(np.arange(len(docs)), np.diff(offsets))
    frame = pd.DataFrame({"doc": doc_of, "sh": shingles})
    pairs = frame.merge(frame, on="sh")
    pairs = pairs[pairs.doc_x < pairs.doc_y].groupby(["doc_x", "doc_y"]).size().reset_index(name="inter")
    union = pairs.doc_x.map(sizes) + pairs.doc_y.map(sizes) - pairs.inter
    hits = pairs[pairs.inter / union >= threshold]
    return {(ids[a], ids[b]) for a, b in zip(hits.doc_x, hits.doc_y)}


def family_sample(docs: list[dict], size: int) -> list[dict]:
    """Whole families (a document with its exact and near copies), so the sample holds duplicates."""
    families: dict[str, list[dict]] = {}
    for d in docs:
        families.setdefault(d["family"], []).append(d)
    names = sorted(families)
    random.Random(1).shuffle(names)
    sample: list[dict] = []
    for name in names:
        if len(sample) >= size:
            break
        sample += families[name]
    return sample


def recall_precision(spark, sample: list[dict], work: Path) -> dict[str, float]:
    from webscale_rl.config import Config
    from webscale_rl.stages import dedup
    from webscale_rl.stages.base import StageContext

    truth = brute_force_pairs(sample, Config().dedup.fuzzy.threshold)
    df = spark.createDataFrame([(d["id"], d["text"]) for d in sample], "doc_id string, text string")
    rows = dedup.dedup_documents(df, StageContext(cfg=Config(), run_id="b", log=lambda _: None)).marked.select("doc_id", "_duplicate_of").collect()
    cluster = {r["doc_id"]: r["_duplicate_of"] or r["doc_id"] for r in rows}
    members: dict[str, list[str]] = {}
    for d, c in cluster.items():
        members.setdefault(c, []).append(d)
    predicted = {tuple(sorted((a, b))) for m in members.values() for i, a in enumerate(m) for b in m[i + 1 :]}
    truth = {tuple(sorted(p)) for p in truth}
    found = len(truth & predicted)
    # A dropped document is right if it has a true (Jaccard >= threshold) partner in its group.
    partners = {}
    for a, b in truth:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    dropped = [d for d, c in cluster.items() if c != d]
    right = sum(1 for d in dropped if partners.get(d, set()) & set(members[cluster[d]]))
    return {
        "sample": len(sample),
        "true_pairs": len(truth),
        "predicted_pairs": len(predicted),
        "pair_recall": found / max(len(truth), 1),
        "pair_precision": found / max(len(predicted), 1),
        "dropped_docs": len(dropped),
        "dropped_precision": right / max(len(dropped), 1),
    }


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    if sys.argv[1:2] == ["--datatrove-job"]:
        datatrove_job_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", type=float, nargs="+", default=None, help="corpus sizes, x the base (default 1 10; with --cli 1.6 16)")
    ap.add_argument(
        "--cli", action="store_true", help="time the whole command `webscale-rl run --until dedup` against DataTrove's pipeline, each a process of its own"
    )
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="--cli: our run's overrides (default filter.preset=datatrove)")
    ap.add_argument("--datatrove-scales", type=float, nargs="*", default=None, help="scales DataTrove also runs (default: all; it is slower)")
    ap.add_argument("--base-mb", type=float, default=100.0, help="size of the 1x corpus before duplicates (default: all of it, ~11 MB)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--sample", type=int, default=1500, help="documents in the recall/precision sample")
    ap.add_argument("--work", default=None)
    ap.add_argument("--driver-memory", default="2g", help="JVM heap of the local Spark session (flat memory: 10x fits the same heap)")
    args = ap.parse_args()
    default_scales = [1.6, 16] if args.cli else [1, 10]
    args.scales = [int(s) if float(s).is_integer() else s for s in (args.scales or default_scales)]
    if args.cli:
        args.set = ["filter.preset=datatrove"] if args.set is None else args.set
        cli_benchmark(args)
        return
    if args.datatrove_scales is None:
        args.datatrove_scales = args.scales

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["WEBSCALE_RL_DRIVER_MEMORY"] = args.driver_memory
    from webscale_rl.config import Config, cache_dir
    from webscale_rl.spark import build_local_session

    cache = cache_dir() / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="filter_dedup_"))
    base = base_corpus(cache, args.base_mb)
    log(f"base corpus: {len(base)} documents, {sum(len(t.encode()) for t in base) / 1e6:.2f} MB (Debian {DEB})")

    cfg = Config()
    cfg.spark.master = f"local[{args.cores}]"
    cfg.spark.shuffle_partitions = args.cores * 2
    spark = build_local_session(cfg)
    # Start-up is not timed: the session, and Spark's Python workers with their imports (a warm-up
    # run of every stage on a few documents), as on a running cluster.
    warm = work / "warm_up"
    scaled_corpus(base[:50], 1, warm)
    run_ours(spark, warm, work)

    rows, peaks = [], []
    for scale in args.scales:
        input_dir = work / f"corpus_{scale}x"
        docs, mb = scaled_corpus(base, scale, input_dir)
        log(f"\n== {scale}x: {len(docs)} documents, {mb:.2f} MB ==")
        with PeakMemory() as memory:
            ours = run_ours(spark, input_dir, work)
        peaks.append((scale, mb, memory.peak_worker / 1e6, memory.peak_python / 1e6, memory.peak_jvm / 1e6))
        theirs = run_datatrove(input_dir, work / f"dt_{scale}", args.cores) if scale in args.datatrove_scales else {}
        if theirs:  # DataTrove's filter and dedup each run over every document
            theirs[END_TO_END] = theirs[PIPELINE_RUN] = theirs["filter"] + theirs["exact + fuzzy dedup"]
        for stage, secs in ours.items():
            rows.append((scale, stage, len(docs), mb, secs, theirs.get(stage)))
        if scale == args.scales[0]:
            quality = recall_precision(spark, family_sample(docs, args.sample), work)

    log("\nscale | stage | docs | MB | ours s | ours docs/s | ours MB/s/core | DataTrove s | DataTrove MB/s/core | speed-up")
    for scale, stage, n, mb, secs, other in rows:
        ours_rate = mb / (secs * args.cores)
        line = f"{scale}x | {stage} | {n} | {mb:.1f} | {secs:.1f} | {n / secs:.0f} | {ours_rate:.2f}"
        if other:
            line += f" | {other:.1f} | {mb / (other * args.cores):.3f} | {other / secs:.1f}x"
        else:
            line += " | - | - | -"
        log(line)
    log(f"\npeak resident memory, MB (JVM heap limit {os.environ['WEBSCALE_RL_DRIVER_MEMORY']})")
    log("scale | input MB | largest Python worker | all Python workers | JVM")
    for scale, mb, worker, python, jvm in peaks:
        log(f"{scale}x | {mb:.1f} | {worker:.0f} | {python:.0f} | {jvm:.0f}")
    log(
        f"\nnear duplicates on a {quality.pop('sample')}-document sample vs brute-force Jaccard >= {Config().dedup.fuzzy.threshold}: "
        + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in quality.items())
    )
    spark.stop()
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
