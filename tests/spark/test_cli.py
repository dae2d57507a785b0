"""The command line: help texts, clear one-line errors naming the bad input, exit codes."""

from __future__ import annotations

import json

import pytest

from webscale_rl.cli import main


@pytest.mark.parametrize("command", ["run", "export", "setup", "demo"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: webscale-rl " + command in capsys.readouterr().out


def test_bad_json_line_names_file_and_line(spark, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": broken\n')
    code = main(["run", "--input", str(bad), "--warehouse", str(tmp_path / "wh"), "--set", "mlflow.enabled=false", "--on-bad-record", "fail"])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.jsonl" in err and "line 3" in err
    assert not (tmp_path / "wh" / "documents").exists()  # nothing ran


def test_missing_input_and_bad_config(spark, tmp_path, capsys):
    assert main(["run", "--input", str(tmp_path / "nope.jsonl"), "--warehouse", str(tmp_path / "wh")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    doc = tmp_path / "d.jsonl"
    doc.write_text(json.dumps({"text": "x"}) + "\n")
    assert main(["run", "--input", str(doc), "--warehouse", str(tmp_path / "wh"), "--set", "llm.max_concurency=2"]) == 2
    assert "max_concurency" in capsys.readouterr().err


def test_unknown_until_stage_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--input", "x", "--warehouse", "y", "--until", "nonsense"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_run_until_filter_with_limit(spark, tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document number {i} " * 30}) + "\n" for i in range(5)))
    wh = tmp_path / "wh"
    code = main(["run", "--input", str(docs), "--warehouse", str(wh), "--until", "filter", "--limit", "3", "--set", "mlflow.enabled=false"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[filter] done" in out and "[dedup]" not in out
    assert spark.read.format("delta").load(str(wh / "documents")).count() == 3
    assert not (wh / "deduped").exists()


def test_bad_eval_set_fails_before_any_stage(spark, tmp_path, capsys):
    doc = tmp_path / "d.jsonl"
    doc.write_text(json.dumps({"text": "x"}) + "\n")
    bench = tmp_path / "bench.csv"
    bench.write_text("prompt,target\nWhat is two plus two?,4\n")
    wh = tmp_path / "wh"
    code = main(["run", "--input", str(doc), "--warehouse", str(wh), "--eval-set", str(bench), "--set", "mlflow.enabled=false"])
    err = capsys.readouterr().err
    assert code == 2 and "bench.csv" in err and "question" in err
    assert not (wh / "documents").exists()
