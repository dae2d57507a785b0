"""Exact and near-duplicate removal: known exact groups, a near-duplicate chain (A~B, B~C but not
A~C), non-duplicates; the survivor is the same across runs and partition counts."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Row

from webscale_rl.config import Config
from webscale_rl.stages import dedup, minhash
from webscale_rl.stages.base import StageContext

VOCAB = [
    f"{a}{b}"
    for a in ("river", "stone", "cloud", "field", "light", "north", "quiet", "amber")
    for b in ("ba", "ce", "di", "fo", "gu", "he", "ji", "ko", "lu", "me")
]


def article(seed: int, n_words: int = 300) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) + str(rng.randint(0, 99)) for _ in range(n_words)]


def substitute(words: list[str], positions: list[int], tag: str) -> list[str]:
    out = list(words)
    for p in positions:
        out[p] = f"changed{tag}{p}"
    return out


def jaccard(a: list[str], b: list[str], n: int = 5) -> float:
    sa = {tuple(a[i : i + n]) for i in range(len(a) - n + 1)}
    sb = {tuple(b[i : i + n]) for i in range(len(b) - n + 1)}
    return len(sa & sb) / len(sa | sb)


BASE = article(1)
CHAIN_A = BASE
CHAIN_B = substitute(BASE, [30, 100, 170, 240], "b")
CHAIN_C = substitute(CHAIN_B, [60, 130, 200, 270], "c")
PAIR = article(2)
PAIR_NEAR = substitute(PAIR, [150], "p")


def fixture_docs() -> list[tuple[str, str]]:
    text = " ".join
    return [
        ("chain-a", text(CHAIN_A) + "."),
        ("chain-b", text(CHAIN_B) + "."),
        ("chain-c", text(CHAIN_C) + "."),
        ("exact-2", text(PAIR).upper() + "!"),  # exact duplicate of exact-1 after normalisation
        ("exact-1", text(PAIR) + "."),
        ("exact-3", "  ".join(PAIR) + " ."),
        ("pair-near", text(PAIR_NEAR) + "."),
        ("other-1", text(article(3)) + "."),
        ("other-2", text(article(4)) + "."),
        ("tiny", "hello world"),
    ]


EXPECTED = {
    "chain-b": ("near_duplicate", "chain-a"),
    "chain-c": ("near_duplicate", "chain-a"),
    "exact-2": ("exact_duplicate", "exact-1"),
    "exact-3": ("exact_duplicate", "exact-1"),
    "pair-near": ("near_duplicate", "exact-1"),
}


def test_fixture_is_what_it_claims():
    assert jaccard(CHAIN_A, CHAIN_B) >= 0.8 and jaccard(CHAIN_B, CHAIN_C) >= 0.8
    assert jaccard(CHAIN_A, CHAIN_C) < 0.8  # only transitively a duplicate
    assert jaccard(BASE, article(3)) < 0.05


def run(spark, partitions: int, cfg: Config | None = None):
    docs = spark.createDataFrame([Row(doc_id=i, text=t) for i, t in fixture_docs()]).repartition(partitions)
    result = dedup.dedup_documents(docs, StageContext(cfg=cfg or Config(), run_id="r", log=lambda _: None))
    rejected = {r["doc_id"]: (r["reason"], r["duplicate_of"], r["detail"]) for r in result.rejected("dedup", "r").collect()}
    kept = sorted(r["doc_id"] for r in result.kept.collect())
    return kept, rejected


@pytest.fixture(scope="module")
def three_partitions(spark):
    return run(spark, 3)


def test_exact_and_near_duplicates_with_chain(three_partitions):
    kept, rejected = three_partitions
    assert {k: v[:2] for k, v in rejected.items()} == EXPECTED
    assert all(detail == f"duplicate_of={survivor}" for _, survivor, detail in rejected.values())
    assert kept == ["chain-a", "exact-1", "other-1", "other-2", "tiny"]


def test_survivor_same_across_partitions_and_shuffles(spark, three_partitions):
    old = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        spark.conf.set("spark.sql.shuffle.partitions", "7")
        assert run(spark, 1) == three_partitions
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", old)


def test_signature_verification_and_exact_only(spark):
    cfg = Config()
    cfg.dedup.fuzzy.verify = "signature"
    _, rejected = run(spark, 2, cfg)
    assert {k: v[:2] for k, v in rejected.items()} == EXPECTED
    cfg = Config()
    cfg.dedup.fuzzy.enabled = False
    _, rejected = run(spark, 2, cfg)
    assert {k: v[0] for k, v in rejected.items()} == {"exact-2": "exact_duplicate", "exact-3": "exact_duplicate"}


def test_connected_components_collapse_long_chains(spark):
    # A path 0-1-2-...-39 given in shuffled order: one component, labelled by its smallest id.
    ids = [f"d{i:02d}" for i in range(40)]
    pairs = [(ids[i + 1], ids[i]) for i in range(39)] + [("x2", "x1")]
    random.Random(0).shuffle(pairs)
    # Repeated and reversed edges change nothing.
    edges = spark.createDataFrame(pairs + pairs[:5] + [(b, a) for a, b in pairs[:3]], "src string, dst string")
    got = {r["doc_id"]: r["component"] for r in dedup.connected_components(edges, 20, log=lambda _: None).collect()}
    assert got == {**{i: "d00" for i in ids}, "x1": "x1", "x2": "x1"}


def test_signatures_estimate_jaccard():
    a, b = minhash.permutations(256, 7)
    texts = pd.Series([" ".join(CHAIN_A), " ".join(CHAIN_B), " ".join(article(3))])
    shingles, offsets = minhash.shingle_sets(texts, 5)
    assert list(np.diff(offsets)) == [len({tuple(w[i : i + 5]) for i in range(len(w) - 4)}) for w in (CHAIN_A, CHAIN_B, article(3))]
    sig = minhash.signatures(shingles, offsets, a, b)
    assert (sig[0] == sig[1]).mean() == pytest.approx(jaccard(CHAIN_A, CHAIN_B), abs=0.08)
    assert (sig[0] == sig[2]).mean() < 0.05
    # Batches do not change a document's signature.
    alone = minhash.signatures(*minhash.shingle_sets(texts[1:2].reset_index(drop=True), 5), a, b)
    assert (alone[0] == sig[1]).all()


def test_rows_kept_by_an_earlier_run_survive(spark):
    # Incremental runs feed the rows earlier runs kept, flagged _prior (the pipeline drops them
    # again before landing): a new copy is the duplicate even when its doc_id sorts first.
    text = " ".join
    rows = [
        Row(doc_id="z-old", text=text(CHAIN_A) + ".", _prior=True),
        Row(doc_id="a-near", text=text(CHAIN_B) + ".", _prior=False),
        Row(doc_id="a-exact", text=text(CHAIN_A).upper() + "!", _prior=False),
        Row(doc_id="b-new", text=text(article(5)) + ".", _prior=False),
    ]
    _, rejected = cluster_decisions(spark, rows)
    assert {k: v[:2] for k, v in rejected.items()} == {"a-near": ("near_duplicate", "z-old"), "a-exact": ("exact_duplicate", "z-old")}


def cluster_decisions(spark, rows: list[Row]):
    docs = spark.createDataFrame(rows)
    result = dedup.dedup_documents(docs, StageContext(cfg=Config(), run_id="r", log=lambda _: None))
    rejected = {r["doc_id"]: (r["reason"], r["duplicate_of"], r["detail"]) for r in result.rejected("dedup", "r").collect()}
    kept = {r["doc_id"] for r in result.kept.collect()}
    return kept, rejected


def assert_everyone_names_the_survivor(kept, rejected, survivor):
    assert survivor in kept
    for doc_id, (_, duplicate_of, detail) in rejected.items():
        assert duplicate_of == survivor, doc_id
        assert detail == f"duplicate_of={survivor}"


def test_exact_copy_of_a_near_duplicate_names_the_cluster_survivor(spark):
    # B is an exact copy of A, A a near copy of C; C has the smallest doc_id, so C survives the
    # whole cluster, and B must name C (not A, which is removed).
    text = " ".join
    rows = [
        Row(doc_id="mail-1-c", text=text(CHAIN_A) + "."),
        Row(doc_id="mail-2-a", text=text(CHAIN_B) + "."),
        Row(doc_id="mail-3-b", text="> " + text(CHAIN_B).upper() + "!"),
        Row(doc_id="mail-4", text=text(article(6)) + "."),
    ]
    kept, rejected = cluster_decisions(spark, rows)
    assert {k: v[:2] for k, v in rejected.items()} == {
        "mail-2-a": ("near_duplicate", "mail-1-c"),
        "mail-3-b": ("exact_duplicate", "mail-1-c"),
    }
    assert kept == {"mail-1-c", "mail-4"}
    assert_everyone_names_the_survivor(kept, rejected, "mail-1-c")


def test_exact_copy_of_a_near_duplicate_names_a_row_kept_earlier(spark):
    # The same cluster when C was kept by an earlier run (its doc_id sorts last, it still wins).
    text = " ".join
    rows = [
        Row(doc_id="z-old-c", text=text(CHAIN_A) + ".", _prior=True),
        Row(doc_id="a-near", text=text(CHAIN_B) + ".", _prior=False),
        Row(doc_id="b-copy", text=text(CHAIN_B).upper() + "!", _prior=False),
        Row(doc_id="c-other", text=text(article(6)) + ".", _prior=False),
    ]
    kept, rejected = cluster_decisions(spark, rows)
    assert {k: v[:2] for k, v in rejected.items()} == {
        "a-near": ("near_duplicate", "z-old-c"),
        "b-copy": ("exact_duplicate", "z-old-c"),
    }
    assert kept == {"z-old-c", "c-other"}
    assert_everyone_names_the_survivor(kept, rejected, "z-old-c")


# --- the Arrow pass: normalisation, text_hash, slices ---------------------------------------------

TRICKY = [
    "Hello,  World!",
    "İstanbul and ΟΔΟΣ ΟΔΟΣ. Σ ΑΣ ΌΣΟΣ’ ΑΣΣ σ",  # Java's special lower-casing of İ and final sigma
    "Tabs\tand\x0bvertical\x0ctabs\r\nand\u00a0non-breaking\u2003spaces  ",
    "\x01 control \x1c chars \x01",
    "digits 42 ٤٢ ½ and symbols © ± € — “quotes” ‘x’ «y» ¿z?",
    "ẞ straße K ſ ǅ ﬁ ǰ Ω",
    "!!! ... ???",
    "",
]


def spark_normalized_text(text, cfg):
    """What the stage did in Spark (Java regex) before the Arrow pass; kept as the reference."""
    from pyspark.sql import functions as F

    out = text
    if cfg.lowercase:
        out = F.lower(out)
    if cfg.strip_punctuation:
        out = F.regexp_replace(out, r"[\p{P}\p{S}]", " ")
    if cfg.strip_digits:
        out = F.regexp_replace(out, r"\p{N}", "")
    return F.trim(F.regexp_replace(out, r"\s+", " "))


@pytest.mark.parametrize("lowercase,strip_punctuation,strip_digits", [(True, True, False), (False, True, True), (True, False, True)])
def test_arrow_normalisation_matches_spark(spark, lowercase, strip_punctuation, strip_digits):
    import pyarrow as pa
    from pyspark.sql import functions as F

    cfg = Config().dedup
    cfg.lowercase, cfg.strip_punctuation, cfg.strip_digits = lowercase, strip_punctuation, strip_digits
    df = spark.createDataFrame([(t,) for t in TRICKY], "text string")
    want = [r[0] for r in df.select(spark_normalized_text(F.col("text"), cfg)).collect()]
    assert dedup.normalized_texts(pa.array(TRICKY), cfg).to_pylist() == want


def test_text_hash_is_sha256_of_the_normalised_text(spark):
    import hashlib

    rows = [Row(doc_id="a", text="Hello,  World!"), Row(doc_id="b", text="!!! ... ???"), Row(doc_id="c", text=""), Row(doc_id="d", text=None)]
    docs = spark.createDataFrame(rows, "doc_id string, text string")
    result = dedup.dedup_documents(docs, StageContext(cfg=Config(), run_id="r", log=lambda _: None))
    got = {r["doc_id"]: (r["text_hash"], r["_reject_reason"], r["_duplicate_of"]) for r in result.marked.collect()}
    empty = hashlib.sha256(b"").hexdigest()
    assert got == {
        "a": (hashlib.sha256(b"hello world").hexdigest(), None, None),
        # Only punctuation normalises to "", as the empty text does: one exact group, no shingles.
        "b": (empty, None, None),
        "c": (empty, "exact_duplicate", "b"),
        "d": (None, None, None),  # no text, no hash: judged against nothing
    }


def test_fingerprints_do_not_depend_on_slices():
    import pyarrow as pa

    texts = [t for _, t in fixture_docs()] + ["", None, "a b c", "!!!"]
    batch = pa.RecordBatch.from_pydict({"doc_id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.string())})
    for verify in ("jaccard", "signature"):
        cfg = Config().dedup
        cfg.fuzzy.verify = verify
        whole = pa.Table.from_batches(list(dedup.fingerprint_batches(iter([batch]), cfg)))
        sliced = list(dedup.fingerprint_batches(iter([batch]), cfg, slice_bytes=1))
        assert len(sliced) >= len(texts) - 2  # a slice per document (empty ones join the next)
        assert pa.Table.from_batches(sliced).equals(whole)
        assert whole.column("bands").null_count == 3  # "", null and "!!!" have no shingles
        empty = list(dedup.fingerprint_batches(iter([batch.slice(0, 0)]), cfg))
        assert sum(b.num_rows for b in empty) == 0 and empty[0].schema == whole.schema


def test_mersenne_reduction_is_exact():
    # (a*x + b) mod 2^64 mod (2^61-1), low 32 bits, against Python ints, at the edges of the reduction.
    p = (1 << 61) - 1
    rng = np.random.default_rng(0)
    a = rng.integers(1, 1 << 32, size=64, dtype=np.uint64)
    b = rng.integers(0, 1 << 32, size=64, dtype=np.uint64)
    # x such that a*x + b lands on p, 2p, 2^61 - 1 +- 1 ... for the first permutation.
    targets = [p - 1, p, p + 1, 2 * p - 1, 2 * p, 2 * p + 1, 1 << 61, (1 << 62) - 1]
    edge = [(t - int(b[0])) // int(a[0]) for t in targets] + [(t - int(b[0])) // int(a[0]) + 1 for t in targets]
    x = np.array([0, 1, (1 << 32) - 1] + [v & 0xFFFFFFFF for v in edge] + rng.integers(0, 1 << 32, size=2000).tolist(), dtype=np.uint64)[:, None]
    y, scratch = np.empty((len(x), 64), dtype=np.uint64), np.empty((len(x), 64), dtype=np.uint64)
    got = minhash._low32_mod_mersenne_61(x, a, b, y, scratch)
    want = [[(((int(ai) * int(xi) + int(bi)) % (1 << 64)) % p) & 0xFFFFFFFF for ai, bi in zip(a, b)] for xi in x[:, 0]]
    assert got.tolist() == want
    # Exactly on the edges: a = 1, x = 0, so a*x + b = b.
    b = np.array([p - 1, p, p + 1, 2 * p - 1, 2 * p, 2 * p + 1, 1 << 61, (1 << 64) - 1, 0, 7 << 61], dtype=np.uint64)
    one = np.ones(len(b), dtype=np.uint64)
    got = minhash._low32_mod_mersenne_61(np.zeros((1, 1), dtype=np.uint64), one, b, np.empty((1, len(b)), np.uint64), np.empty((1, len(b)), np.uint64))
    assert got[0].tolist() == [(int(v) % p) & 0xFFFFFFFF for v in b]


def test_signatures_match_plain_python():
    # The definition, in Python ints: min over shingles of ((a*x + b) mod 2^64 mod (2^61-1)) & 0xFFFFFFFF.
    a, b = minhash.permutations(16, 3)
    shingles, offsets = minhash.shingle_sets(["one two three four five six seven", "x y", ""], 5)
    sig = minhash.signatures(shingles, offsets, a, b)
    p = (1 << 61) - 1
    for d in range(3):
        xs = shingles[offsets[d] : offsets[d + 1]].tolist()
        want = [min((((int(ai) * x + int(bi)) % (1 << 64)) % p) & 0xFFFFFFFF for x in xs) if xs else 0xFFFFFFFF for ai, bi in zip(a, b)]
        assert sig[d].tolist() == want
    assert list(np.diff(offsets)) == [3, 1, 0]  # 3 five-grams; a short document is one shingle
