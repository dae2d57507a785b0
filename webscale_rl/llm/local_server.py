"""The zero-key default LLM: llama.cpp's `llama-server` on 127.0.0.1, started and stopped by the job.

`llama-server` speaks the OpenAI API (`/v1/chat/completions`, `response_format` with a JSON schema is
turned into a grammar, so the output always parses), serves `parallel` slots with continuous batching,
and answers `GET /health` with 200 once the model is loaded.

    with LocalLLMServer(cfg.local_llm) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="none")
        client.chat.completions.create(model=srv.model_name, ...)

The server runs in its own process group and is stopped by `stop()`, the context manager, `atexit`,
and SIGTERM (turned into `SystemExit` so `with`/`finally` blocks run). A server orphaned by a parent
that was SIGKILLed is reaped by the next `start()` on the machine (pid files under cache_dir()/run).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..assets import cpu_flags_line, ensure_llama_server, ensure_model
from ..config import LocalLLMConfig, cache_dir

Log = Callable[[str], None]

MODEL_ALIAS = "local"
# Flags beyond the ones taken from LocalLLMConfig, measured on 2 cores with the 0.5B model:
# prompt ≈ 225 tok/s, generation ≈ 45 tok/s; 2 slots interleave (continuous batching) but don't raise
# throughput over 1 on 2 cores; --threads below the core count halves speed; flash attention "auto"
# (the default, left alone) = "on", "off" is ~10-20 % slower on prompts; --cache-reuse, --ubatch-size
# and --load-mode none made no measurable difference.
EXTRA_FLAGS = (
    "--no-webui",  # no static UI: nothing to serve, nothing to fetch
    "--jinja",  # the GGUF's own chat template (default in this build; explicit for older user builds)
    "--cont-batching",  # default; slots share each forward pass
    # The host-RAM prompt cache defaults to 8 GiB and grows ~16 MB per distinct 1k-token prompt; our
    # prompts share only a short system prefix, so a small cap (still enough for retries) keeps RSS flat.
    "--cache-ram",
    "256",
    # Server-side ceiling on generated tokens, in case a request omits max_tokens.
    "--n-predict",
    "1024",
)
_STOP_WAIT_S = 10.0


def cpu_specific_flags(cpu_flags: list[str]) -> tuple[str, ...]:
    """On a CPU with AMX tiles the native build repacks weights for AMX kernels, and on a VM that
    does not grant the AMX state (seen on this project's machines) the first forward pass dies
    with a general protection fault: no repacking there (measured: the server then starts and
    answers)."""
    return ("--no-repack",) if "amx_tile" in cpu_flags else ()


class LocalServerError(RuntimeError):
    """llama-server failed to start or died; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on `port` (connections lingering in TIME_WAIT don't count, as for servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _tail(path: Path, n: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "\n".join(line.rstrip("\n") for line in deque(fh, maxlen=n))
    except OSError:
        return "(no log)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_dir() -> Path:
    path = cache_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def reap_orphans(log: Log = print) -> int:
    """Kill llama-servers whose parent process is gone (e.g. the driver was SIGKILLed). Returns how many."""
    killed = 0
    for pidfile in _run_dir().glob("llama-server-*.json"):
        try:
            info = json.loads(pidfile.read_text())
            pid, parent = int(info["pid"]), int(info["parent_pid"])
        except (OSError, ValueError, KeyError):
            pidfile.unlink(missing_ok=True)
            continue
        if _pid_alive(parent):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if _pid_alive(pid) and b"llama-server" in cmdline:
            log(f"[local-llm] stopping orphaned llama-server pid {pid} (parent {parent} is gone)")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            killed += 1
        pidfile.unlink(missing_ok=True)
    return killed


# SIGTERM → SystemExit so context managers and atexit run; installed while any server is running.
_live: set[LocalLLMServer] = set()
_live_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while it is held
_prev_sigterm: object = None


def _on_sigterm(signum, frame):  # pragma: no cover - exercised via a subprocess in the tests
    for srv in list(_live):
        srv.stop()
    prev = _prev_sigterm
    if callable(prev):
        prev(signum, frame)
    raise SystemExit(128 + signum)


def _register(srv: LocalLLMServer) -> None:
    global _prev_sigterm
    with _live_lock:
        if not _live and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                prev = signal.getsignal(signal.SIGTERM)
                if prev is not _on_sigterm:
                    _prev_sigterm = prev
                    signal.signal(signal.SIGTERM, _on_sigterm)
        _live.add(srv)
    atexit.register(srv.stop)


def _unregister(srv: LocalLLMServer) -> None:
    global _prev_sigterm
    atexit.unregister(srv.stop)
    with _live_lock:
        _live.discard(srv)
        if not _live and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                    signal.signal(signal.SIGTERM, _prev_sigterm if _prev_sigterm is not None else signal.SIG_DFL)
                    _prev_sigterm = None


def slots(cfg: LocalLLMConfig) -> int:
    """`local_llm.parallel`, or when 0 one slot per CPU core, at most 4: slots share the context
    (ctx_size / slots each) and, on a CPU, decode in one batch, so more slots than cores buys
    nothing but shorter contexts."""
    return cfg.parallel if cfg.parallel > 0 else max(1, min(4, os.cpu_count() or 1))


class LocalLLMServer:
    """Context manager around one `llama-server` process serving `cfg.model` as model name "local"."""

    model_name = MODEL_ALIAS

    def __init__(self, cfg: LocalLLMConfig, log: Log = print, log_path: str | Path | None = None):
        self.cfg = cfg
        self.log = log
        self._log_path_arg = Path(log_path) if log_path else None
        self.log_path: Path | None = None
        self.base_url: str | None = None
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._pidfile: Path | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------------ commands
    def command(self, binary: Path, model: Path, port: int) -> list[str]:
        c = self.cfg
        return [
            str(binary),
            "-m",
            str(model),
            "--host",
            c.host,
            "--port",
            str(port),
            "--parallel",
            str(slots(c)),
            "--ctx-size",
            str(c.ctx_size),
            "--threads",
            str(c.threads),
            "--alias",
            MODEL_ALIAS,
            *EXTRA_FLAGS,
            *cpu_specific_flags(cpu_flags_line().split()),
        ]

    @staticmethod
    def _child_env() -> dict[str, str]:
        # llama-server reads LLAMA_ARG_* / LLAMA_API_KEY from the environment; a stray one (e.g. an API
        # key the client doesn't send) would silently change behaviour, so the child gets none.
        return {k: v for k, v in os.environ.items() if not (k.startswith("LLAMA_ARG_") or k == "LLAMA_API_KEY")}

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> str:
        """Start the server (fetching/building assets first if needed); returns the /v1 base URL."""
        with self._lock:
            if self.process is not None and self.process.poll() is None and self.base_url:
                return self.base_url
            model = ensure_model(self.cfg.model, self.log)
            binary = ensure_llama_server(self.log)
            with contextlib.suppress(OSError):
                reap_orphans(self.log)
            last_error: LocalServerError | None = None
            for _attempt in range(3):  # a port can be taken between choosing and binding it
                try:
                    return self._start_once(binary, model)
                except LocalServerError as exc:
                    last_error = exc
                    if "bind" not in str(exc).lower() and "address already in use" not in str(exc).lower():
                        raise
                    self.log("[local-llm] port was taken; retrying on another one")
            assert last_error is not None
            raise last_error

    def _start_once(self, binary: Path, model: Path) -> str:
        c = self.cfg
        port = free_port(c.host)
        if self._log_path_arg is not None:
            log_path = self._log_path_arg
        else:
            log_path = cache_dir() / "logs" / f"llama-server-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(binary, model, port)
        self.log(
            f"[local-llm] starting llama-server ({c.model}, parallel={slots(c)}, ctx={c.ctx_size}, threads={c.threads}) on {c.host}:{port}; log: {log_path}"
        )
        t0 = time.monotonic()
        with open(log_path, "ab") as logf:
            logf.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=self._child_env(), start_new_session=True, close_fds=True
            )
        self.process, self.port, self.log_path = proc, port, log_path
        self._pidfile = _run_dir() / f"llama-server-{port}.json"
        with contextlib.suppress(OSError):
            self._pidfile.write_text(json.dumps({"pid": proc.pid, "parent_pid": os.getpid(), "port": port}))
        _register(self)
        health = f"http://{c.host}:{port}/health"
        deadline = t0 + c.startup_timeout_s
        try:
            while True:
                rc = proc.poll()
                if rc is not None:
                    raise LocalServerError(f"llama-server exited with code {rc} during start-up; last lines of {log_path}:\n{_tail(log_path)}")
                if _http_status(health) == 200:
                    break
                if time.monotonic() > deadline:
                    raise LocalServerError(
                        f"llama-server not healthy after {c.startup_timeout_s:.0f} s "
                        f"(local_llm.startup_timeout_s); last lines of {log_path}:\n{_tail(log_path)}"
                    )
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        self.base_url = f"http://{c.host}:{port}/v1"
        self.log(f"[local-llm] ready in {self.startup_s:.1f} s at {self.base_url} (model name '{MODEL_ALIAS}')")
        return self.base_url

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 10 s; safe to call repeatedly and from atexit."""
        with self._lock:
            proc, self.process = self.process, None
            self.base_url = None
            if proc is not None:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=_STOP_WAIT_S)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
            if self._pidfile is not None:
                self._pidfile.unlink(missing_ok=True)
                self._pidfile = None
            _unregister(self)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> LocalLLMServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalLLMServer(model={self.cfg.model!r}, base_url={self.base_url!r})"


# Never route the loopback health check through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with _opener.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:  # 503 while the model loads
        return exc.code
    except (urllib.error.URLError, OSError):
        return None
