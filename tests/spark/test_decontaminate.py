"""decontaminate: n-gram overlap of QA pairs with evaluation sets, on tiny frames with exact reasons."""

from __future__ import annotations

import gzip
import json
import re

import pandas as pd
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from webscale_rl.cli import main
from webscale_rl.config import load_config
from webscale_rl.pipeline import PIPELINE, run_pipeline
from webscale_rl.readers import InputError
from webscale_rl.stages.base import DETAIL, REASON
from webscale_rl.stages.decontaminate import (
    CATCH_UP,
    CHECKED,
    DecontamConfig,
    catch_up,
    decontaminate,
    decontaminate_qa,
    eval_ngrams,
    load_eval_sets,
)
from webscale_rl.warehouse import REJECTIONS, Warehouse
from webscale_rl.work import unaccounted_documents

# 18 tokens; any 13 consecutive of them form a 13-gram of the eval question.
EVAL_Q = "Which river flows through Vienna, Budapest and Belgrade before it reaches the Black Sea near the Romanian coast?"
EVAL_WORDS = EVAL_Q.lower().replace(",", "").replace("?", "").split()
GRAM13 = " ".join(EVAL_WORDS[2:15])  # "flows through vienna ... romanian"
GRAM12 = " ".join(EVAL_WORDS[2:14])
OTHER_Q = "What is the boiling point of water at sea level in degrees Celsius on a normal day?"

QA_SCHEMA = "qa_id string, doc_id string, pretrain_text string, question string, answer string"
DOC = "Rivers of Europe carry trade. Ships move grain and ore on many of them every year."


def qa_rows(spark, rows):
    return spark.createDataFrame([Row(qa_id=i, doc_id="d", pretrain_text=t, question=q, answer=a) for i, t, q, a in rows], QA_SCHEMA)


def eval_texts(spark, rows):
    return spark.createDataFrame(rows, "eval_set string, text string")


def marked_reasons(result):
    return {r["qa_id"]: r[REASON] for r in result.marked.collect()}


def run(spark, qa, evals, cfg=None):
    cfg = cfg or DecontamConfig()
    return decontaminate_qa(qa, eval_ngrams(eval_texts(spark, evals), cfg), cfg)


def test_planted_13gram_in_question_hits_and_12gram_misses(spark):
    qa = qa_rows(
        spark,
        [
            ("hit", DOC, f"Quick quiz: {GRAM13} - true or false?", "true"),
            ("near", DOC, f"Quick quiz: {GRAM12} - true or false?", "true"),
            ("clean", DOC, "Which ships carry grain on European rivers?", "barges"),
        ],
    )
    result = run(spark, qa, [("mmlu_test", EVAL_Q)])
    assert marked_reasons(result) == {"hit": "contaminated:mmlu_test", "near": None, "clean": None}
    detail = result.marked.filter("qa_id = 'hit'").first()[DETAIL]
    assert detail == f"13-gram overlap in question: '{GRAM13}'"
    assert sorted(r["qa_id"] for r in result.kept.collect()) == ["clean", "near"]
    rejected = result.rejected("decontaminate", "r").collect()
    assert [(r["qa_id"], r["reason"]) for r in rejected] == [("hit", "contaminated:mmlu_test")]


def test_planted_in_pretrain_text_names_the_field(spark):
    long_doc = ("Filler words about nothing in particular. " * 200) + EVAL_Q.upper() + (" More filler text." * 100)
    qa = qa_rows(spark, [("doc_hit", long_doc, "What do ships carry?", "grain")])
    result = run(spark, qa, [("bench", EVAL_Q)])
    row = result.marked.first()
    assert row[REASON] == "contaminated:bench"
    # first hit = the first position of the whole 18-token question (6 overlapping 13-grams)
    assert row[DETAIL] == f"13-gram overlap in pretrain_text: '{' '.join(EVAL_WORDS[:13])}' (6 overlapping n-grams)"


def test_case_and_punctuation_differences_still_hit(spark):
    mangled = "WHICH river -- flows through: VIENNA; Budapest AND Belgrade (before) it reaches... the BLACK sea!!"
    qa = qa_rows(spark, [("q", DOC, mangled, "Danube")])
    assert marked_reasons(run(spark, qa, [("bench", EVAL_Q)])) == {"q": "contaminated:bench"}


def test_two_sets_reason_names_the_one_hit_and_first_by_name_when_both(spark):
    qa = qa_rows(
        spark,
        [
            ("second_only", DOC, OTHER_Q, "100"),
            ("both", DOC, OTHER_Q + " " + EVAL_Q, "x"),
            ("none", DOC, "Nothing to see here.", "y"),
        ],
    )
    evals = [("a_set", EVAL_Q), ("c_set", OTHER_Q), ("b_set", OTHER_Q)]
    result = run(spark, qa, evals)
    # OTHER_Q is in b_set and c_set: the first by name; a pair hitting a_set and b_set: a_set.
    assert marked_reasons(result) == {"second_only": "contaminated:b_set", "both": "contaminated:a_set", "none": None}
    detail = result.marked.filter("qa_id = 'both'").first()[DETAIL]
    assert detail.startswith(f"13-gram overlap in question: '{' '.join(EVAL_WORDS[:13])}'")


def test_every_qa_row_appears_once_with_columns_unchanged(spark):
    rows = [(f"q{i}", DOC, (EVAL_Q + " ") * (i % 3) + f"question number {i}", "a") for i in range(12)]
    rows.append(("q0", DOC, EVAL_Q, "same id, other text"))  # a repeated qa_id is still one row each
    qa = qa_rows(spark, rows)
    result = run(spark, qa, [("bench", EVAL_Q), ("bench2", EVAL_Q)])
    assert result.marked.columns == qa.columns + [REASON, DETAIL]
    assertDataFrameEqual(result.marked.drop(REASON, DETAIL), qa)
    got = sorted((r["qa_id"], r["answer"], r[REASON]) for r in result.marked.collect())
    expected = sorted([(f"q{i}", "a", "contaminated:bench" if i % 3 else None) for i in range(12)] + [("q0", "same id, other text", "contaminated:bench")])
    assert got == expected


def test_short_eval_question_is_matched_whole_above_min_tokens(spark):
    short_q = "Who painted the ceiling of the Sistine Chapel?"  # 8 tokens < 13
    tiny_answer = "Michelangelo"  # 1 token: ignored (below min_tokens)
    qa = qa_rows(
        spark,
        [
            ("whole", DOC, "Trivia time. Who painted the ceiling of the Sistine Chapel in Rome?", "Michelangelo"),
            ("partial", DOC, "Who painted the ceiling of the chapel?", "Michelangelo"),
            ("answer_only", "Michelangelo was a sculptor.", "Name a Renaissance sculptor.", "Michelangelo"),
        ],
    )
    evals = spark.createDataFrame([("trivia", short_q, tiny_answer)], "eval_set string, question string, answer string")
    texts = evals.selectExpr("eval_set", "question as text").unionByName(evals.selectExpr("eval_set", "answer as text"))
    cfg = DecontamConfig()
    grams = eval_ngrams(texts, cfg)
    assert [(r["eval_set"], r["ngram_len"]) for r in grams.collect()] == [("trivia", 8)]
    result = decontaminate_qa(qa, grams, cfg)
    assert marked_reasons(result) == {"whole": "contaminated:trivia", "partial": None, "answer_only": None}
    detail = result.marked.filter("qa_id = 'whole'").first()[DETAIL]
    assert detail == "whole eval text (8 tokens) found in question: 'who painted the ceiling of the sistine chapel'"

    # min_tokens >= ngram turns whole-text matching off; min_tokens=1 matches even one-word answers.
    off = DecontamConfig(min_tokens=13)
    assert eval_ngrams(texts, off).count() == 0
    assert set(marked_reasons(decontaminate_qa(qa, eval_ngrams(texts, off), off)).values()) == {None}
    loose = DecontamConfig(min_tokens=1)
    assert marked_reasons(decontaminate_qa(qa, eval_ngrams(texts, loose), loose)) == {
        "whole": "contaminated:trivia",
        "partial": "contaminated:trivia",
        "answer_only": "contaminated:trivia",
    }


def test_smaller_ngram_setting(spark):
    cfg = DecontamConfig(ngram=5, min_tokens=5)
    qa = qa_rows(spark, [("q", DOC, "Does the Danube reach the Black Sea near Romania?", "yes")])
    # "reach the black sea near" differs from the eval's "reaches the black sea near"
    assert run(spark, qa, [("bench", EVAL_Q)], cfg).marked.first()[REASON] is None
    qa2 = qa_rows(spark, [("q", DOC, "It reaches the Black Sea near Constanta.", "yes")])
    result2 = run(spark, qa2, [("bench", EVAL_Q)], cfg)
    assert result2.marked.first()[DETAIL] == "5-gram overlap in question: 'it reaches the black sea' (2 overlapping n-grams)"


# --------------------------------------------------------------------------------------------
# Eval-set files


@pytest.fixture
def eval_files(tmp_path):
    jsonl = tmp_path / "mmlu_test.jsonl"
    jsonl.write_text(json.dumps({"question": EVAL_Q, "answer": "The Danube", "subject": "geo"}) + "\n")
    csv = tmp_path / "gsm8k.csv"
    pd.DataFrame({"question": [OTHER_Q + '\nSecond line, with a "quote".'], "answer": ["100"]}).to_csv(csv, index=False)
    parquet = tmp_path / "arc.parquet"
    pd.DataFrame({"question": ["Which planet of the solar system has two small moons called Phobos and Deimos today?"]}).to_parquet(parquet)
    gz = tmp_path / "trivia.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(
            json.dumps({"question": "Who painted the ceiling of the Sistine Chapel in Rome?", "answer": ["Michelangelo", "Michelangelo Buonarroti"]}) + "\n"
        )
    return {"jsonl": jsonl, "csv": csv, "parquet": parquet, "gz": gz}


def test_load_eval_sets_jsonl_csv_parquet(spark, eval_files):
    paths = [str(eval_files["jsonl"]), str(eval_files["csv"]), str(eval_files["parquet"]), f"triv={eval_files['gz']}"]
    texts = load_eval_sets(spark, paths, DecontamConfig())
    expected = spark.createDataFrame(
        [
            ("mmlu_test", EVAL_Q),
            ("mmlu_test", "The Danube"),
            ("gsm8k", OTHER_Q + '\nSecond line, with a "quote".'),
            ("gsm8k", "100"),
            ("arc", "Which planet of the solar system has two small moons called Phobos and Deimos today?"),
            ("triv", "Who painted the ceiling of the Sistine Chapel in Rome?"),
            ("triv", "Michelangelo"),
            ("triv", "Michelangelo Buonarroti"),
        ],
        "eval_set string, text string",
    )
    assertDataFrameEqual(texts, expected)

    qa = qa_rows(
        spark,
        [
            ("from_jsonl", DOC, EVAL_Q, "Danube"),
            ("from_csv", DOC, "Quiz: " + OTHER_Q, "100"),
            ("from_parquet", "Mars has two small moons called Phobos and Deimos today, as the solar system has many.", "q?", "a"),
            ("from_gz", DOC, "who painted the ceiling of the sistine chapel in rome", "M."),
            ("clean", DOC, "What do ships carry on the Danube?", "grain"),
        ],
    )
    result = decontaminate(spark, qa, paths, DecontamConfig())
    assert marked_reasons(result) == {
        "from_jsonl": "contaminated:mmlu_test",
        "from_csv": "contaminated:gsm8k",
        "from_parquet": None,  # only a 10-token stretch is shared
        "from_gz": "contaminated:triv",  # 11-token question, matched whole
        "clean": None,
    }


def test_missing_question_column_names_file_and_column(spark, tmp_path):
    bad = tmp_path / "squad_dev.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "answer": "y"}) + "\n")
    with pytest.raises(InputError) as err:
        load_eval_sets(spark, [str(bad)], DecontamConfig())
    assert err.value.path == str(bad)
    assert "'question'" in str(err.value) and str(bad) in str(err.value)
    # the column is configurable
    texts = load_eval_sets(spark, [str(bad)], DecontamConfig(question_column="prompt"))
    assert sorted(r["text"] for r in texts.collect()) == ["x", "y"]


def test_bad_eval_paths(spark, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_eval_sets(spark, [str(tmp_path / "nope.jsonl")], DecontamConfig())
    txt = tmp_path / "bench.txt"
    txt.write_text("a question\n")
    with pytest.raises(InputError, match="unsupported eval-set file type"):
        load_eval_sets(spark, [str(txt)], DecontamConfig())
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        load_eval_sets(spark, [str(empty)], DecontamConfig())
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "ok"}\n{not json\n')
    with pytest.raises(InputError, match="not valid JSON"):
        load_eval_sets(spark, [str(broken)], DecontamConfig())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "test.jsonl").write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(InputError, match="already used"):
        load_eval_sets(spark, [str(tmp_path / "a" / "test.jsonl"), str(tmp_path / "b" / "test.jsonl")], DecontamConfig())
    named = load_eval_sets(spark, [f"first={tmp_path / 'a' / 'test.jsonl'}", f"second={tmp_path / 'b' / 'test.jsonl'}"], DecontamConfig())
    assert sorted(r["eval_set"] for r in named.collect()) == ["first", "second"]


# --------------------------------------------------------------------------------------------
# Catching up: an eval set added after the pairs landed in `qa`

PAIRS = [  # (qa_id, doc_id, question, answer)
    ("p_danube", "d1", EVAL_Q, "The Danube"),
    ("p_boil", "d2", OTHER_Q, "100"),
    ("p_ships", "d3", "Which ships carry grain on European rivers?", "barges"),
]


def landed_checked_pairs(spark, root) -> Warehouse:
    """A warehouse whose `documents` and `verified` tables hold PAIRS, as the stages before decontaminate land them."""
    wh = Warehouse(spark, str(root))
    docs = spark.createDataFrame([(d, DOC) for _, d, _, _ in PAIRS], "doc_id string, text string")
    wh.append_once(docs.withColumn("run_id", F.lit("r0")), "documents", "test/documents")
    checked = spark.createDataFrame(
        [(i, d, DOC, q, a, "Travel & Lifestyle", "a student", "entity") for i, d, q, a in PAIRS],
        QA_SCHEMA + ", domain string, persona string, answer_type string",
    ).withColumn("run_id", F.lit("r0"))
    wh.append_once(checked, "verified", "test/verified")
    return wh


def decontam_cfg(*eval_sets):
    cfg = load_config(None, ["mlflow.enabled=false", "quality.enabled=false"])
    cfg.decontam.eval_sets = [str(p) for p in eval_sets]
    return cfg


def qa_checked(wh) -> dict[str, list[str]]:
    return {r["qa_id"]: r[CHECKED] for r in wh.read("qa").collect()}


def contaminated(wh) -> list[tuple]:
    rows = wh.read(REJECTIONS).filter("stage = 'decontaminate'").collect()
    return sorted((r["qa_id"], r["doc_id"], r["reason"], r["detail"]) for r in rows)


def test_an_eval_set_added_later_moves_old_pairs_out_of_qa_once(spark, tmp_path, capsys):
    wh = landed_checked_pairs(spark, tmp_path / "wh")
    run_pipeline([], wh.root, decontam_cfg(), start="decontaminate", spark=spark, log=lambda _: None)
    assert qa_checked(wh) == {"p_danube": [], "p_boil": [], "p_ships": []}  # checked against nothing

    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": EVAL_Q, "answer": "The Danube"}) + "\n")
    lines: list[str] = []
    run_pipeline([], wh.root, decontam_cfg(bench), start="decontaminate", spark=spark, log=lines.append)
    tag = qa_checked(wh)["p_boil"][0]
    assert re.fullmatch(r"bench@[0-9a-f]{12}", tag)
    assert qa_checked(wh) == {"p_boil": [tag], "p_ships": [tag]}
    gram = " ".join(EVAL_WORDS[:13])
    assert contaminated(wh) == [("p_danube", "d1", "contaminated:bench", f"13-gram overlap in question: '{gram}' (6 overlapping n-grams)")]
    moved = "1 contaminated pair(s) moved to 'rejections' (contaminated:bench=1)"
    assert f"  [decontaminate] checked 3 pair(s) against {tag}: {moved}, 2 recorded as clean" in lines

    # The command, again with the same file: nothing to check, no commit.
    versions = (wh.latest_version("qa"), wh.latest_version(REJECTIONS))
    assert main(["decontaminate", "--warehouse", wh.root, "--eval-set", str(bench), "--set", "mlflow.enabled=false"]) == 0
    assert f"every pair in 'qa' was already checked against {tag}" in capsys.readouterr().out
    assert (wh.latest_version("qa"), wh.latest_version(REJECTIONS)) == versions

    # A changed file is a new set: the pairs are checked against it, p_boil is now contaminated.
    bench.write_text(bench.read_text() + json.dumps({"question": OTHER_Q, "answer": "100"}) + "\n")
    assert main(["decontaminate", "--warehouse", wh.root, "--eval-set", str(bench), "--set", "mlflow.enabled=false"]) == 0
    new_tag = next(t for t in qa_checked(wh)["p_ships"] if t != tag)
    assert re.fullmatch(r"bench@[0-9a-f]{12}", new_tag)
    assert qa_checked(wh) == {"p_ships": sorted([tag, new_tag])}
    assert [r[0] for r in contaminated(wh)] == ["p_boil", "p_danube"]
    assert contaminated(wh)[0][2] == "contaminated:bench"
    assert unaccounted_documents(wh, PIPELINE[0], "qa") == []

    # A missing eval file: one line naming it, exit 2, nothing changed.
    versions = (wh.latest_version("qa"), wh.latest_version(REJECTIONS))
    missing = tmp_path / "nope.jsonl"
    capsys.readouterr()
    assert main(["decontaminate", "--warehouse", wh.root, "--eval-set", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such file or folder\n"
    assert (wh.latest_version("qa"), wh.latest_version(REJECTIONS)) == versions


def test_a_catch_up_killed_between_its_commits_is_finished_by_the_next(spark, tmp_path, monkeypatch):
    """An older `qa` table without the column (checked against nothing); the run dies after the
    rejections landed and before `qa` changed; the next run adds no second rejection."""
    wh = Warehouse(spark, str(tmp_path / "wh"))
    wh.append_once(qa_rows(spark, [(i, DOC, q, a) for i, _, q, a in PAIRS]).withColumn("doc_id", F.lit("d")), "qa", "test/qa")
    bench = tmp_path / "bench.csv"
    pd.DataFrame({"question": [EVAL_Q]}).to_csv(bench, index=False)
    cfg = DecontamConfig(eval_sets=[str(bench)])

    class Killed(Exception):
        pass

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(Warehouse, "delete_or_update", killed)
        with pytest.raises(Killed):
            catch_up(wh, cfg.eval_sets, cfg, "run-killed", log=lambda _: None)
    assert [r[0] for r in contaminated(wh)] == ["p_danube"]
    assert qa_checked(wh) == {"p_danube": None, "p_boil": None, "p_ships": None}  # qa: only the (null) column added
    assert wh.staged_batches(CATCH_UP) == ["run-killed"]

    done = catch_up(wh, cfg.eval_sets, cfg, "run-next", log=lambda _: None)
    assert (done.checked, done.contaminated) == (3, {"contaminated:bench": 1})
    tag = done.tags[0]
    assert qa_checked(wh) == {"p_boil": [tag], "p_ships": [tag]}
    assert [(r[0], r[2]) for r in contaminated(wh)] == [("p_danube", "contaminated:bench")]  # once
    assert wh.staged_batches(CATCH_UP) == []
    assert catch_up(wh, cfg.eval_sets, cfg, "run-again", log=lambda _: None).checked == 0
