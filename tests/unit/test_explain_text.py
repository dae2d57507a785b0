"""`explain`'s text: one verdict line and one provenance line per stage; document and model text
cannot drive the terminal."""

from __future__ import annotations

from webscale_rl.explain import Explanation, PairPath, Step, format_text


def test_text_of_a_pair_with_a_hostile_answer_and_a_missing_lineage_record():
    pair = PairPath(
        "q1",
        [
            Step("generate", "kept", "r1", "qa_candidates", 2, prompt_version="generate-v2+fewshot-v1", model="gpt-4.1", read={"profiles": 1},
                 fields={"question": "Which river?", "answer": "Danube\x1b]0;owned\x07", "answer_type": "entity", "persona": "a pilot"}),
            Step("check", "rejected", "r2", "rejections", None, reason="answer_not_in_document", detail="\x1b[2Jgone", read={"qa_candidates": 2}),
        ],
    )  # fmt: skip
    doc = [Step("ingest", "kept", "r1", "documents", 0, read={"/in/docs.jsonl": None}, fields={"source": "/in/docs.jsonl"})]
    text = format_text(Explanation("/wh", "d1", doc, [pair], qa_id="q1"))
    assert text.splitlines() == [
        "QA pair 'q1' of document 'd1' in warehouse /wh: dropped at check: answer_not_in_document",
        "  ingest        kept (source /in/docs.jsonl)",
        "                → documents v0, run r1; read input /in/docs.jsonl",
        "  pair q1: dropped at check: answer_not_in_document",
        "      Q: Which river?",
        "      A: Danube?]0;owned?  (entity; persona: a pilot)",
        "    generate      kept",
        "                  → qa_candidates v2, run r1; read profiles v1; prompt generate-v2+fewshot-v1, model gpt-4.1",
        "    check         REJECTED answer_not_in_document: ?[2Jgone",
        "                  → rejections (version not recorded), run r2; read qa_candidates v2",
    ]
