"""Running `webscale-rl` as a user types it: a child process in its own process group, its output
captured line by line, optionally SIGKILLed (the whole group: driver, JVM, Python workers) once a
line matches. Used by the crash and object-store tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

from tests.support.paths import REPO


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OPENAI_API_KEY": "sk-test", "WEBSCALE_RL_DRIVER_MEMORY": "1g", **extra}
    if "WEBSCALE_RL_KILL_AT" not in extra:
        env.pop("WEBSCALE_RL_KILL_AT", None)
    return env


def run_cli(args: list[str], *, kill_on_line: str | None = None, delay_s: float = 0.0, kill_at: str | None = None, timeout_s: float = 600) -> tuple[int, str]:
    """`python -m webscale_rl.cli ARGS`; SIGKILL its group once a line matches the regex
    `kill_on_line` (after `delay_s`), or let WEBSCALE_RL_KILL_AT=`kill_at` kill it. → (code, log)."""
    env = cli_env(**({"WEBSCALE_RL_KILL_AT": kill_at} if kill_at else {}))
    cmd = [sys.executable, "-m", "webscale_rl.cli", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    killer = None
    # The deadline holds while the output is read: a run that hangs (or a child that keeps the pipe
    # open) is killed and reported, instead of blocking the suite.
    timed_out = threading.Event()
    watchdog = threading.Timer(timeout_s, lambda: (timed_out.set(), _kill_group(proc.pid)))
    watchdog.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if kill_on_line and killer is None and re.search(kill_on_line, line):
                killer = threading.Timer(delay_s, _kill_group, (proc.pid,))
                killer.start()
        code = proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        if killer:
            killer.join()
        _kill_group(proc.pid)  # whatever survived the driver (the JVM, Python workers) goes too
    if timed_out.is_set():  # not the kill a test asked for: fail, with what the run printed last
        raise TimeoutError(f"`webscale-rl {' '.join(args[:1])}` still ran after {timeout_s:.0f} s and was killed; its last output:\n" + "".join(lines[-40:]))
    return code, "".join(lines)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def set_args(overrides: list[str]) -> list[str]:
    """`--set k=v` for each override."""
    return [arg for o in overrides for arg in ("--set", o)]
