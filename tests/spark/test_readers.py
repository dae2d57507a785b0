"""Reading every input format into READER_COLUMNS, and the errors for inputs a user must fix."""

from __future__ import annotations

import gzip
import io
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from tests.support.paths import FIXTURES
from webscale_rl.readers import (
    READ_ERROR,
    READER_COLUMNS,
    InputError,
    jsonl_line_problem,
    list_with_spark,
    parse_file_bytes,
    read_documents,
    strip_tags,
)

INPUTS = FIXTURES / "inputs"
GOOD = INPUTS / "good"
BAD = INPUTS / "bad"


def doc(id=None, url=None, text=None, source=None, source_format=None) -> Row:
    return Row(id=id, url=url, text=text, source=source, source_format=source_format)


def jsonl_rows(source: str) -> list[Row]:
    """The documents of fixtures/inputs/good/docs.jsonl, as read from `source`."""
    return [
        doc("doc-1", "https://example.org/rivers",
            "The Danube flows through ten countries before reaching the Black Sea.", source, "jsonl"),
        doc("2", None,
            "Honey never spoils because its low water content and acidity stop bacteria from growing.",
            source, "jsonl"),
        doc(None, "https://example.org/empty", None, source, "jsonl"),
        doc("doc-4", None, "", source, "jsonl"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Formats


@pytest.fixture(scope="module")
def good_folder(spark):
    """The whole `good` folder read once: every format, a nested folder, files to be skipped."""
    return read_documents(spark, [str(GOOD)])


def test_folder_walk_picks_supported_files_and_skips_hidden_ones(good_folder):
    assert good_folder.columns == READER_COLUMNS
    assert all(f.dataType.simpleString() == "string" for f in good_folder.schema.fields)
    sources = {os.path.relpath(r.source, GOOD) for r in good_folder.select("source").distinct().collect()}
    # .hidden.jsonl holds invalid JSON and _SUCCESS is empty: reading either would raise.
    assert sources == {
        "article.html", "bad_bytes.txt", "docs.jsonl", "nested/more.ndjson", "notes.txt", "tiny.html",
    }  # fmt: skip


def test_jsonl_rows(good_folder):
    source = str(GOOD / "docs.jsonl")
    assertDataFrameEqual(good_folder.where(f"source = '{source}'"), jsonl_rows(source))


def test_html_and_txt_rows(good_folder):
    rows = {os.path.basename(r.source): r for r in good_folder.where("source_format in ('html','txt')").collect()}
    article = rows["article.html"]
    assert (article.id, article.url, article.source_format) == (None, None, "html")
    assert "Fresnel lens" in article.text
    assert "tracking" not in article.text and "color: #333" not in article.text  # scripts and styles dropped
    assert rows["tiny.html"].text  # kept even when it is only a snippet: the filters reject it later
    assert rows["notes.txt"].text.startswith("Plain text notes about tea.")
    assert rows["bad_bytes.txt"].text == "Caf\ufffd latin-1 byte then valid UTF-8: café.\n"


def test_limit(spark):
    assert read_documents(spark, [str(GOOD / "docs.jsonl")], limit=2).count() == 2


def test_gzip_jsonl_with_odd_file_name(spark, tmp_path):
    # Spaces, '+' and brackets: Spark URI-encodes paths and expands globs; the source must be exact.
    path = tmp_path / "my docs+[1].jsonl.gz"
    path.write_bytes(gzip.compress(("\ufeff" + (GOOD / "docs.jsonl").read_text()).encode()))
    assertDataFrameEqual(read_documents(spark, [str(path)]), jsonl_rows(str(path)))


def test_parquet_file_and_folder_of_part_files(spark, tmp_path):
    single = tmp_path / "one.parquet"
    pd.DataFrame({"id": [7], "text": ["A parquet document."], "other": [1.5]}).to_parquet(single)
    folder = tmp_path / "parts"
    spark.createDataFrame(
        [("p1", "https://example.org/1", "First part."), ("p2", None, "Second part.")],
        "id string, url string, text string",
    ).coalesce(1).write.parquet(str(folder))  # also writes _SUCCESS and .crc files, which are skipped
    (part,) = folder.glob("part-*.parquet")
    expected = [
        doc("7", None, "A parquet document.", str(single), "parquet"),
        doc("p1", "https://example.org/1", "First part.", str(part), "parquet"),
        doc("p2", None, "Second part.", str(part), "parquet"),
    ]
    assertDataFrameEqual(read_documents(spark, [str(single), str(folder)]), expected)


def test_delta_table_reads_only_current_files(spark, tmp_path):
    table = tmp_path / "table"
    spark.createDataFrame([("new", "New version.")], "id string, text string").write.format("delta").save(str(table))
    # A part file the log does not reference, as an overwrite or VACUUM-pending delete leaves behind.
    pd.DataFrame({"id": ["old"], "text": ["Old version."]}).to_parquet(table / "part-00000-stale.parquet")
    assertDataFrameEqual(read_documents(spark, [str(tmp_path)]), [doc("new", None, "New version.", str(table), "parquet")])


def write_warc(path: Path, truncate_last: bool = False) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    article = (GOOD / "article.html").read_bytes()
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=path.name.endswith(".gz"))
    writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test"}))

    def response(url: str, body: bytes, content_type: str = "text/html; charset=utf-8", status: str = "200 OK"):
        headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))

    request = io.BytesIO(b"GET /a HTTP/1.1\r\n\r\n")
    writer.write_record(writer.create_warc_record("https://example.org/a", "request", payload=request))
    response("https://example.org/a", article)
    response("https://example.org/logo.png", b"\x89PNG....", content_type="image/png")
    response("https://example.org/old", b"<html>Moved</html>", status="301 Moved Permanently")
    response("https://example.org/b", b"<html><body><p>Second page \xff with a bad byte.</p></body></html>")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) - 40] if truncate_last else data)


def test_warc_html_responses_only(spark, tmp_path):
    path = tmp_path / "crawl.warc.gz"
    write_warc(path)
    rows = read_documents(spark, [str(path)]).orderBy("url", "id").collect()
    docs = [r for r in rows if r[READ_ERROR] is None]
    assert [(r.id, r.url, r.source, r.source_format) for r in docs] == [
        (None, "https://example.org/a", str(path), "warc"),
        (None, "https://example.org/b", str(path), "warc"),
    ]
    assert "Fresnel lens" in docs[0].text
    assert "Second page \ufffd with a bad byte." in docs[1].text
    # every other record is a rejection row naming its kind and byte offset
    skipped = [(r.url, r[READ_ERROR].split(" is not a document: ")[1]) for r in rows if r[READ_ERROR] is not None]
    assert skipped == [
        (None, "warcinfo record"),
        ("https://example.org/a", "request record (https://example.org/a)"),
        ("https://example.org/logo.png", "response 200 image/png (https://example.org/logo.png)"),
        ("https://example.org/old", "response 301 text/html (https://example.org/old)"),
    ]
    assert all(r.id == f"{path}@{r[READ_ERROR].split('byte offset ')[1].split(' ')[0]}" for r in rows if r[READ_ERROR])


@pytest.mark.parametrize("name", ["cut.warc", "cut.warc.gz"])
def test_truncated_warc_keeps_records_before_the_damage(tmp_path, name):
    path = tmp_path / name
    write_warc(path, truncate_last=True)
    urls = [r["url"] for r in parse_file_bytes(str(path), path.read_bytes()) if r[READ_ERROR] is None]
    assert urls[0] == "https://example.org/a"  # the damaged last record may or may not be recovered


def test_list_remote_style_folder_with_spark(spark):
    # The listing used for non-local URIs (s3a://...), tried here on a file: URI.
    files = list_with_spark(spark, GOOD.as_uri())
    assert sorted(os.path.basename(f) for f in files) == [
        "article.html", "bad_bytes.txt", "docs.jsonl", "more.ndjson", "notes.txt", "tiny.html",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Inputs a user must fix: the message names the file (and the line)


BAD_LINE_FILES = [
    ("bad_json_line3.jsonl", 3, "not valid JSON"),
    ("missing_text.jsonl", 2, 'no "text" key'),
    ("nonstring_text.jsonl", 4, '"text" is not a string (got int)'),
    ("not_object.jsonl", 1, "not a JSON object"),
]


@pytest.mark.parametrize(
    "name, line, fragment",
    [
        ("empty.jsonl", None, "file is empty"),
        ("blank_lines.jsonl", None, "file is empty"),
        *BAD_LINE_FILES,
        ("not_gzip.jsonl.gz", None, "not gzip-compressed"),
        ("table.csv", None, "unsupported file type; supported extensions: .jsonl.gz"),
    ],
)
def test_bad_fixture_files_with_on_bad_record_fail(spark, name, line, fragment):
    path = str(BAD / name)
    with pytest.raises(InputError) as err:
        read_documents(spark, [path], on_bad_record="fail")
    assert (err.value.path, err.value.line) == (path, line)
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"{path}, line {line}:" if line else f"{path}:")


def test_bad_lines_are_read_error_rows_by_default(spark):
    """The default (`limits.on_bad_record: reject`): one row per bad line, id `<file>:<line>`,
    which ingest rejects as `bad_record`; the good lines of the same files are read."""
    paths = [str(BAD / name) for name, _, _ in BAD_LINE_FILES]
    rows = read_documents(spark, paths).collect()
    errors = {r["id"]: r[READ_ERROR] for r in rows if r[READ_ERROR]}
    assert sorted(errors) == sorted(f"{BAD / name}:{line}" for name, line, _ in BAD_LINE_FILES)
    for name, line, fragment in BAD_LINE_FILES:
        assert errors[f"{BAD / name}:{line}"].startswith(f"bad_record: {BAD / name} line {line}: {fragment}")
    good = [r for r in rows if not r[READ_ERROR]]
    assert good and all(r["source_format"] == "jsonl" and r["source"] in paths for r in good)


def test_nonexistent_path(spark, tmp_path):
    with pytest.raises(InputError, match="no such file or folder") as err:
        read_documents(spark, [str(tmp_path / "missing.jsonl")])
    assert err.value.path == str(tmp_path / "missing.jsonl")


def test_folder_without_supported_files(spark, tmp_path):
    (tmp_path / "notes.docx").write_bytes(b"PK not an input")
    with pytest.raises(InputError, match="folder holds no supported input file"):
        read_documents(spark, [str(tmp_path)])


def test_hidden_file_named_explicitly(spark, tmp_path):
    path = tmp_path / "_docs.jsonl"
    shutil.copy(GOOD / "docs.jsonl", path)
    with pytest.raises(InputError, match="ignored by Spark; rename the file"):
        read_documents(spark, [str(path)])


def test_bad_line_is_found_in_a_gzip_file_among_others(spark, tmp_path):
    path = tmp_path / "second.jsonl.gz"
    path.write_bytes(gzip.compress((BAD / "bad_json_line3.jsonl").read_bytes()))
    with pytest.raises(InputError) as err:
        read_documents(spark, [str(GOOD / "docs.jsonl"), str(path)], on_bad_record="fail")
    assert (err.value.path, err.value.line) == (str(path), 3)
    rows = read_documents(spark, [str(GOOD / "docs.jsonl"), str(path)]).collect()
    assert [r["id"] for r in rows if r[READ_ERROR]] == [f"{path}:3"]
    assert len([r for r in rows if r["source"] == str(GOOD / "docs.jsonl")]) == len(jsonl_rows(""))


def test_truncated_gzip(spark, tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress((GOOD / "docs.jsonl").read_bytes() * 50)[:-30])
    with pytest.raises(InputError, match="corrupt gzip data") as err:
        read_documents(spark, [str(path)])
    assert err.value.path == str(path)


def test_parquet_without_text_column(spark, tmp_path):
    path = tmp_path / "notext.parquet"
    pd.DataFrame({"id": ["a"], "body": ["wrong column name"]}).to_parquet(path)
    with pytest.raises(InputError, match=r'no "text" column \(columns: \[.id., .body.\]\)') as err:
        read_documents(spark, [str(path)])
    assert err.value.path == str(path)


def test_parquet_text_not_a_string(spark, tmp_path):
    path = tmp_path / "numbers.parquet"
    pd.DataFrame({"text": [1, 2]}).to_parquet(path)
    with pytest.raises(InputError, match='"text" must be a string, found int64'):
        read_documents(spark, [str(path)])


def test_file_named_parquet_that_is_not_parquet(spark, tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("id,text\n1,hello\n")
    with pytest.raises(InputError, match="not a Parquet file"):
        read_documents(spark, [str(path)])


def test_file_named_warc_that_is_not_warc(spark, tmp_path):
    path = tmp_path / "fake.warc"
    path.write_text("<html><body>Just a page saved with the wrong name.</body></html>")
    with pytest.raises(InputError, match="not a valid WARC file") as err:
        read_documents(spark, [str(path)])
    assert err.value.path == str(path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(spark, tmp_path):
    path = tmp_path / "locked.jsonl"
    shutil.copy(GOOD / "docs.jsonl", path)
    path.chmod(0)
    with pytest.raises(InputError, match="cannot read file"):
        read_documents(spark, [str(path)])


# ---------------------------------------------------------------------------------------------
# Pure helpers (no Spark)


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"text": "ok"}', None),
        ('{"text": null}', None),
        ('{"text": ""}', None),
        ("   ", None),
        ('{"text": 1.5}', '"text" is not a string (got float)'),
        ('{"text": {"a": 1}}', '"text" is not a string (got dict)'),
        ('{"id": 1}', 'no "text" key'),
        ("[1, 2]", "not a JSON object (got list)"),
        ('{"text": NaN}', "not valid JSON"),
        ('{"text": "a", "text": "b"}', "not valid JSON (duplicate key(s) ['text'])"),
    ],
)
def test_jsonl_line_problem(line, problem):
    found = jsonl_line_problem(line)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


def test_strip_tags_drops_scripts_and_styles():
    html = "<html><head><title>T</title><style>p{}</style></head><body><p>One &amp;\n two</p><script>x()</script></body></html>"
    assert strip_tags(html) == "One &\ntwo"


def test_email_files_and_skipped_files_are_reported(spark, tmp_path, caplog):
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "note.eml").write_bytes(
        b"From: Ann <ann@example.com>\r\nTo: team@example.com\r\nSubject: Boiler works\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe boiler is replaced on Tuesday.\r\n"
    )
    (folder / "picture.png").write_bytes(b"\x89PNG")
    with caplog.at_level("WARNING", logger="webscale_rl.readers"):
        rows = read_documents(spark, [str(folder)]).collect()
    assert [(r["source_format"], r["text"]) for r in rows] == [("eml", "Boiler works\n\nThe boiler is replaced on Tuesday.")]
    assert "ann@example.com" not in rows[0]["text"]
    assert "skipped 1 file(s) of unsupported type" in caplog.text and "picture.png" in caplog.text


# --------------------------------------------------------------------------------------------
# Charsets of untrusted bytes


def test_decode_bytes_uses_bom_then_declared_charset_then_utf8():
    from webscale_rl.readers import charset_of, decode_bytes

    assert charset_of("text/html; charset=Shift_JIS") == "Shift_JIS" and charset_of("text/html") is None
    assert decode_bytes("café".encode("cp1252"), "iso-8859-1") == "café"  # WHATWG: latin-1 label = windows-1252
    assert decode_bytes("富士山".encode("shift_jis"), "Shift_JIS") == "富士山"
    meta = '<meta charset="windows-1251"><p>Москва</p>'.encode("cp1251")
    assert "Москва" in decode_bytes(meta, html=True)
    assert decode_bytes(b"\xef\xbb\xbfhello") == "hello"
    assert decode_bytes("hi".encode("utf-16"), None) == "hi"
    # A wrong or unknown declaration falls back to UTF-8; undecodable bytes become U+FFFD.
    assert decode_bytes("naïve".encode(), "no-such-charset") == "naïve"
    assert decode_bytes(b"ok \xff\xfe\xfa", "utf-8") == "ok \ufffd\ufffd\ufffd"


def test_decode_bytes_cases_the_libraries_get_right():
    from webscale_rl.readers import charset_of, decode_bytes

    # charset_normalizer knows the UTF-32 marks (a table of UTF-8/16 marks read this as UTF-16 with NULs).
    assert decode_bytes("hi".encode("utf-32")) == "hi"
    # lxml's HTML parser finds the declaration: a <meta> inside a comment or a script is not one.
    commented = '<!-- <meta charset="koi8-r"> --><p>café</p>'.encode()
    assert decode_bytes(commented, html=True).endswith("<p>café</p>")
    scripted = "<script>var s = '<meta charset=koi8-r>';</script><p>café</p>".encode()
    assert decode_bytes(scripted, html=True).endswith("<p>café</p>")
    # The Content-Type header is parsed as MIME parameters, quotes and all.
    assert charset_of('text/html; foo="charset=koi8-r"') is None
    assert charset_of("text/html; charset='koi8-r'") == "koi8-r"
    # WHATWG: every label Python resolves to latin-1 or ascii means windows-1252.
    assert decode_bytes("“quoted” €".encode("cp1252"), "l1") == "“quoted” €"
