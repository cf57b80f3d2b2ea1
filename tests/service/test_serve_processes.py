"""`leadscore serve` as a user runs it: a real process that starts its ingestion process (service/
frontend.py), which answers /v1/* on the public port and passes everything else to the store's
process (large bodies are validated by a child of that one, service/validator.py). What must keep
holding across the processes: acknowledged once durable, an invalid batch stores nothing, 503 +
Retry-After on a full backlog, erasure waits for the log, keys created and revoked through the API
apply to ingestion, no orphan process whatever happens to the parent, and the official SDKs work
unchanged. DuckDB and PostgreSQL."""
from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from leadscore.service.auth import create_key
from leadscore.store import open_store
from tests.service.serve_process import Serve, alive, applied as _applied, children, wait_until

NOW = datetime(2026, 11, 23, 12, 0, 0)


def _keys(url: str) -> dict[str, str]:
    store = open_store(url)
    try:
        return {role: create_key(store, role, NOW, name=role).token for role in ("write", "admin")}
    finally:
        store.close()   # the server owns the store (DuckDB allows one process)


def _batch(ids, user="u0", **extra):
    return {"batch": [{"type": "track", "userId": user, "event": "Page Viewed", "messageId": mid,
                       "timestamp": "2026-11-20T10:00:00Z", "properties": {"n": i}, **extra}
                      for i, mid in enumerate(ids)]}


def _stored(url: str) -> list[tuple[str, int]]:
    store = open_store(url)
    try:
        return store.query("SELECT message_id, count(*) FROM events GROUP BY 1 ORDER BY 1")
    finally:
        store.close()


def test_ingestion_is_answered_by_a_child_process_and_everything_else_passes_through_it(store_url, tmp_path):
    keys = _keys(store_url)
    with Serve(store_url, tmp_path, LEADSCORE_APPLY_INTERVAL_SECONDS="3") as serve:
        child = serve.child()
        [validator] = wait_until(lambda: children(child), timeout=10)
        assert "leadscore.service.frontend" in Path(f"/proc/{child}/cmdline").read_text()
        w = httpx.Client(base_url=serve.base, auth=(keys["write"], ""), timeout=20)
        admin = httpx.Client(base_url=serve.base, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=20)
        r = w.post("/v1/batch", json=_batch(["a1", "a2"]))
        assert (r.status_code, r.content) == (200, b'{"success":true}')
        r = w.post("/v1/track", content=gzip.compress(json.dumps(
            {"userId": "u0", "event": "Demo Requested", "messageId": "a3"}).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert (r.status_code, r.content) == (200, b'{"success":true}')
        bad = _batch(["x1", "x2"])
        del bad["batch"][1]["event"]
        r = w.post("/v1/batch", json=bad)
        assert r.status_code == 400 and r.json()["errors"] == [{"loc": "batch[1].event", "message": "required for track"}]
        assert w.post("/v1/batch", json=_batch(["a1"])).status_code == 200        # a retry: stored once
        # a browser tracker: CORS preflight and the POST, answered by the ingestion process
        r = httpx.options(serve.base + "/v1/track", headers={"Origin": "https://shop.example",
                                                             "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        r = w.post("/v1/page", json={"userId": "u0", "name": "Pricing", "messageId": "a4"},
                   headers={"Origin": "https://shop.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        # the rest is the store's process: health, keys, errors, methods
        stats = httpx.get(serve.base + "/healthz").json()
        assert stats["ingest_process"] == {"pid": child, "restarts": 0}
        assert admin.get("/api/keys").status_code == 200
        assert httpx.get(serve.base + "/api/keys").json()["code"] == "unauthorized"
        assert httpx.get(serve.base + "/v1/track").status_code == 405

        # a key created through the API ingests at once; revoked, it is refused within a second or so
        new = admin.post("/api/keys", json={"role": "write", "name": "site"}).json()
        r = httpx.post(serve.base + "/v1/track", auth=(new["token"], ""), json={"userId": "u5", "event": "E", "messageId": "k1"})
        assert r.status_code == 200, r.text
        assert admin.delete(f"/api/keys/{new['key']['key_id']}").status_code == 200
        assert wait_until(lambda: httpx.post(serve.base + "/v1/track", auth=(new["token"], ""), json={
            "userId": "u5", "event": "E", "messageId": "k2"}).status_code == 401, timeout=3)

        # erasure waits for what the log holds: e1 and e2 are logged, not yet applied (3 s between
        # two store transactions), when the DELETE arrives; it erases them with the stored ones
        assert wait_until(lambda: _applied(serve), timeout=10)
        assert w.post("/v1/batch", json=_batch(["e1", "e2"])).status_code == 200
        r = admin.delete("/api/leads/u0")
        assert r.status_code == 200, r.text
        assert r.json()["deleted"]["events"] == 6         # a1 a2 a3 a4 stored before, e1 e2 applied first
        proc = serve.proc
    # SIGTERM: the ingestion process stops first, the store's process drains and exits; nothing left
    assert proc.returncode in (0, -signal.SIGTERM)   # uvicorn re-raises the signal once shut down
    assert not alive(child) and not alive(validator)
    assert _stored(store_url) == [("k1", 1)]


def test_a_full_backlog_answers_503_with_retry_after(duckdb_url, tmp_path):
    """The first transaction is immediate, the next one 5 s later: what arrives in between waits in the
    backlog, bounded at 3 events; the ingestion process refuses beyond it until the store catches up."""
    keys = _keys(duckdb_url)
    with Serve(duckdb_url, tmp_path, "--ingest-only", LEADSCORE_APPLY_INTERVAL_SECONDS="5",
               LEADSCORE_MAX_PENDING_EVENTS="3") as serve:
        w = httpx.Client(base_url=serve.base, auth=(keys["write"], ""), timeout=20)
        assert w.post("/v1/batch", json=_batch(["b1"])).status_code == 200
        assert wait_until(lambda: _applied(serve), timeout=10)
        assert w.post("/v1/batch", json=_batch(["b2", "b3", "b4"])).status_code == 200   # waits ~5 s
        r = w.post("/v1/batch", json=_batch(["b5"]))
        assert (r.status_code, r.headers["Retry-After"], r.json()["code"]) == (503, "1", "unavailable")
        assert wait_until(lambda: w.post("/v1/batch", json=_batch(["b5"])).status_code == 200, timeout=15, step=0.5)
    assert _stored(duckdb_url) == [("b1", 1), ("b2", 1), ("b3", 1), ("b4", 1), ("b5", 1)]


def test_sigkill_of_the_server_leaves_no_orphan_and_a_restart_applies_what_was_acknowledged(store_url, tmp_path):
    keys = _keys(store_url)
    serve = Serve(store_url, tmp_path, "--ingest-only", LEADSCORE_APPLY_INTERVAL_SECONDS="30").start()
    try:
        child = serve.child()
        [validator] = wait_until(lambda: children(child), timeout=10)   # the ingestion process's own child
        w = httpx.Client(base_url=serve.base, auth=(keys["write"], ""), timeout=20)
        assert w.post("/v1/batch", json=_batch(["s1"])).status_code == 200     # applied at once
        assert wait_until(lambda: _applied(serve), timeout=10)
        assert w.post("/v1/batch", json=_batch(["s2", "s3"])).status_code == 200   # logged; applied in 30 s
        serve.proc.send_signal(signal.SIGKILL)
        serve.proc.wait(10)
        assert wait_until(lambda: not alive(child), timeout=5), "the ingestion process outlived its parent"
        assert wait_until(lambda: not alive(validator), timeout=5), "the validation process outlived its parent"
        with socket.socket() as s:   # and the port is free for the next server
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", serve.port))
        serve.start()   # replays s2 s3 from the log
        assert wait_until(lambda: _applied(serve), timeout=10)
    finally:
        serve.stop()
    assert _stored(store_url) == [("s1", 1), ("s2", 1), ("s3", 1)]


@pytest.mark.slow
def test_a_killed_ingestion_process_is_started_again_and_nothing_acknowledged_is_lost(duckdb_url, tmp_path):
    """A client streams batches and resends each until acknowledged; the ingestion process is
    SIGKILLed twice mid-stream (between its fsync and its message to the store's process, at times):
    the store's process starts it again and reads back from the log what was not handed over."""
    keys = _keys(duckdb_url)
    acked: set[str] = set()
    stop = threading.Event()
    problems: list[str] = []

    def client(n: int) -> None:
        seq = 0
        with httpx.Client(base_url=serve.base, auth=(keys["write"], ""), timeout=5) as http:
            while not stop.is_set():
                ids = [f"c{n}-{seq + i}" for i in range(20)]
                seq += 20
                while True:
                    try:
                        r = http.post("/v1/batch", json=_batch(ids, user=f"u{n}"))
                        if r.status_code == 200:
                            acked.update(ids)
                            break
                        if r.status_code != 503:
                            problems.append(f"{r.status_code} {r.text}")
                            return
                    except httpx.TransportError:
                        pass
                    time.sleep(0.02)

    with Serve(duckdb_url, tmp_path, "--ingest-only") as serve:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        pids = []
        for _ in range(2):
            time.sleep(1.0)
            pid = serve.child()
            pids.append(pid)
            os.kill(pid, signal.SIGKILL)
            assert wait_until(lambda: children(serve.proc.pid) and children(serve.proc.pid)[0] != pid, timeout=15)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        assert problems == []
        assert wait_until(lambda: _applied(serve), timeout=20)
        stats = httpx.get(serve.base + "/healthz").json()
        assert stats["ingest_process"]["restarts"] == 2 and stats["ingest_process"]["pid"] not in pids
    rows = _stored(duckdb_url)
    assert all(n == 1 for _, n in rows)
    assert acked <= {mid for mid, _ in rows}
    assert len(acked) > 100


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_the_official_sdks_work_against_the_real_server(duckdb_url, tmp_path, sdk):
    """segment-analytics-python and rudder-sdk-python, only their host changed, against `leadscore
    serve` with its ingestion process: gzip batches stored, a resent messageId stored once, an
    invalid batch refused (dropped, on_error called)."""
    keys = _keys(duckdb_url)
    with Serve(duckdb_url, tmp_path, "--ingest-only") as serve:
        if sdk == "segment":
            from segment.analytics import Client
        else:
            from rudderstack.analytics import Client
        errors = []
        client = Client(keys["write"], host=serve.base, on_error=lambda e, batch: errors.append((e, batch)),
                        upload_interval=0.05, max_retries=3, gzip=True)
        client.identify("u1", {"email": "a@b.com"}, message_id="i-1")
        client.track("u1", "Demo Requested", {"plan": "pro"}, message_id="t-1")
        client.track("u1", "Demo Requested", {"plan": "pro"}, message_id="t-1")
        client.flush()
        client.track("u1", "From the past", timestamp=datetime(1900, 1, 1, tzinfo=timezone.utc), message_id="bad-1")
        client.flush()
        client.shutdown()
        assert [(e.status, e.code, [m["messageId"] for m in batch]) for e, batch in errors] == [
            (400, "invalid_message", ["bad-1"])]
        assert wait_until(lambda: _applied(serve), timeout=10)
    assert _stored(duckdb_url) == [("i-1", 1), ("t-1", 1)]


def test_demo_reads_from_loopback_pass_the_client_address_through(duckdb_url, tmp_path):
    """--demo lets loopback clients read without a key: the store's process must see the real client
    (127.0.0.1), not the private socket, and not a header a client sends to pretend."""
    with Serve(duckdb_url, tmp_path, "--demo") as serve:
        assert httpx.get(serve.base + "/api/leads", timeout=20).status_code == 200
        r = httpx.get(serve.base + "/api/leads", headers={"X-Leadscore-Client": "203.0.113.9:1"}, timeout=20)
        assert r.status_code == 200
    # the same server without --demo refuses them: the check above is not vacuous
    with Serve(duckdb_url, tmp_path) as serve:
        assert httpx.get(serve.base + "/api/leads", timeout=20).status_code == 401


def test_large_bodies_are_validated_by_the_validation_process_with_the_same_answers(duckdb_url, tmp_path):
    """Bodies of at least validator_bytes (16 KiB) are parsed and validated by a child of the ingestion
    process: the same answers as in one process (errors named, the body's writeKey, nothing stored from
    a refused batch); killed, it costs the requests it held a 503 (never logged, safe to resend) and
    another one takes over."""
    keys = _keys(duckdb_url)

    def big(prefix, **envelope):
        body = {**_batch([f"{prefix}{i}" for i in range(150)]), **envelope}
        for msg in body["batch"]:
            msg["properties"]["pad"] = "x" * 100
        return body

    with Serve(duckdb_url, tmp_path, "--ingest-only") as serve:
        [validator] = children(serve.child())
        assert "leadscore.service.validator" in Path(f"/proc/{validator}/cmdline").read_text()
        w = httpx.Client(base_url=serve.base, auth=(keys["write"], ""), timeout=20)
        assert len(json.dumps(big("v")).encode()) > 16 * 1024
        assert w.post("/v1/batch", json=big("v")).status_code == 200
        bad = big("x")
        del bad["batch"][7]["event"]
        r = w.post("/v1/batch", json=bad)
        assert (r.status_code, r.json()["errors"]) == (400, [{"loc": "batch[7].event", "message": "required for track"}])
        r = w.post("/v1/batch", content=json.dumps(big("x")).encode()[:-2], headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
        r = httpx.post(serve.base + "/v1/batch", json=big("k", writeKey=keys["write"]), timeout=20)   # key in the body
        assert r.status_code == 200, r.text
        r = httpx.post(serve.base + "/v1/batch", json=big("x", writeKey="lsw_unknown"), timeout=20)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        r = w.post("/v1/batch", json=big("x", writeKey=keys["admin"]))
        assert r.json()["message"] == "the Authorization header and the body's writeKey name different keys"

        os.kill(validator, signal.SIGKILL)
        assert wait_until(lambda: children(serve.child()) and children(serve.child())[0] != validator, timeout=10)
        assert wait_until(lambda: w.post("/v1/batch", json=big("r")).status_code == 200, timeout=10, step=0.2)
        assert wait_until(lambda: _applied(serve), timeout=10)
    stored = {mid for mid, n in _stored(duckdb_url)}
    assert stored == {f"{p}{i}" for p in "vkr" for i in range(150)}
