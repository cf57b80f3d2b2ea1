"""Ingestion over the durable log (Settings.ingest_log, what `leadscore serve` runs): a request is
acknowledged once fsynced in the log, the log is applied to the store behind it, and a restart
replays exactly what was not applied. Real uvicorn on loopback, DuckDB and PostgreSQL."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import httpx
import pytest

from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.ingest_log import IngestLog, LogBusy, drain_log
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings

NOW = datetime(2026, 11, 23, 12, 0, 0)


def _batch(ids, **extra):
    return {"batch": [{"type": "track", "userId": f"u{i % 3}", "event": "Page Viewed", "messageId": mid,
                       "timestamp": "2026-11-20T10:00:00Z", "properties": {"n": i}, **extra}
                      for i, mid in enumerate(ids)]}


class _Svc:
    def __init__(self, store, log_path, hooks=(), installers=(), **settings):
        self.store, self.log_path = store, log_path
        self.key = create_key(store, "write", NOW, name="w").token
        self.app = create_app(store, Settings(ingest_log=str(log_path), **settings), installers=installers,
                              after_ingest=hooks)
        self.srv = ServerThread(self.app)

    def __enter__(self):
        self.srv.start()
        self.client = httpx.Client(base_url=self.srv.url, timeout=20, auth=(self.key, ""))
        return self

    def __exit__(self, *exc):
        self.client.close()
        self.srv.stop()

    @property
    def writer(self):
        return self.app.state.writer

    def post(self, path, body):
        return self.client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _ids(store):
    return sorted(r[0] for r in store.query("SELECT message_id FROM events"))


def test_acknowledged_once_logged_applied_behind_with_the_position_recorded(store, tmp_path):
    calls = []
    with _Svc(store, tmp_path / "log", hooks=[calls.append]) as svc:
        r = svc.post("/v1/batch", _batch(["a", "b", "c"]))
        assert (r.status_code, r.content) == (200, b'{"success":true}')
        r = svc.post("/v1/track", {"type": "track", "userId": "u9", "event": "Demo Requested", "messageId": "d"})
        assert (r.status_code, r.content) == (200, b'{"success":true}')
        assert svc.writer.flush(10)
        assert _ids(store) == ["a", "b", "c", "d"]
        stats = svc.client.get("/healthz").json()
        assert (stats["logged_seq"], stats["applied_seq"], stats["pending_events"]) == (2, 2, 0)
        log_id = svc.writer.log.log_id
        deadline = time.monotonic() + 10   # live scoring's hook still hears of every stored event
        while sorted(i for c in calls for i in c.new_message_ids) != ["a", "b", "c", "d"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(i for c in calls for i in c.new_message_ids) == ["a", "b", "c", "d"]
        assert set().union(*(c.leads_touched for c in calls)) == {"u0", "u1", "u2", "u9"}
    assert store.query("SELECT seq FROM ingest_log_position WHERE log_id = ?", (log_id,)) == [(2,)]
    log = IngestLog(tmp_path / "log")
    try:
        assert log.count() == 0   # applied entries are deleted (at the latest when the server stops)
    finally:
        log.close()


def test_a_retried_batch_is_stored_once_and_an_invalid_batch_is_never_logged(store, tmp_path):
    with _Svc(store, tmp_path / "log") as svc:
        assert svc.post("/v1/batch", _batch(["m1", "m2"])).status_code == 200
        assert svc.post("/v1/batch", _batch(["m1", "m2"])).status_code == 200   # resent before applied, maybe
        assert svc.writer.flush(10)
        assert svc.post("/v1/batch", _batch(["m2", "m3"])).status_code == 200   # resent after applied
        bad = _batch(["x1", "x2", "x3"])
        del bad["batch"][1]["event"]
        r = svc.post("/v1/batch", bad)
        assert r.status_code == 400 and r.json()["errors"] == [{"loc": "batch[1].event", "message": "required for track"}]
        assert svc.writer.flush(10)
        assert svc.writer.logged_seq == 3           # the refused batch never reached the log
        assert store.query("SELECT message_id, count(*) FROM events GROUP BY 1 ORDER BY 1") == [
            ("m1", 1), ("m2", 1), ("m3", 1)]


def test_acknowledged_while_the_store_is_busy_and_503_once_the_backlog_is_full(store, tmp_path):
    """The apply side is held (as by a long transaction): the acknowledgement does not wait for it,
    the backlog is bounded by max_pending_events, and everything acknowledged is stored once released."""
    with _Svc(store, tmp_path / "log", max_pending_events=3) as svc:
        with store._lock:   # every store transaction takes it
            started = time.monotonic()
            assert svc.post("/v1/batch", _batch(["h1", "h2", "h3"])).status_code == 200
            assert time.monotonic() - started < 5
            r = svc.post("/v1/batch", _batch(["h4"]))
            assert (r.status_code, r.headers["Retry-After"], r.json()["code"]) == (503, "1", "unavailable")
            assert svc.client.get("/healthz").json()["pending_events"] == 3
        assert svc.writer.flush(10)
        assert svc.post("/v1/batch", _batch(["h4"])).status_code == 200
        assert svc.writer.flush(10)
    assert _ids(store) == ["h1", "h2", "h3", "h4"]


def test_a_restart_replays_exactly_the_entries_not_applied(store_url, tmp_path):
    """Entries logged (acknowledged) but not applied when the process died are applied at start-up,
    through the same normalisation (Segment's clock rule from the logged receipt time); the position
    recorded with them means a second restart applies nothing again, even events erased since."""
    from leadscore.store import open_store

    store = open_store(store_url)
    try:
        key = create_key(store, "write", NOW, name="w").token
        log = IngestLog(tmp_path / "log")
        body = json.dumps({"sentAt": "2026-11-20T10:00:10Z", **_batch(["r1", "r2"])}).encode()
        single = json.dumps({"userId": "u7", "traits": {"email": "u7@x.io"}, "messageId": "r3", "writeKey": key}).encode()
        log.append([("batch", "2026-11-20T10:00:12+00:00", body), ("identify", "2026-11-20T10:00:13+00:00", single)])
        log.close()   # the "crashed" process acknowledged these and applied nothing

        app = create_app(store, Settings(ingest_log=str(tmp_path / "log")), installers=())
        with ServerThread(app):
            assert app.state.writer.replayed_events == 3
            assert app.state.writer.flush(10)
        assert _ids(store) == ["r1", "r2", "r3"]
        # timestamp 10:00:00 sent at 10:00:10, received 10:00:12: the clock-skew rule moves it 2 s later
        assert {str(r[0]) for r in store.query("SELECT ts FROM events WHERE message_id IN ('r1', 'r2')")} == {"2026-11-20 10:00:02"}
        assert store.query("SELECT value FROM lead_traits WHERE lead_id = 'u7' AND key = 'email'") == [("u7@x.io",)]

        store.execute("DELETE FROM events WHERE message_id = 'r1'")   # e.g. erased since
        app = create_app(store, Settings(ingest_log=str(tmp_path / "log")), installers=())
        with ServerThread(app):
            assert app.state.writer.replayed_events == 0
        assert _ids(store) == ["r2", "r3"]
        assert drain_log(store, tmp_path / "log") == 0
    finally:
        store.close()


def test_one_log_belongs_to_one_process(tmp_path):
    log = IngestLog(tmp_path / "log")
    try:
        with pytest.raises(LogBusy):
            IngestLog(tmp_path / "log")
    finally:
        log.close()
    IngestLog(tmp_path / "log").close()   # free again once closed


def test_concurrent_clients_share_fsyncs(store, tmp_path):
    with _Svc(store, tmp_path / "log") as svc:
        errors = []

        def client(t):
            with httpx.Client(base_url=svc.srv.url, timeout=20, auth=(svc.key, "")) as c:
                for i in range(25):
                    r = c.post("/v1/track", json={"type": "track", "userId": f"u{t}", "event": "E", "messageId": f"t{t}-{i}"})
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert svc.writer.flush(10)
        assert len(_ids(store)) == 200
        assert svc.writer.log_commits < 200 and svc.writer.logged_seq == 200


def test_a_deployment_gets_the_log_beside_its_duckdb_file_and_code_built_settings_do_not(tmp_path):
    from leadscore.service.ingest_log import ingest_log_path
    from leadscore.store import open_store

    store = open_store(str(tmp_path / "x.duckdb"))
    memory = open_store(":memory:")
    try:
        assert Settings().ingest_log == "" and ingest_log_path(Settings(), store) is None
        deployed = Settings.from_env({})
        assert deployed.ingest_log == "auto"
        assert ingest_log_path(deployed, store) == tmp_path / "x.duckdb.ingest-log"
        assert ingest_log_path(deployed, memory) is None
        assert ingest_log_path(Settings.from_env({"LEADSCORE_INGEST_LOG": "off"}), store) is None
        assert ingest_log_path(Settings.from_env({"LEADSCORE_INGEST_LOG": str(tmp_path / "l")}), store) == tmp_path / "l"
    finally:
        store.close()
        memory.close()


def test_erasure_waits_for_the_logged_events_of_the_lead(store, tmp_path):
    """An event acknowledged into the log but not yet stored is erased with its lead, not stored after:
    with 3 s between two store transactions, e1 and e2 are still in the log when the erasure arrives."""
    admin = create_key(store, "admin", NOW, name="a").token
    with _Svc(store, tmp_path / "log", installers=("leadscore.service.api",), apply_interval_seconds=3.0) as svc:
        assert svc.post("/v1/batch", _batch(["e0"])).status_code == 200
        assert svc.writer.flush(10)
        assert svc.post("/v1/batch", {"batch": [
            {"type": "track", "userId": "u0", "event": "Page Viewed", "messageId": m,
             "timestamp": "2026-11-20T10:00:00Z"} for m in ("e1", "e2")]}).status_code == 200
        r = httpx.delete(f"{svc.srv.url}/api/leads/u0", headers={"Authorization": f"Bearer {admin}"}, timeout=20)
        assert r.status_code == 200, r.text
        assert r.json()["deleted"]["events"] == 3        # e0 stored before, e1 and e2 applied first
        assert svc.writer.flush(10)
    assert _ids(store) == []


def test_entries_not_handed_over_are_read_back_from_the_log(store, tmp_path):
    """`leadscore serve` appends in its ingestion process, which hands each logged request over a
    socket; one killed between its fsync and its message leaves entries the store's side never
    received. The next entry that arrives shows the gap, and the missing ones are read back from the
    log (decoded as at a restart) before it, in order; a repeated delivery is ignored."""
    from leadscore.service.ingest_api import log_decoder
    from leadscore.service.writer import GroupCommitWriter, _Pending

    decode = log_decoder(Settings())
    log = IngestLog(tmp_path / "log")
    front = IngestLog(tmp_path / "log", exclusive=False)   # the ingestion process's handle: no lock
    writer = GroupCommitWriter(store, [], log=log, decode=decode, appender=False).start()
    try:
        bodies = [json.dumps(_batch([f"g{i}a", f"g{i}b"])).encode() for i in range(3)]
        seqs = front.append([("batch", "2026-11-20T10:00:12+00:00", body) for body in bodies])
        item = _Pending(decode("batch", "2026-11-20T10:00:12+00:00", bodies[2]), seq=seqs[2])
        writer.receive([item])                  # only the third arrives
        assert writer.flush(10)
        assert _ids(store) == ["g0a", "g0b", "g1a", "g1b", "g2a", "g2b"]
        assert (writer.recovered_events, writer.received_seq, writer.applied_seq) == (4, seqs[2], seqs[2])
        commits = writer.commits
        writer.receive([item])                  # delivered twice: nothing queued again
        time.sleep(0.3)
        assert (writer.pending_events, writer.commits) == (0, commits)
        assert store.query("SELECT seq FROM ingest_log_position WHERE log_id = ?", (log.log_id,)) == [(seqs[2],)]
    finally:
        writer.stop()
        front.close()
        log.close()
