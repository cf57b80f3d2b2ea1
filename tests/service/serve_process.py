"""A real `leadscore serve` process for tests (tests/service/test_serve_processes.py,
tests/reliability/test_postgres_outage.py): started with the default settings (the durable
ingestion log, its ingestion process), plus what a test adds to its environment."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def alive(pid: int) -> bool:
    """Any thread of it still running (a zombie waiting to be reaped by init has exited, and holds no
    socket; but its main thread shows as a zombie while the others are still being torn down)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state not in ("Z", "X"):
            return True
    return False


def wait_until(predicate, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class Serve:
    """`leadscore --db URL serve --port P` in a process of its own, with ``env`` added."""

    def __init__(self, url: str, tmp: Path, *args: str, **env: str):
        self.url, self.tmp, self.args = url, tmp, args
        self.port = _free_port()
        self.env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state"), **env}   # where "auto" puts a PG log
        self.env.pop("LEADSCORE_INGEST_LOG", None)     # the default: the log, "auto"
        self.env.pop("LEADSCORE_INGEST_PROCESS", None)
        self.out = tmp / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Serve":
        exe = str(Path(sys.executable).parent / "leadscore")
        self.proc = subprocess.Popen([exe, "--db", self.url, "serve", "--port", str(self.port), *self.args],
                                     stdout=open(self.out, "ab"), stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"leadscore serve exited: {self.out.read_text()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError("leadscore serve did not start")

    def child(self) -> int:
        [pid] = children(self.proc.pid)
        return pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "Serve":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def applied(serve: "Serve") -> bool:
    """Everything acknowledged so far is in the store (as /healthz tells)."""
    stats = httpx.get(serve.base + "/healthz", timeout=5).json()
    return stats["pending_events"] == 0 and stats["applied_seq"] >= stats["logged_seq"]
