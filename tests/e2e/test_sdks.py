"""The official Segment and RudderStack Python SDKs, unchanged but for their host, against a real
leadscore server on loopback (DuckDB and PostgreSQL): success, gzip, a 400 (batch dropped, on_error
called), a 503 + Retry-After (batch retried, stored once) and resent messageIds stored once."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest

from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings

NOW = datetime(2026, 11, 23, 12, 0, 0)


class Recorder:
    """Wraps the ASGI app to record each /v1/batch response status (observing, not replacing)."""

    def __init__(self, app):
        self.app = app
        self.state = app.state
        self.statuses: list[int] = []

    async def __call__(self, scope, receive, send):
        async def recording_send(message):
            if message["type"] == "http.response.start" and scope.get("path") == "/v1/batch":
                self.statuses.append(message["status"])
            await send(message)
        await self.app(scope, receive, recording_send)


def _segment(key, url, on_error, **kw):
    from segment.analytics import Client
    return Client(key, host=url, on_error=on_error, **{"upload_interval": 0.05, "max_retries": 5, **kw})


def _rudder(key, url, on_error, **kw):
    from rudderstack.analytics import Client  # runs load_dotenv() at import; harmless here
    return Client(key, host=url, on_error=on_error, **{"upload_interval": 0.05, "max_retries": 5, **kw})


SDKS = {"segment": _segment, "rudder": _rudder}


@pytest.fixture
def server(store):
    token = create_key(store, "write", NOW, name="sdk").token
    app = Recorder(create_app(store, Settings(max_pending_events=1), installers=()))
    with ServerThread(app) as srv:
        yield srv, app, token


def _events(store):
    return store.query("SELECT message_id, type, event, user_id, properties FROM events ORDER BY message_id")


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_sdk_calls_are_stored_with_only_the_host_changed(server, store, sdk):
    srv, app, token = server
    errors = []
    client = SDKS[sdk](token, srv.url, lambda e, batch: errors.append(e), gzip=True)
    client.identify("u1", {"email": "a@b.com", "title": "CTO"}, message_id="i-1")
    client.track("u1", "Demo Requested", {"plan": "pro"}, message_id="t-1")
    client.page("u1", category=None, name="Pricing", properties={"path": "/pricing"}, message_id="p-1")
    client.group("u1", "acme", {"industry": "SaaS"}, message_id="g-1")
    client.alias("anon-1", "u1", message_id="a-1")
    client.track("u1", "Demo Requested", {"plan": "pro"}, message_id="t-1")   # resent: stored once
    client.flush()
    client.shutdown()
    assert errors == []
    assert set(app.statuses) == {200}
    rows = _events(store)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("a-1", "alias", None, "u1"), ("g-1", "group", None, "u1"), ("i-1", "identify", None, "u1"),
        ("p-1", "page", None, "u1"), ("t-1", "track", "Demo Requested", "u1")]
    traits = dict(store.query("SELECT key, value FROM lead_traits WHERE lead_id = 'u1'"))
    assert (traits["email"], traits["title"], traits["account_id"]) == ("a@b.com", "CTO", "acme")
    props = {r[0]: (json.loads(r[4]) if isinstance(r[4], str) else r[4]) for r in rows}
    assert props["p-1"]["path"] == "/pricing"


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_a_refused_batch_is_dropped_and_on_error_called(server, store, sdk):
    srv, app, token = server
    errors = []
    client = SDKS[sdk](token, srv.url, lambda e, batch: errors.append((e, [m["messageId"] for m in batch])))
    client.track("u1", "Good", message_id="ok-1")
    client.track("u1", "From the past", timestamp=datetime(1900, 1, 1, tzinfo=timezone.utc), message_id="bad-1")
    client.flush()
    client.shutdown()
    assert app.statuses == [400]       # sent once, never retried
    [(exc, ids)] = errors
    assert ids == ["ok-1", "bad-1"]
    assert exc.status == 400 and exc.code == "invalid_message"
    assert "batch[1].timestamp: timestamp 1900-01-01T00:00:00 is outside 1990–2200" in exc.message
    assert _events(store) == []


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_a_503_with_retry_after_is_retried_and_stored_once(server, store, sdk):
    """The writer is held and the one-event queue is full, so the SDK's batch gets 503 + Retry-After;
    once the writer is free again the SDK's retry is stored, once."""
    srv, app, token = server
    errors = []
    filler: dict = {}
    with store._lock:   # the writer needs it to commit: hold it as a long transaction would
        t = threading.Thread(target=lambda: filler.setdefault("r", httpx.post(
            srv.url + "/v1/track", json={"userId": "f", "event": "Filler", "messageId": "f-1"},
            auth=(token, ""), timeout=30)))
        t.start()
        deadline = time.monotonic() + 5
        while app.state.writer.pending_events == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        client = SDKS[sdk](token, srv.url, lambda e, batch: errors.append(e))
        client.track("u1", "Trial Started", message_id="s-1")
        client.track("u1", "Product Used", {"feature": "api"}, message_id="s-2")
        deadline = time.monotonic() + 10
        while 503 not in app.statuses and time.monotonic() < deadline:
            time.sleep(0.01)
    t.join(10)
    client.flush()
    client.shutdown()
    assert errors == []
    assert filler["r"].status_code == 200
    assert app.statuses[0] == 503 and app.statuses[-1] == 200
    assert [r[0] for r in _events(store)] == ["f-1", "s-1", "s-2"]


def test_a_rudderstack_batch_just_over_4_mib_is_accepted_whole(server, store):
    """The Rudder SDK closes a batch once it holds 4 MiB, so a batch runs over by one message."""
    srv, app, token = server
    errors = []
    # a long interval and a large upload_size: only the 4 MiB limit closes a batch
    client = _rudder(token, srv.url, lambda e, batch: errors.append(e), upload_size=1000, upload_interval=5.0)
    blob = "x" * 30_000
    for i in range(145):            # 145 × ~30 KB ≈ 4.15 MiB
        client.track("u1", "Resource Downloaded", {"blob": blob}, message_id=f"big-{i:03d}")
    client.flush()
    client.shutdown()
    assert errors == []
    assert set(app.statuses) == {200} and len(app.statuses) == 2   # one batch of 4 MiB + 1 message, then the rest
    assert store.query("SELECT count(*) FROM events")[0][0] == 145
