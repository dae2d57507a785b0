"""The executor side of the WARC/WET data source without Spark: a WET object in an S3 bucket (a
local moto server) is opened with the session's S3A settings and streamed into reader rows."""

from __future__ import annotations

import json

from tests.support.common_crawl import write_wet
from tests.support.s3_server import s3_server  # noqa: F401  (fixture)
from webscale_rl.readers.records import RecordFilesReader, arrow_batches, open_input, s3_options, streamable


class _Conf:
    def __init__(self, values: dict[str, str]):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


class _Session:  # what s3_options reads of a SparkSession
    def __init__(self, values: dict[str, str]):
        self.conf = _Conf(values)


def test_s3_options_follow_the_s3a_settings_and_hold_no_secret():
    session = _Session(
        {
            "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
            "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
            "spark.hadoop.fs.s3a.secret.key": "sk-not-to-be-copied",
        }
    )
    assert s3_options(session) == {"endpoint_override": "127.0.0.1:9000", "scheme": "http", "region": "eu-west-1"}
    no_scheme = _Session({"spark.hadoop.fs.s3a.endpoint": "minio:9000", "spark.hadoop.fs.s3a.connection.ssl.enabled": "false"})
    assert s3_options(no_scheme) == {"endpoint_override": "minio:9000", "scheme": "http"}
    assert s3_options(_Session({})) == {}


def test_which_stores_are_streamed():
    paths = ("/data/x.warc.gz", "file:/data/x.warc.gz", "s3a://b/x.warc.gz", "S3://b/x.wet.gz", "abfss://c@a/x.warc.gz", "dbfs:/x.warc.gz")
    assert [streamable(p) for p in paths] == [True, True, True, True, False, False]


def test_wet_object_in_s3_is_streamed(s3_server, tmp_path):  # noqa: F811
    local = tmp_path / "crawl.warc.wet.gz"
    offsets = write_wet(local, [("https://example.org/a", "First page text."), ("https://example.org/b", "Second page text.")])
    s3_server.client().upload_file(str(local), s3_server.bucket, "cc/crawl.warc.wet.gz")
    uri = s3_server.uri("cc/crawl.warc.wet.gz")
    s3 = s3_options(_Session(s3_server.spark_conf))
    with open_input(uri, s3) as fh:
        assert fh.read(2) == b"\x1f\x8b"
    reader = RecordFilesReader({"files": f'["{uri}"]', "s3": json.dumps(s3)})
    rows = [row for batch in arrow_batches(reader.file_rows(uri)) for row in batch.to_pylist()]
    assert [(r["id"], r["url"], r["text"], r["source"], r["source_format"], r["_read_error"]) for r in rows] == [
        (f"{uri}@0", None, None, uri, "wet", "warc_skipped: record at byte offset 0 is not a document: warcinfo record"),
        (None, "https://example.org/a", "First page text.", uri, "wet", None),
        (None, "https://example.org/b", "Second page text.", uri, "wet", None),
    ]
    assert offsets[0] == 0


def test_a_missing_object_is_a_bad_record_row(s3_server):  # noqa: F811
    uri = s3_server.uri("cc/missing.warc.gz")
    reader = RecordFilesReader({"files": f'["{uri}"]', "s3": json.dumps(s3_options(_Session(s3_server.spark_conf)))})
    [row] = list(reader.file_rows(uri))
    assert row["id"] == uri and row["text"] is None
    assert row["_read_error"].startswith(f"bad_record: {uri}: could not be opened (")
