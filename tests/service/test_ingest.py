"""The Segment-compatible tracking API against a real uvicorn server on loopback, on DuckDB and PostgreSQL."""
from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import httpx
import pytest

from leadscore.service.app import create_app
from leadscore.service.auth import create_key, revoke_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings

NOW = datetime(2026, 11, 23, 12, 0, 0)


def _service(store, settings=None, **kw):
    keys = {role: create_key(store, role, NOW, name=f"test {role}").token for role in ("admin", "read", "write")}
    app = create_app(store, settings or Settings(), installers=(), **kw)
    return app, keys


@pytest.fixture
def svc(store):
    app, keys = _service(store)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        yield SimpleNamespace(url=srv.url, app=app, store=store, keys=keys, client=client)


def post(svc, path, body, key="write", **headers):
    auth = (svc.keys[key], "") if key else None
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return svc.client.post(path, content=data, auth=auth,
                           headers={"Content-Type": "application/json", **headers})


def count(store, where="TRUE"):
    return store.query(f"SELECT count(*) FROM events WHERE {where}")[0][0]


TRACK = {"type": "track", "userId": "u1", "event": "Demo Requested", "messageId": "m-1",
         "timestamp": "2026-11-20T10:00:00Z", "properties": {"plan": "pro"}}


def test_track_is_stored_and_answered_exactly_200_success(svc):
    r = post(svc, "/v1/track", TRACK)
    assert (r.status_code, r.content) == (200, b'{"success":true}')
    assert r.headers["content-type"] == "application/json"
    rows = svc.store.query("SELECT message_id, type, event, user_id, ts FROM events")
    assert rows == [("m-1", "track", "Demo Requested", "u1", datetime(2026, 11, 20, 10, 0, 0))]


@pytest.mark.parametrize("kind", ["page", "screen", "identify", "group", "alias"])
def test_each_single_call_endpoint_sets_the_type_from_its_path(svc, kind):
    msg = {"userId": "u1", "messageId": f"m-{kind}", "groupId": "acme", "previousId": "anon-1",
           "name": "Pricing", "traits": {"email": "a@b.com"}}
    r = post(svc, f"/v1/{kind}", msg)
    assert r.status_code == 200, r.text
    assert svc.store.query("SELECT type FROM events") == [(kind,)]


def test_a_type_that_contradicts_the_path_is_refused(svc):
    r = post(svc, "/v1/page", TRACK)
    assert r.status_code == 400
    assert r.json()["message"] == "type: 'track' does not match the endpoint /v1/page"
    assert count(svc.store) == 0


def test_write_key_in_the_body_alone_or_agreeing_with_basic_auth(svc):
    assert post(svc, "/v1/track", {**TRACK, "writeKey": svc.keys["write"]}, key=None).status_code == 200
    again = {**TRACK, "messageId": "m-2", "writeKey": svc.keys["write"]}
    assert post(svc, "/v1/track", again).status_code == 200
    batch = {"batch": [{**TRACK, "messageId": "m-3"}], "writeKey": svc.keys["write"]}
    assert post(svc, "/v1/batch", batch, key=None).status_code == 200
    assert count(svc.store) == 3


@pytest.mark.parametrize("case, expected", [
    ("missing", "a write key is required: HTTP Basic auth with the key as user name, or writeKey in the body"),
    ("unknown", "unknown or revoked write key"),
    ("disagree", "the Authorization header and the body's writeKey name different keys"),
    ("bad_basic", "Authorization: Basic credentials are not valid base64 of UTF-8 text"),
    ("digest", "Authorization scheme 'digest' is not supported; use Basic (key as user name) or Bearer"),
])
def test_missing_unknown_or_contradicting_keys_get_401(svc, case, expected):
    body, key, headers = dict(TRACK), None, {}
    if case == "unknown":
        body["writeKey"] = "lsw_not-a-key"
    elif case == "disagree":
        body["writeKey"] = svc.keys["admin"]
        key = "write"
    elif case == "bad_basic":
        headers["Authorization"] = "Basic !!!"
    elif case == "digest":
        headers["Authorization"] = "Digest abc"
    r = post(svc, "/v1/track", body, key=key, **headers)
    assert (r.status_code, r.json()) == (401, {"code": "unauthorized", "message": expected})
    assert count(svc.store) == 0


def test_a_read_key_cannot_ingest_but_an_admin_key_can(svc):
    r = post(svc, "/v1/track", TRACK, key="read")
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    assert r.json()["message"] == "a read key cannot send events; use a write key"
    assert post(svc, "/v1/track", TRACK, key="admin").status_code == 200


def test_a_revoked_key_is_refused_within_the_refresh_interval(svc):
    assert post(svc, "/v1/track", TRACK).status_code == 200
    key_id = svc.app.state.keys.authenticate(svc.keys["write"]).key_id
    revoke_key(svc.store, key_id, NOW)   # as `leadscore keys revoke` would, from outside the service
    time.sleep(svc.app.state.settings.key_refresh_seconds + 0.1)
    r = post(svc, "/v1/track", {**TRACK, "messageId": "m-after"})
    assert (r.status_code, r.json()["message"]) == (401, "unknown or revoked write key")
    assert count(svc.store) == 1


def test_gzip_bodies_are_inflated(svc):
    body = gzip.compress(json.dumps({"batch": [TRACK, {**TRACK, "messageId": "m-2"}]}).encode())
    r = post(svc, "/v1/batch", body, **{"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert count(svc.store) == 2


def test_batch_context_integrations_and_sent_at_are_merged_with_segments_clock_rule(svc):
    batch = {"sentAt": "2026-11-20T10:05:00Z", "context": {"ip": "10.0.0.1", "locale": "fr-FR"},
             "integrations": {"All": True},
             "batch": [{**TRACK, "context": {"locale": "de-DE"}},
                       {**TRACK, "messageId": "m-own", "sentAt": "2026-11-20T10:00:30Z"}]}
    before = datetime.utcnow()
    assert post(svc, "/v1/batch", batch).status_code == 200
    after = datetime.utcnow()
    rows = {r[0]: r[1:] for r in svc.store.query("SELECT message_id, ts, original_ts, sent_at, received_at, context FROM events")}
    ts, original, sent_at, received, context = rows["m-1"]
    assert original == datetime(2026, 11, 20, 10, 0, 0)
    assert sent_at == datetime(2026, 11, 20, 10, 5, 0)
    assert before <= received <= after
    assert ts == received - (sent_at - original)   # the device clock's skew is corrected
    ctx = json.loads(context) if isinstance(context, str) else context
    assert ctx == {"ip": "10.0.0.1", "locale": "de-DE"}  # the message's own keys win
    ts2, _, sent2, received2, _ = rows["m-own"]
    assert sent2 == datetime(2026, 11, 20, 10, 0, 30) and ts2 == received2 - (sent2 - original)


def test_rudderstack_identify_traits_are_read_from_context_traits(svc):
    msg = {"type": "identify", "userId": "u9", "messageId": "id-1",
           "context": {"traits": {"email": "x@y.com", "title": "CTO"}}}
    assert post(svc, "/v1/batch", {"batch": [msg]}).status_code == 200
    traits = dict(svc.store.query("SELECT key, value FROM lead_traits WHERE lead_id = 'u9'"))
    assert traits == {"email": "x@y.com", "title": "CTO"}


def test_an_invalid_batch_is_refused_whole_naming_each_bad_message(svc):
    batch = {"batch": [TRACK, {**TRACK, "messageId": "m-2"}, {"type": "page", "anonymousId": "a", "timestamp": "soon"},
                       {"type": "track", "userId": "u1", "messageId": "m-4"}]}
    r = post(svc, "/v1/batch", batch)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "invalid_message"
    assert [e["loc"] for e in body["errors"]] == ["batch[2].timestamp", "batch[3].event"]
    assert body["errors"][1]["message"] == "required for track"
    assert body["message"].endswith("; batch[3].event: required for track")
    assert count(svc.store) == 0


def test_a_resent_batch_is_stored_once(svc):
    batch = {"batch": [TRACK, {**TRACK, "messageId": "m-2"}, TRACK]}
    for _ in range(3):
        assert post(svc, "/v1/batch", batch).status_code == 200
    assert svc.store.query("SELECT message_id, count(*) FROM events GROUP BY 1 ORDER BY 1") == [("m-1", 1), ("m-2", 1)]


def test_concurrent_requests_share_commits_and_each_is_acknowledged_after_it(svc):
    """Group commit: 200 requests from 20 threads, every one stored, fewer transactions than requests."""
    committed = []
    svc.app.state.after_ingest.append(lambda result: committed.extend(result.new_message_ids))
    errors = []

    def send(t):
        with httpx.Client(base_url=svc.url, timeout=30) as c:
            for i in range(10):
                r = c.post("/v1/track", json={**TRACK, "messageId": f"t{t}-{i}"}, auth=(svc.keys["write"], ""))
                if r.status_code != 200:
                    errors.append(r.text)
                # acknowledged means readable now
                elif svc.store.query("SELECT count(*) FROM events WHERE message_id = ?", (f"t{t}-{i}",))[0][0] != 1:
                    errors.append(f"t{t}-{i} acknowledged but not stored")

    threads = [threading.Thread(target=send, args=(t,)) for t in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert count(svc.store) == 200
    writer = svc.app.state.writer
    assert writer.committed_events == 200 and writer.commits < 200
    deadline = time.monotonic() + 5
    while len(committed) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(committed) == sorted(f"t{t}-{i}" for t in range(20) for i in range(10))


def test_after_ingest_hooks_get_new_ids_and_touched_leads_and_a_failing_hook_changes_nothing(svc):
    seen = []

    def broken(result):
        raise RuntimeError("a re-scorer bug")

    svc.app.state.after_ingest.extend([broken, seen.append])
    batch = {"batch": [{"type": "identify", "userId": "lead-7", "anonymousId": "anon-7", "messageId": "h-1",
                        "traits": {"email": "h@x.io"}}]}
    assert post(svc, "/v1/batch", batch).status_code == 200
    assert post(svc, "/v1/batch", batch).status_code == 200  # a duplicate: nothing new
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stored = sum(r.stored for r in seen)
    ids = [i for r in seen for i in r.new_message_ids]
    assert (stored, ids) == (1, ["h-1"])
    assert set().union(*(r.leads_touched for r in seen)) == {"lead-7"}


def test_rate_limited_key_gets_429_with_retry_after(svc):
    token = create_key(svc.store, "write", NOW, name="slow", rate_limit=0.01, burst=2).token
    svc.app.state.keys.reload()
    codes = [post(svc, "/v1/track", {**TRACK, "messageId": f"r{i}"}, key=None,
                  Authorization=httpx.BasicAuth(token, "")._auth_header).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    r = post(svc, "/v1/track", {**TRACK, "messageId": "r9"}, key=None, Authorization=httpx.BasicAuth(token, "")._auth_header)
    # one token refills in 100 s at 0.01/s; Retry-After is whole seconds, rounded up
    assert r.status_code == 429 and 95 <= int(r.headers["Retry-After"]) <= 100
    assert r.json()["code"] == "rate_limited"
    assert count(svc.store) == 2


def test_a_full_write_queue_answers_503_with_retry_after_and_recovers(store):
    """The writer is held (as by a long transaction); the queue holds one request; the next gets 503."""
    app, keys = _service(store, Settings(max_pending_events=1))
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        results = {}
        with store._lock:   # the writer needs this lock to commit
            first = threading.Thread(target=lambda: results.setdefault(
                "first", client.post("/v1/track", json=TRACK, auth=(keys["write"], ""))))
            first.start()
            deadline = time.monotonic() + 5
            while app.state.writer.pending_events == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            r = client.post("/v1/track", json={**TRACK, "messageId": "m-2"}, auth=(keys["write"], ""))
            assert (r.status_code, r.headers["Retry-After"], r.json()["code"]) == (503, "1", "unavailable")
            assert "first" not in results   # not acknowledged before its commit
        first.join(10)
        assert results["first"].status_code == 200
        r = client.post("/v1/track", json={**TRACK, "messageId": "m-2"}, auth=(keys["write"], ""))
        assert r.status_code == 200
    assert store.query("SELECT message_id FROM events ORDER BY 1") == [("m-1",), ("m-2",)]


@pytest.mark.postgres
def test_postgres_going_away_answers_503_then_recovers_by_itself(pg_url):
    import uuid

    import psycopg

    from leadscore.store import open_store

    app_name = f"ls_ingest_{uuid.uuid4().hex[:8]}"   # to find this test's connections, and only those
    store = open_store(f"{pg_url}&application_name={app_name}")
    try:
        app, keys = _service(store)
        with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
            assert client.post("/v1/track", json=TRACK, auth=(keys["write"], "")).status_code == 200
            with psycopg.connect(pg_url, autocommit=True) as admin:
                killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                       "WHERE application_name = %s", (app_name,)).fetchone()[0]
            assert killed >= 2   # the writer's and the request loop's connections
            r = client.post("/v1/track", json={**TRACK, "messageId": "m-2"}, auth=(keys["write"], ""))
            assert (r.status_code, r.headers["Retry-After"]) == (503, "1")
            assert r.json()["message"].startswith("the store is unavailable")
            r = client.post("/v1/track", json={**TRACK, "messageId": "m-2"}, auth=(keys["write"], ""))
            assert r.status_code == 200
    finally:
        store.close()
    check = open_store(pg_url)   # this thread's connection was terminated too
    assert check.query("SELECT message_id FROM events ORDER BY 1") == [("m-1",), ("m-2",)]
    check.close()


def test_tracker_static_files_and_cors_for_browser_trackers(store, tmp_path):
    (tmp_path / "leadscore-video.js").write_text("/* tracker */")
    app, keys = _service(store, Settings(tracker_dir=tmp_path))
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url) as client:
        r = client.get("/tracker/leadscore-video.js")
        assert (r.status_code, r.text) == (200, "/* tracker */")
        pre = client.options("/v1/batch", headers={"Origin": "https://customer.example",
                                                   "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
        r = client.post("/v1/track", content=json.dumps({**TRACK, "writeKey": keys["write"]}),
                        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://customer.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        # the REST API keeps the same-origin policy
        assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://x.example"}).headers


@pytest.mark.parametrize("body, depth", [
    (b'[]', 1),
    (b'{"k": {"k": {"k": {}}}}', 4),
    (b'{"a": "[[[{", "b": [1, [2, {"c": 3}]]}', 4),          # brackets in a string are text
    (b'{"a": "x\\"[[[{", "b": [[]]}', 3),                    # ... after an escaped quote too
    (b'{"a": "\\\\", "b": "]]]", "c": {"d": []}}', 3),       # an escaped backslash ends no string
])
def test_body_depth_counts_nesting_outside_strings(body, depth):
    from leadscore.service.ingest_api import body_depth, parse_json

    parse_json(body)   # valid JSON, as it is when body_depth is called
    assert body_depth(body) == depth
