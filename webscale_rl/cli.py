"""The command line. Knows about the pipeline; nothing else knows about the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

from . import STAGES, __version__
from .config import ConfigError, config_json_schema, load_config, packaged_config_names

EXIT_USAGE = 2  # bad input, bad config: the user's to fix
EXIT_FAILURE = 1  # the run failed (validation gate, LLM endpoint, environment)
EXIT_BUDGET = 3  # the run stopped at its budget (llm.max_cost_usd): what is done landed, run again to go on
CONFIG_HELP = f"a packaged config by name ({', '.join(packaged_config_names())}) or a YAML file (default: local)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webscale-rl",
        description="Turn web documents into verifiable QA pairs for RL (Webscale-RL pipeline on Spark + Delta).",
    )
    parser.add_argument("--version", action="version", version=f"webscale-rl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the pipeline on input documents",
        description="Run ingest → filter → dedup → llm_filter → profile → generate → check; every stage lands a Delta table.",
    )
    add_run_arguments(run)

    estimate = sub.add_parser(
        "estimate",
        help="what a run on the input would call, use and cost (measured on a sample), before it pays",
        description="Runs ingest..dedup on the input (or its first --sample documents) and the LLM stages on --llm-sample "
        "of the surviving documents, really calling the configured endpoint, in scratch warehouses (never yours); "
        "prints expected calls, tokens and cost per LLM stage with a 95%% range.",
    )
    estimate.add_argument("--input", nargs="+", required=True, metavar="PATH", help="the input a run would read")
    estimate.add_argument("--config", metavar="NAME|FILE", help=CONFIG_HELP)
    estimate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    estimate.add_argument("--sample", type=int, metavar="N", help="run the cheap stages on the first N input documents only (default: all)")
    estimate.add_argument("--llm-sample", type=int, default=20, metavar="M", help="documents the LLM stages are measured on (default 20)")
    estimate.add_argument("--scratch", metavar="URI", help="where the scratch warehouses go (default: a temporary folder here, removed after)")
    add_spark_conf_argument(estimate)
    add_remote_argument(estimate)

    export = sub.add_parser("export", help="export the final QA table", description="Export the `qa` table of a warehouse.")
    export.add_argument("--warehouse", required=True, help="warehouse directory of a previous run")
    export.add_argument(
        "--format",
        required=True,
        choices=["parquet", "jsonl", "verl", "trl"],
        help="parquet: a Spark folder; jsonl: one file; verl / trl: <out>/train.parquet (+ validation.parquet)",
    )
    export.add_argument("--out", required=True, help="output path (a folder for parquet, verl and trl)")
    export.add_argument("--val-fraction", type=float, default=0.0, help="share of pairs for a validation split, fixed per qa_id (default 0: no split)")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--run-id", help="export only the pairs this run added (default: the whole table)")
    which.add_argument("--latest-run", action="store_true", help="export only the pairs the latest run added")
    which.add_argument("--all-runs", action="store_true", help="the whole table, every pair once (the default)")
    add_warehouse_command_arguments(export, "warehouse.catalog=main")

    decontam = sub.add_parser(
        "decontaminate",
        help="check the pairs already in `qa` against eval sets they have not been checked against",
        description="Only the decontaminate stage's catch-up: every pair in `qa` not yet checked against a given eval set "
        "(by name and content hash: a changed file is a new set) is checked; contaminated pairs move to `rejections` "
        "(contaminated:<set>), clean ones record the set in their decontam_checked column. A second call changes nothing.",
    )
    decontam.add_argument("--warehouse", required=True, help="warehouse of a previous run")
    decontam.add_argument(
        "--eval-set",
        action="append",
        required=True,
        metavar="PATH",
        help="evaluation set (JSONL/Parquet/CSV with a question column; name=PATH to name it; repeatable)",
    )
    add_warehouse_command_arguments(decontam, "decontam.ngram=8")
    why = sub.add_parser(
        "explain",
        help="where a document or a QA pair went: each stage's verdict and reason, prompt versions, runs and table versions",
        description="Reads the stage tables, rejections and _lineage of a warehouse (writes nothing).",
    )
    why.add_argument("--warehouse", required=True, help="the warehouse of earlier runs")
    item = why.add_mutually_exclusive_group(required=True)
    item.add_argument("--doc-id", help="a document's doc_id: its path through every stage and its QA pairs")
    item.add_argument("--qa-id", help="a QA pair's qa_id: its document's path and the pair's")
    why.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_warehouse_command_arguments(why, "warehouse.catalog=main")

    unlock = sub.add_parser(
        "unlock",
        help="clear the hold of a run that was killed elsewhere (one run per warehouse)",
        description="A run holds its warehouse until it ends; a run killed on another host leaves its hold behind. Clear it only when no run is going on.",
    )
    unlock.add_argument("--warehouse", required=True, help="the warehouse whose hold to clear")
    add_warehouse_command_arguments(unlock, "warehouse.catalog=main")

    setup = sub.add_parser(
        "setup",
        help="fetch and build what runs need (Delta jars, model weights, llama-server) into the user cache",
        description="Idempotent: a warm cache downloads and builds nothing.",
    )
    setup.add_argument("--config", metavar="NAME|FILE", help=CONFIG_HELP)
    setup.add_argument("--no-llm", action="store_true", help="skip the embedded model and server")

    demo = sub.add_parser("demo", help="fetch a small real sample and run the whole pipeline on it with the embedded LLM")
    demo.add_argument("--warehouse", default="demo-warehouse", help="where the demo's tables go (default ./demo-warehouse)")
    demo.add_argument("--docs", type=int, default=8, help="documents in the sample (default 8)")
    demo.add_argument("--config", metavar="NAME|FILE", help=CONFIG_HELP)
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    server = sub.add_parser(
        "connect-server",
        help="run a local Spark Connect server with Delta Lake (for trying --remote / SPARK_REMOTE) until Ctrl-C",
        description="A Spark Connect server on 127.0.0.1 from pyspark's own jars, with the cached Delta jars; "
        "prints the SPARK_REMOTE to use. It shares this machine's disk, so a local --warehouse works.",
    )
    server.add_argument("--port", type=int, default=15002, help="port on 127.0.0.1 (default 15002)")
    server.add_argument("--s3a", action="store_true", help="also load hadoop-aws and its AWS SDK bundle (for s3a:// paths)")
    server.add_argument("--master", default="local[*]", help="the server's Spark master (default local[*])")
    server.add_argument("--driver-memory", default="4g", help="the server JVM's heap (default 4g)")
    server.add_argument(
        "--conf", dest="spark_conf", action="append", default=[], metavar="KEY=VALUE", help="a server setting (repeatable), e.g. spark.sql.shuffle.partitions=4"
    )

    sub.add_parser(
        "config-schema",
        help="print the JSON Schema of the YAML config (for editors)",
        description="e.g. webscale-rl config-schema > webscale-rl.schema.json, then point the editor's YAML schema at it.",
    )
    return parser


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--input", nargs="+", default=[], metavar="PATH", help="JSONL(.gz), Parquet, WARC(.gz), .txt/.html files or folders (needed when ingest runs)"
    )
    run.add_argument("--warehouse", required=True, metavar="DIR", help="directory holding the Delta tables")
    run.add_argument("--config", metavar="NAME|FILE", help=CONFIG_HELP)
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. llm.max_concurrency=8 (repeatable)"
    )
    run.add_argument(
        "--eval-set",
        action="append",
        default=[],
        metavar="PATH",
        help="evaluation set to decontaminate against (JSONL/Parquet/CSV with a question column; name=PATH to name it; repeatable)",
    )
    run.add_argument(
        "--from", dest="start", choices=STAGES, help="start at this stage (it reads the earlier stage's table); with --until the same stage: one stage"
    )
    run.add_argument("--until", choices=STAGES, help="stop after this stage")
    run.add_argument("--limit", type=int, metavar="N", help="read at most N documents")
    run.add_argument(
        "--max-cost-usd",
        type=float,
        metavar="X",
        help="stop the LLM stages before this run's spend could pass X dollars (at llm.prices); what is done lands, "
        "the rest is the next run's work; exit code 3; sets llm.max_cost_usd",
    )
    run.add_argument(
        "--on-bad-record",
        choices=("reject", "fail"),
        help="a bad input record (e.g. a JSONL line that is not a JSON object): reject it into 'rejections' "
        "and go on (default), or stop the run naming file and line; sets limits.on_bad_record",
    )
    add_spark_conf_argument(run)
    add_remote_argument(run)


def add_warehouse_command_arguments(parser: argparse.ArgumentParser, set_example: str) -> None:
    """What every command on an existing warehouse takes: --config, --set, --conf and --remote."""
    parser.add_argument("--config", metavar="NAME|FILE", help=CONFIG_HELP)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=f"override a config key, e.g. {set_example}")
    add_spark_conf_argument(parser)
    add_remote_argument(parser)


def add_spark_conf_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conf",
        dest="spark_conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, as spark-submit takes it (repeatable), e.g. spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000; "
        "over Spark Connect a session setting (launch-only ones are refused)",
    )


def add_remote_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--remote",
        metavar="sc://HOST:PORT",
        help="run over Spark Connect on this server (sets SPARK_REMOTE; default: SPARK_REMOTE if set, else a local session)",
    )


def use_remote(args) -> None:
    """--remote wins over SPARK_REMOTE; pyspark and webscale_rl.spark.get_spark both read the variable."""
    if getattr(args, "remote", None):
        if not args.remote.startswith("sc://"):
            raise ConfigError(f"--remote expects a Spark Connect URL like sc://127.0.0.1:15002, got {args.remote!r}")
        os.environ["SPARK_REMOTE"] = args.remote


def entry() -> None:
    """The console script and the Databricks wheel task's entry point: a wheel task calls the
    function and ignores what it returns, so the exit code must leave through SystemExit."""
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "decontaminate":
            return cmd_decontaminate(args)
        if args.command == "explain":
            return cmd_explain(args)
        if args.command == "estimate":
            return cmd_estimate(args)
        if args.command == "unlock":
            return cmd_unlock(args)
        if args.command == "setup":
            return cmd_setup(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "connect-server":
            return cmd_connect_server(args)
        if args.command == "config-schema":
            print(json.dumps(config_json_schema(), indent=2))
            return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # turned into one clear line; tracebacks only for real bugs
        code, message = explain(exc)
        if code is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return code
    return EXIT_USAGE


def explain(exc: Exception) -> tuple[int | None, str]:
    if isinstance(exc, ConfigError):  # before the imports below: a config error needs no Spark
        return EXIT_USAGE, str(exc)
    # Imported here so `webscale-rl --help` and config errors do not load Spark (no import circle).
    from .llm.engine import FatalLLMError
    from .pipeline import PipelineError
    from .readers import InputError
    from .spark import EnvironmentProblem

    if isinstance(exc, InputError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, (EnvironmentProblem, PipelineError, FatalLLMError, FileNotFoundError)):
        return EXIT_FAILURE, str(exc)
    text = str(exc)
    # Errors raised inside Spark tasks arrive wrapped; keep our own message, drop the JVM trace.
    if "FatalLLMError" in text:
        line = next((ln for ln in text.splitlines() if "FatalLLMError" in ln), text)
        return EXIT_FAILURE, line.split("FatalLLMError:", 1)[-1].strip()
    if type(exc).__name__ == "RuntimeError" and "local LLM" in text:
        return EXIT_FAILURE, text
    return None, text


def run_overrides(args) -> list[str]:
    """The config overrides of `run`: `--set` pairs, then the options that set one key."""
    options = [f"limits.on_bad_record={args.on_bad_record}"] if args.on_bad_record else []
    if args.max_cost_usd is not None:
        options.append(f"llm.max_cost_usd={args.max_cost_usd:.10f}")  # not 1e-05: YAML reads that as a string
    return [*args.overrides, *options]


def cmd_run(args) -> int:
    cfg = load_config(args.config, run_overrides(args))  # a config error is reported before Spark loads
    cfg.decontam.eval_sets = [*cfg.decontam.eval_sets, *args.eval_set]
    from .pipeline import run_pipeline
    from .spark import apply_spark_conf

    apply_spark_conf(cfg, args.spark_conf)
    use_remote(args)

    summary = run_pipeline(args.input, args.warehouse, cfg, until=args.until, start=args.start, limit=args.limit)
    print_report(summary)
    return run_exit_code(summary)


def run_exit_code(summary) -> int:
    """0, or EXIT_BUDGET with one line on stderr when the run stopped at its budget."""
    if summary.budget_stop is None:
        return 0
    print(f"stopped: {summary.budget_stop.line()}", file=sys.stderr)
    return EXIT_BUDGET


def print_report(summary, n_examples: int = 3) -> None:
    wh = summary.warehouse
    print("\n=== funnel ===")
    for s in summary.stages:
        print(f"  {s.stage:<13} in {s.rows_in:>6}  kept {s.kept:>6}  rejected {s.rejected:>6}  ({s.elapsed_s:.1f}s)")
    if summary.qa_report:
        from .quality.qa_report import format_qa_report

        print("\n=== QA quality report ===")
        print("\n".join(format_qa_report(summary.qa_report)))
    if summary.final_table == "qa" and summary.budget_stop is None:
        from pyspark.sql import functions as F

        rows = (
            wh.read("qa")
            .filter(F.col("run_id") == summary.run_id)
            .orderBy("qa_id")
            .select("domain", "persona", "question", "answer")
            .limit(n_examples)
            .collect()
        )
        print(f"\n=== {len(rows)} QA pair(s) from this run ===" if rows else "\n=== no QA pair survived this run ===")
        for r in rows:
            print(f"- [{r['domain']}] persona: {r['persona']}")
            print(textwrap.indent(textwrap.fill(f"Q: {r['question']}", 100), "    "))
            print(f"    A: {r['answer']}")
    print("\n=== where things are ===")
    print(f"  Delta tables : {wh}/<table> ({', '.join(sorted({s.table for s in summary.stages} | {'rejections'}))})")
    print(f"  run id       : {summary.run_id} (column run_id in every table)")
    if summary.validation is not None:
        v = summary.validation
        print(f"  validation   : {v.summary()} → {v.results_path}")
        docs = getattr(v, "data_docs", None)
        if docs:
            print(f"  data docs    : {docs}")
    report = summary.mlflow
    if report is not None and getattr(report, "run_id", None):
        print(f"  MLflow run   : {report.run_id} in {report.tracking_uri}")
        print(f"                 {report.ui_hint}")


def cmd_decontaminate(args) -> int:
    cfg = load_config(args.config, args.overrides)
    cfg.decontam.eval_sets = [*cfg.decontam.eval_sets, *args.eval_set]
    from .pipeline import decontaminate_warehouse
    from .spark import apply_spark_conf

    apply_spark_conf(cfg, args.spark_conf)
    use_remote(args)
    decontaminate_warehouse(args.warehouse, cfg)  # prints what it checked and moved
    return 0


def cmd_explain(args) -> int:
    from .explain import explain as explain_item
    from .explain import format_text
    from .spark import apply_spark_conf, get_spark
    from .warehouse import Warehouse

    cfg = apply_spark_conf(load_config(args.config, args.overrides), args.spark_conf)
    use_remote(args)
    spark = get_spark(cfg, storage_uris=[args.warehouse])
    wh = Warehouse.open(spark, args.warehouse, cfg.warehouse.catalog, cfg.warehouse.schema)
    found = explain_item(wh, doc_id=args.doc_id, qa_id=args.qa_id)
    print(json.dumps(found.to_json(), indent=2, default=str) if args.json else format_text(found))
    return 0


def cmd_estimate(args) -> int:
    cfg = load_config(args.config, args.overrides)
    for flag, value in (("--sample", args.sample), ("--llm-sample", args.llm_sample)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    from .estimate import estimate_run
    from .spark import apply_spark_conf

    apply_spark_conf(cfg, args.spark_conf)
    use_remote(args)
    result = estimate_run(args.input, cfg, sample=args.sample, llm_sample=args.llm_sample, scratch=args.scratch)
    print("\n" + "\n".join(result.lines()))
    return 0


def cmd_unlock(args) -> int:
    from .run_hold import release
    from .spark import apply_spark_conf, get_spark
    from .warehouse import Warehouse

    cfg = apply_spark_conf(load_config(args.config, args.overrides), args.spark_conf)
    use_remote(args)
    spark = get_spark(cfg, storage_uris=[args.warehouse])
    removed = release(Warehouse.open(spark, args.warehouse, cfg.warehouse.catalog, cfg.warehouse.schema))
    print(f"cleared the hold of {removed.describe()}" if removed else f"warehouse {args.warehouse} was not held")
    return 0


def cmd_export(args) -> int:
    from pyspark.sql import functions as F

    from . import export
    from .config import load_config
    from .spark import apply_spark_conf, get_spark
    from .warehouse import Warehouse

    cfg = apply_spark_conf(load_config(args.config, args.overrides), args.spark_conf)
    use_remote(args)
    spark = get_spark(cfg, storage_uris=[args.warehouse])
    qa = Warehouse.open(spark, args.warehouse, cfg.warehouse.catalog, cfg.warehouse.schema).read("qa")
    # Incremental runs add to one table, each pair once: the data set is the whole table.
    if args.run_id or args.latest_run:
        run_id = args.run_id or qa.agg(F.max("run_id")).collect()[0][0]
        if run_id is None:
            print("error: the qa table is empty", file=sys.stderr)
            return EXIT_FAILURE
        qa = qa.filter(F.col("run_id") == run_id)
    qa = qa.orderBy("run_id", "qa_id")
    if args.val_fraction:
        qa = export.with_split(qa, args.val_fraction)
    out = Path(args.out)
    if args.format == "parquet":
        export.released(qa).write.mode("overwrite").parquet(str(out))
        written = {str(out): spark.read.parquet(str(out)).count()}
    elif args.format == "jsonl":
        written = {str(out): export.write_jsonl(export.released(qa), out)}
    else:
        shaped = export.to_verl(qa) if args.format == "verl" else export.to_trl(qa)
        splits = ["train", "validation"] if args.val_fraction else [None]
        written = {}
        for split in splits:
            part = shaped if split is None else shaped.filter(F.col("split") == split).drop("split")
            path = out / f"{split or 'train'}.parquet"
            written[str(path)] = export.write_single_parquet(part, path)
    for path, n in written.items():
        print(f"exported {n} QA pair(s) to {path} ({args.format})")
    return 0


def cmd_setup(args) -> int:
    from .spark import resolve_delta_jars

    cfg = load_config(args.config)
    jars = resolve_delta_jars()
    print(f"Delta jars: {len(jars)} in {jars[0].parent}")
    if not args.no_llm and cfg.llm.provider == "local":
        from .assets import setup_all

        paths = setup_all(cfg.local_llm.model)
        for name, path in paths.items():
            print(f"{name}: {path}")
    return 0


def cmd_connect_server(args) -> int:
    from .connect_server import serve
    from .spark import parse_spark_conf

    conf = parse_spark_conf(args.spark_conf)
    return serve(args.port, args.s3a, conf, args.master, args.driver_memory, log=lambda line: print(line, flush=True))


# The demo's few documents all stay in the embedded server's prompt cache from one LLM stage to
# the next, so every stage's calls about a document share it (docs/performance.md#prompt-layout).
DEMO_DEFAULTS = ("llm.prompt_layout=document_first",)


def cmd_demo(args) -> int:
    cfg = load_config(args.config, [*DEMO_DEFAULTS, *args.overrides])  # a config error is reported before Spark loads
    from .pipeline import run_pipeline
    from .samples import fetch_sample

    warehouse = Path(args.warehouse)
    sample = fetch_sample(warehouse.parent / (warehouse.name + "-input"), n_docs=args.docs)
    print(f"demo sample: {sample}")
    summary = run_pipeline([str(sample)], warehouse, cfg)
    print_report(summary)
    if summary.budget_stop is not None:
        return run_exit_code(summary)
    print(f"\nExport: webscale-rl export --warehouse {warehouse} --format jsonl --out qa.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
