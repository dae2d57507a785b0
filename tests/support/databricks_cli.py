"""The Databricks CLI for offline bundle checks, built from its Go module and cached.

`databricks bundle schema` prints the JSON schema of databricks.yml without a workspace, so the
bundle can be validated here. The CLI is the Go module github.com/databricks/cli. The module proxy
serves its versions but not its version list, so `go install ...@VERSION` fails (it looks up the
list for deprecation notices); instead `go mod download` fetches the module's source and
`go build` builds it as its own main module (its go.mod and go.sum, as upstream builds it).

Everything lives under the project's user cache (webscale_rl.config.cache_dir(), by default
~/.cache/webscale-rl): bin/databricks-<version>, the source in src/, Go's module and build caches
in gomod/ and gocache/, so a second run (and CI on the same machine) reuses the binary.
The first build takes minutes on a small machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from webscale_rl.config import cache_dir

MODULE = "github.com/databricks/cli"
VERSION = "v0.298.0"  # 2026-04-22; the proxy serves exact versions only (no version list)
BUILD_TIMEOUT_S = 3600


class GoMissing(RuntimeError):
    """No Go toolchain on PATH: the CLI cannot be built here."""


def cli_path(version: str = VERSION) -> Path:
    return cache_dir() / "bin" / f"databricks-{version}"


def go_env() -> dict[str, str]:
    """Go's caches under the project cache, so builds are reused across runs and by CI."""
    root = cache_dir()
    return {
        **os.environ,
        "GOMODCACHE": str(root / "gomod"),
        "GOCACHE": str(root / "gocache"),
        "GOFLAGS": "-buildvcs=false -mod=readonly",
    }


@contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time (parallel test sessions share the cache)."""
    lock_path = cache_dir() / "databricks-cli.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_go(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, env=go_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def module_source(go: str, version: str) -> Path:
    """Download the module (source zip from the proxy) and return a writable copy of it."""
    scratch = cache_dir() / "src"
    scratch.mkdir(parents=True, exist_ok=True)
    info = json.loads(run_go([go, "mod", "download", "-json", f"{MODULE}@{version}"], cwd=scratch))
    source = scratch / f"cli-{version}"
    if not (source / "go.mod").is_file():
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(info["Dir"], source)  # the module cache is read-only
        for path in [source, *source.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    return source


def ensure_cli(version: str = VERSION) -> Path:
    """The cached CLI binary, built first if missing. Raises GoMissing without Go."""
    binary = cli_path(version)
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise GoMissing(f"Go is not installed: cannot build the Databricks CLI ({MODULE}@{version})")
    with build_lock():
        if binary.is_file():  # another session built it while this one waited
            return binary
        source = module_source(go, version)
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(binary.name + ".partial")
        run_go([go, "build", "-o", str(partial), "."], cwd=source)
        partial.replace(binary)
    return binary


def bundle_schema(binary: Path) -> dict:
    """`databricks bundle schema`: the JSON schema of databricks.yml (no workspace needed)."""
    done = subprocess.run([str(binary), "bundle", "schema"], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


class _StubWorkspace(BaseHTTPRequestHandler):
    """The four calls `bundle validate` makes: host metadata (absent), the current user, and the
    status of the deploy folder (a folder; mkdirs accepted). Nothing else exists."""

    USER: ClassVar[dict[str, object]] = {"id": "1", "userName": "someone@example.com", "groups": []}

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/api/2.0/preview/scim/v2/Me"):
            return self._send(200, self.USER)
        if self.path.startswith("/api/2.0/workspace/get-status"):
            return self._send(200, {"object_type": "DIRECTORY", "object_id": 1, "path": "/"})
        return self._send(404, {"error_code": "NOT_FOUND", "message": f"no {self.path} in the stub"})

    def do_POST(self) -> None:
        if self.path.startswith("/api/2.0/workspace/mkdirs"):
            return self._send(200, {})
        return self._send(404, {"error_code": "NOT_FOUND", "message": f"no {self.path} in the stub"})

    def log_message(self, *args) -> None:
        pass


@contextmanager
def stub_workspace() -> Iterator[str]:
    """A workspace API on 127.0.0.1 that answers what `bundle validate` asks: no network used."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubWorkspace)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def bundle_validate(binary: Path, bundle_root: Path, host: str, args: list[str]) -> subprocess.CompletedProcess:
    """`databricks bundle validate -o json ARGS` in bundle_root against `host`, with a throwaway
    home and no profile, token or host of the caller's."""
    home = bundle_root / ".home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "ARM_", "AZURE_", "GOOGLE_"))}
    env |= {"HOME": str(home), "DATABRICKS_HOST": host, "DATABRICKS_TOKEN": "stub-token"}
    env |= {"DATABRICKS_CONFIG_FILE": str(home / "databrickscfg"), "DATABRICKS_CLI_DO_NOT_TRACK": "true"}
    return subprocess.run(
        [str(binary), "bundle", "validate", "-o", "json", *args],
        cwd=bundle_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
