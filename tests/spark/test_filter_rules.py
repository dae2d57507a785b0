"""Each heuristic rule on a hand-made document that fails it (and passes every rule before it),
asserting the exact reason; the n-gram measures against plain-Python references."""

from __future__ import annotations

import random
import re
from collections import Counter

import pandas as pd
import pytest
from pyspark.sql import Row

from webscale_rl.config import Config
from webscale_rl.stages import filter as filter_stage
from webscale_rl.stages import quality_rules
from webscale_rl.stages.base import StageContext

SENTENCES = [
    "The Danube is the second-longest river in Europe.",
    "It flows through ten countries, including Germany, Austria, Hungary and Romania.",
    "The river has been an important trade route for centuries.",
    "Vienna, Budapest and Belgrade stand on its banks.",
    "Its delta in Romania and Ukraine is a protected wetland with hundreds of bird species.",
    "Ships carry grain, ore and fuel along it.",
    "Fishing and tourism support many towns along the water.",
    "Engineers built locks and dams to tame its floods in the last century.",
]
GOOD = " ".join(SENTENCES)
STOP = {"the", "be", "to", "of", "and", "that", "have", "with"}
FRENCH = (
    "Le Danube est le deuxième plus long fleuve d'Europe après la Volga. Il prend sa source dans la "
    "Forêt-Noire en Allemagne et traverse dix pays avant de se jeter dans la mer Noire. Quatre capitales "
    "se trouvent sur ses rives : Vienne, Bratislava, Budapest et Belgrade. Son delta, en Roumanie et en "
    "Ukraine, est une zone humide protégée qui abrite plus de trois cents espèces d'oiseaux migrateurs."
)
LEXICON = (
    "amber basalt cedar delta ember fjord granite harbor island jungle kelp lagoon meadow nectar orchard "
    "prairie quartz reef savanna tundra upland valley willow yarrow zephyr brook canyon dune estuary forest"
).split()

CASES = {
    "good": (GOOD, None),
    "mean_word_length_low": ("it is a ox. " * 30, "mean_word_length_low"),
    "mean_word_length_high": ("internationalization characteristically the " * 30, "mean_word_length_high"),
    "bullets": ("\n".join(f"• The river item number {i} of the list." for i in range(20)), "bullet_lines_high"),
    "ellipsis": ("\n".join(f"The {w} river keeps flowing past the town of {w} and then..." for w in LEXICON[:20]), "ellipsis_lines_high"),
    "stop_words": (" ".join(w for w in GOOD.split() if w.lower().strip(",.") not in STOP), "too_few_stop_words"),
    "lorem": (GOOD + " Lorem ipsum dolor sit amet.", "lorem_ipsum"),
    "curly": (GOOD + " The template writes {name} here.", "curly_bracket"),
    "javascript": (GOOD + "\nPlease enable JavaScript to view the comments.", "javascript_lines_high"),
    "policy": (GOOD + "\nThis site uses cookies, see the privacy policy.", "policy_lines_high"),
    "no_punct": ("\n".join(s.rstrip(".") + " and more of the same" for s in SENTENCES), "few_lines_end_in_punctuation"),
    "newlines": ("\n\n\n\n".join(SENTENCES), "newline_to_word_ratio_high"),
    "duplicate_lines": ("\n".join(SENTENCES + SENTENCES[:4]), "duplicate_lines_high"),
    "duplicate_paragraphs": ("\n".join(SENTENCES[:6]) + "\n\n" + "\n\n".join([SENTENCES[7]] * 3), "duplicate_paragraphs_high"),
    "duplicate_line_chars": ("\n".join(SENTENCES + SENTENCES[:1]), "duplicate_line_chars_high"),
    "top_2gram": (" ".join(f"The river {w} again." for w in LEXICON), "top_2gram_chars_high"),
    "duplicate_5gram": (GOOD + " " + " ".join(GOOD.split()[:40]) + ".", "duplicate_5gram_chars_high"),
    "french": (FRENCH, "language_not_allowed"),
}


@pytest.fixture(scope="module")
def rejected(spark):
    docs = spark.createDataFrame([Row(doc_id=k, text=t) for k, (t, _) in CASES.items()])
    result = filter_stage.filter_documents(docs, StageContext(cfg=Config(), run_id="r"))
    rows = result.rejected("filter", "r").collect()
    return {r["doc_id"]: r for r in rows}, [r["doc_id"] for r in result.kept.collect()]


def test_each_rule_names_its_reason(rejected):
    rows, kept = rejected
    assert kept == ["good"]
    assert {k: r["reason"] for k, r in rows.items()} == {k: reason for k, (_, reason) in CASES.items() if reason}


def test_details_record_value_and_threshold(rejected):
    rows, _ = rejected
    assert rows["stop_words"]["detail"] == "preset=default; stop_words=0.0, required >= 2"
    assert rows["lorem"]["detail"] == "preset=default; lorem_ipsum=1.0, required <= 0"
    assert rows["bullets"]["detail"] == "preset=default; bullet_line_ratio=1.0, required <= 0.9"
    assert re.fullmatch(r"preset=default; lang=fr, score=[01]\.\d+, allowed \[en\]", rows["french"]["detail"])
    assert rows["duplicate_lines"]["detail"] == "preset=default; duplicate_line_ratio=0.3333, required <= 0.3"
    assert rows["french"]["duplicate_of"] is None  # only dedup fills it


def test_rules_switched_off_by_null_and_language_score(spark):
    cfg = Config()
    cfg.filter.language.enabled = False
    cfg.filter.max_duplicate_line_char_ratio = None
    cfg.filter.max_duplicate_paragraph_ratio = None
    cfg.filter.max_duplicate_line_ratio = None
    dup_para = "\n\n".join([GOOD, GOOD[:200], GOOD[:200], GOOD[:200]])
    docs = spark.createDataFrame([Row(doc_id="french", text=FRENCH), Row(doc_id="para", text=dup_para)])
    got = {r["doc_id"]: r["reason"] for r in filter_stage.filter_documents(docs, StageContext(cfg=cfg, run_id="r")).rejected("filter", "r").collect()}
    # Without language ID the French text meets the English stop-word rule instead.
    assert got == {"french": "too_few_stop_words", "para": "duplicate_paragraph_chars_high"}

    # Any language allowed: a page mixing two languages still fails the score threshold.
    cfg = Config()
    cfg.filter.language.languages = []
    docs = spark.createDataFrame([Row(doc_id="mixed", text=GOOD + " " + FRENCH)])
    result = filter_stage.filter_documents(docs, StageContext(cfg=cfg, run_id="r"))
    rows = result.rejected("filter", "r").collect()
    assert [(r["doc_id"], r["reason"]) for r in rows] == [("mixed", "language_score_low")]
    assert re.fullmatch(r"preset=default; lang=fr, score=0\.6\d+, required >= 0\.65", rows[0]["detail"])


def test_kept_rows_carry_language(spark):
    docs = spark.createDataFrame([Row(doc_id="good", text=GOOD)])
    row = filter_stage.filter_documents(docs, StageContext(cfg=Config(), run_id="r")).kept.first()
    assert row["language"] == "en" and row["language_score"] > 0.9


# --- the Arrow-batch measures against plain Python ---------------------------------------------


def reference_top(words: list[str], n: int, n_chars: int) -> float:
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    gram, count = Counter(grams).most_common(1)[0]  # DataTrove's find_top_duplicate
    return len(gram) * count / n_chars


def reference_duplicate(words: list[str], n: int, n_chars: int) -> float:
    """Characters of words covered by a repeated occurrence of an n-gram (each word once)."""
    seen, covered = set(), [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            for j in range(i, i + n):
                covered[j] = True
        seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered) if c) / n_chars


def random_docs(seed: int, n_docs: int = 40) -> list[str]:
    rng = random.Random(seed)
    vocab = LEXICON[:8] + ["the", "of", "a", "river"]
    docs = []
    for _ in range(n_docs):
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 60))]
        if words and rng.random() < 0.5:  # insert a repeated passage
            start = rng.randint(0, len(words) - 1)
            words += words[start : start + rng.randint(1, 15)]
        docs.append(" ".join(words))
    return docs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ngram_measures_match_reference(seed):
    docs = random_docs(seed)
    got = quality_rules.repetition_measures(pd.Series(docs))
    for i, text in enumerate(docs):
        words, n_chars = text.split(), max(len(text), 1)
        for n in quality_rules.TOP_NGRAMS:
            assert got[f"top_{n}gram_char_ratio"][i] == pytest.approx(reference_top(words, n, n_chars)), (i, n)
        for n in quality_rules.DUPLICATE_NGRAMS:
            assert got[f"duplicate_{n}gram_char_ratio"][i] == pytest.approx(reference_duplicate(words, n, n_chars)), (i, n)


def test_line_and_paragraph_duplicates():
    text = "a line\nb line\na line\n\nb line"
    got = quality_rules.repetition_measures(pd.Series([text, ""])).iloc[0]
    assert got["duplicate_line_ratio"] == pytest.approx(2 / 4)
    assert got["duplicate_line_char_ratio"] == pytest.approx(12 / (len(text) - 4))
    assert got["duplicate_paragraph_ratio"] == 0.0


def test_batched_language_id_matches_py3langid():
    """The batch walk (numpy steps, then a loop for the few long documents) gives py3langid's own
    answers: same language, same probability up to float32 rounding (the sums run in another order)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from webscale_rl.stages import langid

    rng = random.Random(5)
    texts = [GOOD, FRENCH, GOOD.upper(), "这是一个关于多瑙河的中文句子。", "", "   ", "12345 !!! ...", GOOD + " " + FRENCH]
    texts += [" ".join(rng.choice(SENTENCES + FRENCH.split(". ")) for _ in range(rng.randint(1, 40))) for _ in range(60)]
    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    for max_chars in (20_000, 50):
        langs, scores = langid.classify(texts, max_chars)
        expected = [reference.classify(t[:max_chars]) for t in texts]
        assert langs == [lang for lang, _ in expected]
        assert scores == pytest.approx([score for _, score in expected], abs=2e-4)
