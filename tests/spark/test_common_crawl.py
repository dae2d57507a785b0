"""Common Crawl inputs: WET files become documents, WARC and WET are streamed record by record
(one task per file, bounded memory whatever the file size), and every record that is not a
document lands in `rejections` with its reason and byte offset."""

from __future__ import annotations

import re
import threading
import time

import psutil
from pyspark.sql import functions as F

from tests.support.common_crawl import write_large_warc, write_wet
from webscale_rl.config import load_config
from webscale_rl.readers import READ_ERROR, format_of, read_documents
from webscale_rl.stages import ingest
from webscale_rl.stages.base import DETAIL, REASON, StageContext, batch_totals

PAGES = [
    ("https://example.org/rivers", "The Danube flows through ten countries.\nIt reaches the Black Sea."),
    ("https://example.org/honey", "Honey never spoils: its low water content stops bacteria.\n\n  Indented line kept as is."),
    ("https://example.org/café", "Un café crème à Genève coûte cinq francs."),
    ("https://example.org/cut", "This record loses its end when the file is cut."),
]


def test_wet_conversion_records_become_documents_and_a_cut_tail_a_rejection(spark, tmp_path):
    path = tmp_path / "CC-MAIN-test.warc.wet.gz"
    offsets = write_wet(path, PAGES, cut_last_bytes=20)
    rows = read_documents(spark, [str(tmp_path)]).orderBy(F.col("id").asc_nulls_first(), "url").collect()
    source = str(path)
    # (how many bytes of the cut record are lost depends on where its deflate stream was cut)
    lost = re.fullmatch(rf"warc_truncated: record at byte offset {offsets[4]} ends (\d+) byte\(s\) early \(https://example.org/cut\)", rows[-1][READ_ERROR])
    assert lost and 0 < int(lost.group(1)) <= len(PAGES[3][1])
    assert [tuple(r) for r in rows] == [
        (None, url, text, source, "wet", None) for url, text in sorted(PAGES[:3])
    ] + [
        (f"{source}@{offsets[0]}", None, None, source, "wet", f"warc_skipped: record at byte offset {offsets[0]} is not a document: warcinfo record"),
        (f"{source}@{offsets[4]}", "https://example.org/cut", None, source, "wet", lost.group(0)),
    ]  # fmt: skip

    # ingest: the documents are kept with their text as is, the others rejected with their offset
    result = ingest.ingest_documents(read_documents(spark, [str(path)]), StageContext(cfg=load_config(), run_id="t", log=lambda _: None))
    # (what the run's report counts per reason)
    assert batch_totals(result.marked)[0] == {None: 3, "warc_skipped": 1, "warc_truncated": 1}
    rejected = sorted((r.doc_id, r[REASON], r[DETAIL]) for r in result.marked.where(F.col(REASON).isNotNull()).collect())
    assert [(d, reason) for d, reason, _ in rejected] == [(f"{source}@{offsets[0]}", "warc_skipped"), (f"{source}@{offsets[4]}", "warc_truncated")]
    assert rejected[1][2].startswith(f"record at byte offset {offsets[4]} ")
    kept = {r.url: r.text for r in result.kept.collect()}
    assert kept == dict(PAGES[:3])


def _python_workers() -> list[psutil.Process]:
    """The Python worker processes of the test's own Spark session (children of its JVM)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "pyspark" in " ".join(child.cmdline()) and "java" not in child.name():
                found.append(child)
        except psutil.Error:
            pass
    return found


class PeakRss:
    """Samples the largest resident-set growth of any Python worker while the block runs: a worker
    started inside the block counts whole; one reused from earlier tests of the session (Spark
    reuses its Python workers) counts from what it held when the block began."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._before: dict[int, int] = {}
        self.seen = False  # a Python worker was sampled at all

    def _sample(self):
        while not self._stop.is_set():
            for worker in _python_workers():
                try:
                    self.peak = max(self.peak, worker.memory_info().rss - self._before.get(worker.pid, 0))
                    self.seen = True
                except psutil.Error:
                    pass
            time.sleep(0.05)

    def __enter__(self):
        for worker in _python_workers():
            try:
                self._before[worker.pid] = worker.memory_info().rss
            except psutil.Error:
                pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# The bound: a Python worker holds one record body (20 MB at most) and one output batch, plus its
# imports (pandas, pyarrow, trafilatura: ~150 MB). Reading the file whole would need > 1 GB.
WORKER_RSS_BOUND = 400 * 1024 * 1024


def test_one_gigabyte_warc_is_streamed_in_bounded_memory(spark, tmp_path):
    big = write_large_warc(tmp_path / "CC-MAIN-big.warc.gz", 1_000_000_000)
    assert big.size >= 1_000_000_000
    started = time.monotonic()
    with PeakRss() as rss:
        rows = (
            read_documents(spark, [str(big.path)])
            .groupBy(F.split(F.coalesce(READ_ERROR, F.lit("document")), ":")[0].alias("kind"))
            .agg(F.count("*").alias("n"), F.sort_array(F.collect_list(F.coalesce("url", F.lit("")))).alias("urls"), F.max(READ_ERROR).alias("detail"))
            .collect()
        )
    elapsed = time.monotonic() - started
    by_kind = {r.kind: r for r in rows}
    assert sorted(by_kind) == ["document", "too_large", "warc_skipped"]
    assert by_kind["document"].urls == sorted(big.pages)  # the pages after a GB of images too
    assert by_kind["warc_skipped"].n == big.images + 1  # the images and the warcinfo record
    assert by_kind["too_large"].detail == (
        f"too_large: record at byte offset {big.too_large_offset} holds {big.too_large_length} bytes, "
        f"over the reader's cap of 20000000 bytes (https://example.org/huge)"
    )
    assert rss.seen and rss.peak < WORKER_RSS_BOUND, f"peak Python worker RSS growth {rss.peak / 2**20:.0f} MB"
    print(f"1 GB WARC.gz: {elapsed:.1f} s, peak Python worker RSS {rss.peak / 2**20:.0f} MB")


def test_wet_file_names():
    assert [format_of(f"s3a://b/crawl/x{suffix}") for suffix in (".warc.wet.gz", ".WET.GZ", ".warc.wet", ".wet", ".warc.gz")] == ["wet"] * 4 + ["warc"]
