"""The fault test's own servers, so that the harness may kill and restart them: a throw-away
PostgreSQL cluster (initdb, pg_ctl, a spare loopback port, as tests/integration/
test_pitr_drill.py makes one), a throw-away Redis server on a spare port (no persistence, so
a restart loses every queued job and USSD session), gunicorn whose workers are SIGKILLed, and
``manage.py`` workers and scheduler kept running by a supervisor thread (systemd's
``Restart=always``). The machine's shared PostgreSQL (5432) and Redis (6379) are never
touched."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import requests

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# initdb refuses to run as root: as root (a container) the cluster runs as ``postgres``.
CLUSTER_USER = "postgres" if os.geteuid() == 0 else None
WAIT_S = 60  # an upper bound for a server to come up; never asserted as a duration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_tools() -> list[str]:
    tools = [str(PG_BIN / "initdb"), str(PG_BIN / "pg_ctl"), "redis-server"]
    return [t for t in tools if shutil.which(t) is None]


class Postgres:
    """A throw-away cluster in ``work/pg`` on a spare port; ``restart()`` crashes it
    (``-m immediate``: no checkpoint, crash recovery on start) and starts it again."""

    def __init__(self, work: Path) -> None:
        self.work, self.data, self.port = work, work / "pg", free_port()
        if CLUSTER_USER:
            user = pwd.getpwnam(CLUSTER_USER)
            os.chown(work, user.pw_uid, user.pw_gid)
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                  "--no-sync")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{work}'\nfsync = off\nmax_connections = 200\n"
            )
        self.start()
        self._run(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "postgres", "sacco")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/sacco"

    def _run(self, *args: str | Path) -> None:
        command = [*map(str, args)]
        if CLUSTER_USER:
            command = ["runuser", "-u", CLUSTER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.work / "pg.log", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def restart(self, down_s: float) -> None:
        self.stop("immediate")
        time.sleep(down_s)
        self.start()


class RedisServer:
    """``redis-server`` on a spare loopback port with no persistence: a restart empties it."""

    def __init__(self, work: Path) -> None:
        self.work, self.port = work, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.work / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.work)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SACCO_TEST_CLOCK")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (gunicorn's workers), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


class Gunicorn:
    """``gunicorn -c deploy/gunicorn.conf.py wsgi:app`` on ``port``; its master respawns a
    worker the harness kills."""

    def __init__(self, env: Mapping[str, str], port: int, log: IO[bytes]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=child_env({**env, "HOST": "127.0.0.1", "PORT": str(port)}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self.proc.poll() is None, f"gunicorn exited with {self.proc.returncode}"
            try:
                with requests.get(f"{self.base}/healthz", timeout=3) as resp:
                    if resp.status_code == 200:
                        return
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "gunicorn did not answer /healthz"
            time.sleep(0.2)

    def kill_a_worker(self, index: int) -> int:
        workers = children(self.proc.pid)
        assert workers, "gunicorn has no worker to kill"
        victim = workers[index % len(workers)]
        os.kill(victim, signal.SIGKILL)
        return victim

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Supervisor:
    """``manage.py`` processes restarted whenever one exits (systemd's ``Restart=always``,
    ``RestartSec=1``); ``kill(name)`` SIGKILLs one. Counts the restarts it made, and keeps
    every exit the harness did not cause (``exits``: a worker that quit on its own)."""

    def __init__(self, env: Mapping[str, str], work: Path) -> None:
        self.env, self.work = dict(env), work
        self.specs: dict[str, list[str]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts = 0
        self.exits: list[tuple[str, int]] = []  # (name, return code) of every exit seen
        self.killed: set[int] = set()  # pids the harness SIGKILLed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def add(self, name: str, *args: str) -> None:
        self.specs[name] = list(args)
        self._spawn(name)

    def _spawn(self, name: str) -> None:
        log = (self.work / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "manage.py", *self.specs[name]],
            cwd=ROOT,
            env=child_env(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for name, proc in list(self.procs.items()):
                    if proc.poll() is not None:
                        if proc.pid not in self.killed:
                            self.exits.append((name, int(proc.returncode)))
                        time.sleep(1.0)  # RestartSec
                        self._spawn(name)
                        self.restarts += 1

    def kill(self, name: str) -> None:
        with self._lock:
            proc = self.procs[name]
            if proc.poll() is None:
                self.killed.add(proc.pid)
                proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
