"""A bad record does not stop a run (issue 19, item 2): each bad JSONL line becomes one rejection at
ingest (`bad_record` / `too_large`, naming file and line) with an id stable across runs, the other
lines are read; `limits.on_bad_record: fail` (`run --on-bad-record fail`) keeps the strict error."""

from __future__ import annotations

import gzip
import json

import pytest

from webscale_rl import cli
from webscale_rl.config import ConfigError, load_config
from webscale_rl.readers import READ_ERROR, InputError, files, jsonl, read_documents
from webscale_rl.readers.jsonl_lines import BAD_RECORD, TOO_LARGE, BadLine, bad_lines
from webscale_rl.stages import ingest
from webscale_rl.stages.base import DETAIL, REASON, StageContext

GOOD = [{"id": f"good-{i}", "text": f"Good document number {i} about rivers and honey."} for i in range(1, 4)]
# line number → (line, reason, start of the detail after "<file> line <n>: ")
BAD = {
    2: ("this line is not JSON at all", BAD_RECORD, "not valid JSON (Expecting value at column 1)"),
    4: ("[1, 2, 3]", BAD_RECORD, "not a JSON object (got list)"),
    5: ('{"id": "numeric", "text": 42}', BAD_RECORD, '"text" is not a string (got int)'),
    7: ('{"id": "cut", "text": "The Danube flows thr', BAD_RECORD, "not valid JSON (Unterminated string"),
}


def _ctx(overrides: list[str] | None = None) -> StageContext:
    return StageContext(cfg=load_config(overrides=overrides or []), run_id="test", log=lambda _: None)


@pytest.fixture
def mixed_file(tmp_path):
    """Good lines 1, 3, 6 and the bad ones of BAD; the last line is cut mid-object (no newline)."""
    lines = {1: json.dumps(GOOD[0]), 3: json.dumps(GOOD[1]), 6: json.dumps(GOOD[2])}
    lines.update({n: line for n, (line, _, _) in BAD.items()})
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines[n] for n in sorted(lines)))
    return path


def _outcomes(spark, path, overrides=None) -> dict[str, tuple[str | None, str | None]]:
    result = ingest.ingest_documents(read_documents(spark, [str(path)]), _ctx(overrides))
    return {r["doc_id"]: (r[REASON], r[DETAIL]) for r in result.marked.select("doc_id", REASON, DETAIL).collect()}


# --------------------------------------------------------------------------------------------
# Spark: reader + ingest


def test_bad_lines_are_rejected_by_line_and_the_good_ones_are_read(spark, mixed_file):
    outcomes = _outcomes(spark, mixed_file)
    assert {k: v for k, v in outcomes.items() if v[0] is None} == {d["id"]: (None, None) for d in GOOD}
    for number, (_, reason, problem) in BAD.items():
        got_reason, detail = outcomes.pop(f"{mixed_file}:{number}")
        assert got_reason == reason
        assert detail.startswith(f"{mixed_file} line {number}: {problem}"), detail
    assert set(outcomes) == {d["id"] for d in GOOD}  # nothing else: one row per line
    # A rerun makes the same ids, so ingest's "already ingested" check drops them.
    assert _outcomes(spark, mixed_file).keys() == _outcomes(spark, mixed_file).keys()


def test_a_31_mb_record_among_good_ones_is_too_large_naming_file_and_line(spark, tmp_path):
    path = tmp_path / "big.jsonl"
    huge = {"id": "huge", "text": "The river runs. " * (31 * 1024 * 1024 // 16)}
    path.write_text("\n".join([json.dumps(GOOD[0]), json.dumps(huge), json.dumps(GOOD[1])]) + "\n")
    outcomes = _outcomes(spark, path)
    reason, detail = outcomes.pop(f"{path}:2")
    assert reason == TOO_LARGE
    assert detail.startswith(f"{path} line 2: too large: n_chars={len(huge['text'])} (id 'huge')"), detail
    assert outcomes == {"good-1": (None, None), "good-2": (None, None)}
    with pytest.raises(InputError, match=r"big\.jsonl, line 2: too large: n_chars=") as err:
        read_documents(spark, [str(path)], on_bad_record="fail")
    assert (err.value.path, err.value.line) == (str(path), 2)


def test_on_bad_record_fail_raises_naming_file_and_first_bad_line(spark, mixed_file):
    with pytest.raises(InputError, match=r"docs\.jsonl, line 2: not valid JSON \(Expecting value at column 1\)") as err:
        read_documents(spark, [str(mixed_file)], on_bad_record="fail")
    assert (err.value.path, err.value.line) == (str(mixed_file), 2)


@pytest.mark.parametrize("why", ["remote file", "too many bad lines"])
def test_bad_lines_spark_cannot_number_are_still_rejected_one_by_one(spark, mixed_file, monkeypatch, why):
    """Remote files, and files with more bad lines than the driver numbers, are rejected in Spark:
    by file and a hash of the line, which is also a stable id."""
    if why == "remote file":
        monkeypatch.setattr(jsonl, "is_local_path", lambda _path: False)
    else:
        monkeypatch.setattr(jsonl, "MAX_NUMBERED_BAD_LINES", 0)
    outcomes = _outcomes(spark, mixed_file)
    rejected = {k: v for k, v in outcomes.items() if v[0] is not None}
    assert len(rejected) == len(BAD) and {v[0] for v in rejected.values()} == {BAD_RECORD}
    assert all(k.startswith(f"{mixed_file}@sha256:") for k in rejected)
    assert all(d.startswith(f"{mixed_file} line with hash ") for _, d in rejected.values())
    assert sorted(d.split(": ", 1)[1] for _, d in rejected.values()) == sorted(
        ['"text" is not a string', "not a JSON object", "not valid JSON", "not valid JSON"]
    )
    assert {k for k, v in outcomes.items() if v[0] is None} == {d["id"] for d in GOOD}
    assert _outcomes(spark, mixed_file).keys() == outcomes.keys()
    if why == "remote file":
        with pytest.raises(InputError, match=r"docs\.jsonl: 4 bad line\(s\) .*, e\.g\. a line of \d+ characters: ") as err:
            read_documents(spark, [str(mixed_file)], on_bad_record="fail")
        assert err.value.line is None


# --------------------------------------------------------------------------------------------
# No Spark: the line scan, the config key and the CLI option


def test_bad_lines_scan_names_every_bad_line(mixed_file):
    found = list(bad_lines(str(mixed_file)))
    assert [(b.number, b.reason) for b in found] == [(n, reason) for n, (_, reason, _) in sorted(BAD.items())]
    assert all(b.problem.startswith(BAD[b.number][2]) for b in found)


def test_a_gzip_file_is_scanned_too(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "ok"}\r\n\n{"text": 1}\n'))
    assert list(bad_lines(str(path))) == [BadLine(3, BAD_RECORD, '"text" is not a string (got int)')]


def test_on_bad_record_config_key_and_cli_option():
    assert load_config().limits.on_bad_record == "reject"
    with pytest.raises(ConfigError, match="limits.on_bad_record"):
        load_config(overrides=["limits.on_bad_record=skip"])
    args = cli.build_parser().parse_args(["run", "--warehouse", "w", "--on-bad-record", "fail"])
    assert load_config(args.config, cli.run_overrides(args)).limits.on_bad_record == "fail"
    args = cli.build_parser().parse_args(["run", "--warehouse", "w"])
    assert load_config(args.config, cli.run_overrides(args)).limits.on_bad_record == "reject"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--warehouse", "w", "--on-bad-record", "skip"])


def test_a_file_its_parser_fails_on_is_a_bad_record_row(monkeypatch):
    def broken_parser(*_args, **_kwargs):
        raise RecursionError("maximum recursion depth exceeded\nmore lines")

    monkeypatch.setattr(files, "html_to_text", broken_parser)
    [row] = list(files.file_documents("/in/page.html", b"<html>deep</html>", "reject"))
    assert (row["id"], row["text"], row["source"], row["source_format"]) == ("/in/page.html", None, "/in/page.html", "html")
    assert row[READ_ERROR] == "bad_record: /in/page.html: could not be parsed as html (maximum recursion depth exceeded)"
    with pytest.raises(RecursionError):
        list(files.file_documents("/in/page.html", b"<html>deep</html>", "fail"))
    assert list(files.file_documents("/in/a.txt", b"fine", "reject"))[0]["text"] == "fine"
