"""PostgreSQL unreachable for a while: ingestion answers 503 with Retry-After (so the SDKs retry)
instead of losing or half-writing, and recovers by itself once the database is back.
The outage is made by a TCP proxy between the service and the shared PostgreSQL server, which the
test cuts (dropping every connection and refusing new ones) and restores."""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings
from leadscore.store import open_store


class CuttableProxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # the database is "down": refuse
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.up.clear()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()

    def restore(self):
        self.up.set()


def batch(n0: int, n: int) -> bytes:
    return json.dumps({"batch": [{"type": "track", "userId": f"u{i % 5}", "event": "Page Read", "messageId": f"m-{i}",
                                  "timestamp": "2026-11-20T10:00:00Z"} for i in range(n0, n0 + n)]}).encode()


def proxied_store(pg_url: str):
    """A cuttable proxy in front of the PostgreSQL server, and a store connected through it."""
    parts = urlsplit(pg_url)
    proxy = CuttableProxy((parts.hostname, parts.port or 5432))
    via_proxy = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    return proxy, open_store(via_proxy)


def stored_ids(pg_url: str, store) -> set[str]:
    """The message ids the database holds, read directly (not through the proxy); closes ``store``."""
    check = open_store(pg_url)
    try:
        return {r[0] for r in check.query("SELECT message_id FROM events")}
    finally:
        check.close()
        store.close()


def test_ingestion_answers_503_during_an_outage_and_recovers(pg_url):
    proxy, store = proxied_store(pg_url)
    key = create_key(store, "write", datetime(2026, 11, 23), name="w").token
    app = create_app(store, Settings(), installers=())
    headers = {"Content-Type": "application/json"}
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30, auth=(key, "")) as client:
        assert client.post("/v1/batch", content=batch(0, 10), headers=headers).status_code == 200
        proxy.cut()
        answers = [client.post("/v1/batch", content=batch(100 + 10 * k, 10), headers=headers) for k in range(3)]
        for r in answers:
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert set(r.json()) >= {"code", "message"}
        proxy.restore()
        deadline = time.monotonic() + 30
        while True:  # the service reconnects by itself; a client retrying with the same messageIds gets in
            r = client.post("/v1/batch", content=batch(100, 10), headers=headers)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 200
        assert client.post("/v1/batch", content=batch(100, 10), headers=headers).status_code == 200  # a retry
    ids = stored_ids(pg_url, store)
    # the acknowledged batches are stored exactly once; the refused ones left nothing behind
    assert ids == {f"m-{i}" for i in list(range(10)) + list(range(100, 110))}


def test_with_the_ingestion_log_acknowledged_events_wait_out_the_outage_and_new_ones_get_503(pg_url, tmp_path):
    """With the durable log (what `leadscore serve` runs), a request acknowledged before the service
    has noticed the outage is kept in the log and stored once the database is back; once the
    writer has found the database unreachable, requests get 503 + Retry-After until it answers again."""
    proxy, store = proxied_store(pg_url)
    key = create_key(store, "write", datetime(2026, 11, 23), name="w").token
    app = create_app(store, Settings(ingest_log=str(tmp_path / "log")), installers=())
    writer = app.state.writer
    headers = {"Content-Type": "application/json"}
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30, auth=(key, "")) as client:
        assert client.post("/v1/batch", content=batch(0, 10), headers=headers).status_code == 200
        assert writer.flush(10)
        proxy.cut()
        # the writer has not met the outage yet: logged (durable) and acknowledged
        assert client.post("/v1/batch", content=batch(10, 10), headers=headers).status_code == 200
        deadline = time.monotonic() + 30
        while writer.store_down is None and time.monotonic() < deadline:
            time.sleep(0.05)
        answers = [client.post("/v1/batch", content=batch(100 + 10 * k, 10), headers=headers) for k in range(3)]
        for r in answers:
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["message"].startswith("the store is unavailable")
        assert client.get("/healthz").json()["pending_events"] == 10
        proxy.restore()
        assert writer.flush(30)   # the writer retries by itself
        assert writer.store_down is None
        assert client.post("/v1/batch", content=batch(100, 10), headers=headers).status_code == 200
        assert writer.flush(10)
    ids = stored_ids(pg_url, store)
    assert ids == {f"m-{i}" for i in list(range(20)) + list(range(100, 110))}


def test_leadscore_serve_keeps_what_it_acknowledged_and_answers_503_until_the_database_is_back(pg_url, tmp_path):
    """The same through `leadscore serve` as a user runs it: its ingestion process acknowledges and
    refuses, the store's process (connected through the cuttable proxy) meets the outage and tells it."""
    from tests.service.serve_process import Serve, applied, wait_until

    proxy, store = proxied_store(pg_url)
    key = create_key(store, "write", datetime(2026, 11, 23), name="w").token
    via_proxy = store.url
    store.close()
    headers = {"Content-Type": "application/json"}
    with Serve(via_proxy, tmp_path, "--ingest-only") as serve, \
            httpx.Client(base_url=serve.base, timeout=30, auth=(key, "")) as client:
        assert client.post("/v1/batch", content=batch(0, 10), headers=headers).status_code == 200
        assert wait_until(lambda: applied(serve), timeout=10)
        proxy.cut()
        # the store's process has not met the outage yet: logged (durable) and acknowledged
        assert client.post("/v1/batch", content=batch(10, 10), headers=headers).status_code == 200
        assert wait_until(lambda: client.get("/healthz").json()["store_unavailable"], timeout=30)
        r = wait_until(lambda: (lambda r: r if r.status_code == 503 else None)(
            client.post("/v1/batch", content=batch(100, 10), headers=headers)), timeout=5)
        assert r and int(r.headers["retry-after"]) >= 1, r
        assert r.json()["message"].startswith("the store is unavailable")
        assert client.get("/healthz").json()["pending_events"] == 10
        proxy.restore()
        assert wait_until(lambda: client.post("/v1/batch", content=batch(100, 10), headers=headers).status_code == 200,
                          timeout=30, step=0.5)
        assert wait_until(lambda: applied(serve), timeout=10)
    check = open_store(pg_url)
    try:
        ids = {r[0] for r in check.query("SELECT message_id FROM events")}
    finally:
        check.close()
    assert ids == {f"m-{i}" for i in list(range(20)) + list(range(100, 110))}
