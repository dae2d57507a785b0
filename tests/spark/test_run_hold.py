"""One run per warehouse: the hold is a Delta row; a second run is refused naming the holder and how
to clear it; a hold whose process is gone (a killed run on this host) is taken over; `release`
frees it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.support.cli_runs import run_cli
from webscale_rl.run_hold import Holder, WarehouseHeld, _claim, holder, holding, release
from webscale_rl.warehouse import Warehouse


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has it now (pids are not reused this fast)


def test_a_second_run_is_refused_while_the_first_holds(spark, tmp_path):
    wh = Warehouse(spark, str(tmp_path / "wh"))
    with holding(wh, "run-1") as first:
        assert holder(wh) == first
        with pytest.raises(WarehouseHeld) as refused:
            with holding(wh, "run-2"):
                pass
        message = str(refused.value)
        assert message.startswith(f"warehouse {wh.root} is held by run run-1 (pid ")
        assert f"webscale-rl unlock --warehouse {wh.root}" in message and "\n" not in message
    assert holder(wh) is None  # let go at the end of the block
    with holding(wh, "run-3"):
        assert holder(wh).run_id == "run-3"


def test_a_dead_holder_on_this_host_is_taken_over_and_others_are_not(spark, tmp_path):
    wh = Warehouse(spark, str(tmp_path / "wh"))
    _claim(wh, Holder("killed", socket.gethostname(), dead_pid(), "me", "2026-01-01T00:00:00+00:00"), None)
    lines: list[str] = []
    with holding(wh, "next", log=lines.append):
        assert holder(wh).run_id == "next"
    assert lines and "took over the hold of run killed" in lines[0]

    _claim(wh, Holder("elsewhere", "another-host", dead_pid(), "me", "2026-01-01T00:00:00+00:00"), None)
    with pytest.raises(WarehouseHeld, match="held by run elsewhere"):
        with holding(wh, "next2"):
            pass
    assert release(wh).run_id == "elsewhere"  # what `webscale-rl unlock` does
    assert holder(wh) is None


@pytest.mark.spark_processes
def test_the_cli_refuses_a_held_warehouse_in_one_line_and_unlock_clears_it(spark, tmp_path):
    wh = Warehouse(spark, str(tmp_path / "wh"))
    _claim(wh, Holder("other-run", socket.gethostname(), os.getpid(), "me", "2026-01-01T00:00:00+00:00"), None)  # alive: this test
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "one document"}\n')
    code, log = run_cli(["run", "--input", str(docs), "--warehouse", wh.root, "--until", "ingest", "--set", "mlflow.enabled=false"])
    errors = [ln for ln in log.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1, log[-3000:]
    assert errors[0].startswith(f"error: warehouse {wh.root} is held by run other-run (pid {os.getpid()} on ")
    assert not wh.exists("documents")  # refused before any stage
    code, log = run_cli(["unlock", "--warehouse", wh.root])
    assert code == 0 and "cleared the hold of run other-run" in log, log[-3000:]
    assert holder(wh) is None
