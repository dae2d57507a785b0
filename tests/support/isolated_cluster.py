"""A Spark standalone cluster on 127.0.0.1 from pyspark's own launcher (spark-class), with workers
that share no disk with the driver.

An isolated worker runs as another Unix user (`wsrl-worker`, created once if missing) inside a
mount namespace of its own, where the driver's temp dir (/tmp), its HOME and the checkout are
empty tmpfs mounts. Only what a worker needs to run is mounted back, read as it is on the host:
the Python installation and venv of this interpreter, pyspark (SPARK_HOME), Java, and the
worker's own folder (its HOME, TMPDIR, SPARK_LOCAL_DIRS and work dir, owned by the worker user).
The namespace is entered by `python -m tests.support.isolated_cluster` (unshare(2) and mount(2)
through ctypes, then setgid/setuid), so it needs root and nothing else: no TTY, no shared disk.

`start_cluster(...)` starts a master and workers (isolated or not) and returns a `Cluster`;
`Cluster.stop()` kills every process. `isolation_problem()` says why this machine cannot isolate
(None when it can); `run_isolated(...)` runs any command as an isolated worker would.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from tests.support.paths import REPO

SPARK_HOME = Path(pyspark.__file__).resolve().parent
WORKER_USER = "wsrl-worker"
# Read-only system paths a worker's PATH needs; nothing of the driver's environment is passed on.
WORKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1


@dataclass
class WorkerDirs:
    root: Path  # everything of one worker lives under this folder (owned by the worker user)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def local(self) -> Path:
        return self.root / "local"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def make(self, user: str | None) -> WorkerDirs:
        # The root is traversable (o+x) so the worker reaches its folders; the folders are its own.
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        for d in (self.home, self.tmp, self.local, self.work):
            d.mkdir(exist_ok=True)
            if user:
                shutil.chown(d, user, user)
                d.chmod(0o700)
        return self


@dataclass
class Cluster:
    master: str  # spark://127.0.0.1:PORT
    webui_port: int
    workers: list[WorkerDirs]
    user: str | None  # the workers' Unix user, None when they run as the test's user
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=5) as r:
            return json.loads(r.read())

    def executor_logs(self, worker: WorkerDirs) -> list[str]:
        return [p.read_text(errors="replace") for p in worker.work.glob("app-*/*/stderr")]

    def stop(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)


# --- what an isolated worker may see ---------------------------------------------------------


def java_home() -> Path | None:
    java = os.environ.get("JAVA_HOME") or (str(Path(shutil.which("java") or "").resolve().parents[1]) if shutil.which("java") else "")
    return Path(java).resolve() if java else None


def exposed_paths(worker_roots: list[Path]) -> list[Path]:
    """Host folders mounted back into the worker's namespace: this Python, its venv, pyspark, Java
    and the workers' own folders."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), SPARK_HOME, *(r.resolve() for r in worker_roots)]
    jh = java_home()
    if jh:
        paths.append(jh)
    return paths


def hidden_paths() -> list[Path]:
    """The driver's folders a worker must not see: its temp dir, its HOME and the checkout."""
    return [Path(tempfile.gettempdir()).resolve(), Path.home().resolve(), REPO.resolve()]


def isolation_problem() -> str | None:
    """Why this machine cannot run isolated workers, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"isolated workers need Linux mount namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return "isolated workers need root (to create the worker user, a mount namespace and switch user)"
    if not shutil.which("useradd") and not _user_exists(WORKER_USER):
        return f"no useradd to create the worker user {WORKER_USER}"
    return None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_worker_user(name: str = WORKER_USER) -> pwd.struct_passwd:
    """The worker's Unix user: a system user with its own group, no login and no home on disk
    (each cluster gives it a HOME of its own)."""
    if not _user_exists(name):
        cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 9) or not _user_exists(name):  # 9: created meanwhile by another run
            raise RuntimeError(f"could not create the worker user {name!r}: {done.stderr.strip()}")
    return pwd.getpwnam(name)


def worker_env(dirs: WorkerDirs, user: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A worker's whole environment, built from scratch: nothing of the driver's leaks in."""
    env = {
        "PATH": WORKER_PATH,
        "LANG": "C.UTF-8",
        "HOME": str(dirs.home),
        "TMPDIR": str(dirs.tmp),
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(dirs.local),
        "PYSPARK_PYTHON": sys.executable,
        "PYARROW_IGNORE_TIMEZONE": "1",
        # Java's own temp files and user.home follow the worker's folders too.
        "SPARK_DAEMON_JAVA_OPTS": f"-Djava.io.tmpdir={dirs.tmp} -Duser.home={dirs.home}",
    }
    if user:
        env.update(USER=user, LOGNAME=user)
    jh = java_home()
    if jh:
        env["JAVA_HOME"] = str(jh)
    return {**env, **(extra or {})}


def launcher(user: str, worker_roots: list[Path]) -> list[str]:
    """The command prefix that runs what follows it as `user` in a namespace of its own."""
    spec = {"user": user, "hide": [str(p) for p in hidden_paths()], "expose": [str(p) for p in exposed_paths(worker_roots)]}
    return [sys.executable, "-m", "tests.support.isolated_cluster", json.dumps(spec), "--"]


def check_worker_python(dirs: WorkerDirs) -> None:
    """Fail early, naming the path, when the worker user cannot run this Python and import what
    executors import (instead of executors that die later with an obscure error)."""
    done = run_isolated([sys.executable, "-c", "import pyspark, pandas, pyarrow"], dirs)
    if done.returncode != 0:
        raise RuntimeError(
            f"the worker user {WORKER_USER} cannot run {sys.executable} (resolved: {Path(sys.executable).resolve()}) "
            f"with pyspark, pandas and pyarrow in its namespace; a folder on the way may lack o+rx: {done.stderr.strip()[-1500:]}"
        )


def run_isolated(cmd: list[str], dirs: WorkerDirs, extra_env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `cmd` as an isolated worker would run (same user, namespace, folders and environment)."""
    user = ensure_worker_user().pw_name
    dirs.make(user)
    full = [*launcher(user, [dirs.root]), *cmd]
    return subprocess.run(full, cwd=REPO, env=worker_env(dirs, user, extra_env), capture_output=True, text=True, timeout=timeout, check=False)


# --- the cluster ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """A killed test run leaves no cluster behind: SIGKILL when the parent ends (the Linux setting
    survives exec but not a change of user, so the namespace launcher sets it again)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _start(cluster: Cluster, cmd: list[str], name: str, env: dict[str, str]) -> None:
    log = open(cluster.logs / f"{name}.log", "w")  # noqa: SIM115  (the child keeps writing to it)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    cluster.procs.append(proc)
    log.close()


def _wait_for_workers(cluster: Cluster, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if len([w for w in cluster.state().get("workers", []) if w["state"] == "ALIVE"]) == n:
                return
        except OSError:
            pass
        dead = [p.args for p in cluster.procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(cluster.logs.glob("*.log")))
            raise RuntimeError(f"the standalone cluster did not come up ({n} worker(s) expected; exited: {dead}):\n{logs}")
        time.sleep(0.5)


def start_cluster(
    base: Path, n_workers: int = 1, isolated: bool = True, cores: int = 2, memory: str = "2g", worker_extra_env: dict[str, str] | None = None
) -> Cluster:
    """A master and `n_workers` workers on 127.0.0.1; the workers isolated unless isolated=False.
    `base` holds the logs (and, when not isolated, the workers' folders); isolated workers' folders
    are made under the system temp dir, the only place of /tmp they see."""
    user = ensure_worker_user().pw_name if isolated else None
    logs = base / "cluster-logs"
    logs.mkdir(parents=True, exist_ok=True)
    roots = [Path(tempfile.mkdtemp(prefix="wsrl-worker-")) if isolated else base / f"worker-{i}" for i in range(1, n_workers + 1)]
    port, webui = free_port(), free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}", webui, [WorkerDirs(r).make(user) for r in roots], user, logs)
    if user:
        check_worker_python(cluster.workers[0])
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master_env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
    try:
        master_args = ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui)]
        _start(cluster, [spark_class, *master_args], "master", master_env)
        for i, dirs in enumerate(cluster.workers, 1):
            args = [spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master, "--host", "127.0.0.1"]
            args += ["--cores", str(cores), "--memory", memory, "--work-dir", str(dirs.work), "--webui-port", "0"]
            prefix = launcher(user, roots) if user else []
            env = worker_env(dirs, user, worker_extra_env) if user else {**master_env, **(worker_extra_env or {})}
            _start(cluster, [*prefix, *args], f"worker-{i}", env)
        _wait_for_workers(cluster, n_workers, timeout_s=120)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def remove_worker_dirs(cluster: Cluster) -> None:
    """Remove the isolated workers' folders (made outside pytest's tmp_path)."""
    if cluster.user:
        for dirs in cluster.workers:
            shutil.rmtree(dirs.root, ignore_errors=True)


# --- the namespace launcher: python -m tests.support.isolated_cluster SPEC -- CMD... --------------


def _libc_call(fn, *args) -> None:
    if fn(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{fn.__name__}{args}: {os.strerror(err)}")


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def enter_namespace(hide: list[Path], expose: list[Path]) -> None:
    """In a new private mount namespace: tmpfs over every `hide` folder, then every `expose` folder
    that this hid mounted back at its own path (with the host's permissions)."""
    libc = ctypes.CDLL(None, use_errno=True)
    _libc_call(libc.unshare, CLONE_NEWNS)
    _libc_call(libc.mount, None, b"/", None, MS_REC | MS_PRIVATE, None)  # nothing leaks back to the host
    hide = [h for h in hide if not _under(h, [o for o in hide if o != h])]  # outermost only
    expose = [e for e in expose if _under(e, hide) and not _under(e, [o for o in expose if o != e])]
    # Handles to the folders to expose, taken before the tmpfs mounts hide them.
    fds = {e: os.open(e, os.O_PATH | os.O_DIRECTORY) for e in expose}
    os.umask(0o022)
    for h in hide:
        # A shared temp dir stays writable by all (sticky); the others only need to be traversable.
        mode = "1777" if os.stat(h).st_mode & 0o002 else "0755"
        _libc_call(libc.mount, b"tmpfs", str(h).encode(), b"tmpfs", 0, f"mode={mode}".encode())
    for e, fd in fds.items():
        e.mkdir(parents=True, exist_ok=True)
        _libc_call(libc.mount, f"/proc/self/fd/{fd}".encode(), str(e).encode(), None, MS_BIND | MS_REC, None)
        os.close(fd)


def drop_to(user: str) -> None:
    pw = pwd.getpwnam(user)
    os.initgroups(user, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)  # from root to another uid: every capability is dropped too
    if os.getuid() == 0 or os.geteuid() == 0:
        raise RuntimeError(f"still root after switching to {user}")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m tests.support.isolated_cluster SPEC_JSON -- COMMAND [ARG...]")
    spec, cmd = json.loads(argv[0]), argv[2:]
    enter_namespace([Path(p) for p in spec["hide"]], [Path(p) for p in spec["expose"]])
    drop_to(spec["user"])
    die_with_parent()
    os.chdir(os.environ.get("HOME", "/"))
    os.execvpe(cmd[0], cmd, os.environ)


if __name__ == "__main__":
    main(sys.argv[1:])
