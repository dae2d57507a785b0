"""Run by spark-submit (tests/spark/test_submitted_session.py): take the launcher's session through
webscale_rl.spark.get_spark and use Delta SQL on it; prints RESULT <json> or ERROR <message>."""

from __future__ import annotations

import json
import sys

from webscale_rl.spark import EnvironmentProblem, get_spark


def main(table: str) -> None:
    try:
        spark = get_spark()
    except EnvironmentProblem as exc:
        print(f"ERROR {exc}", flush=True)
        return
    spark.range(3).write.format("delta").save(table)
    spark.range(2, 5).createOrReplaceTempView("updates")
    spark.sql(f"MERGE INTO delta.`{table}` t USING updates u ON t.id = u.id WHEN NOT MATCHED THEN INSERT *")
    keys = ("spark.sql.catalog.spark_catalog", "spark.sql.execution.arrow.maxBytesPerBatch", "spark.master")
    out = {key: spark.conf.get(key, None) for key in keys}
    out["rows"] = spark.sql(f"SELECT count(*) AS n FROM delta.`{table}`").first()["n"]
    out["operations"] = [r["operation"] for r in spark.sql(f"DESCRIBE HISTORY delta.`{table}`").orderBy("version").collect()]
    print("RESULT " + json.dumps(out), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
