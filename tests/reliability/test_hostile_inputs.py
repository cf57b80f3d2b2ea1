"""The hostile-input corpus for the ingestion API (issue 8): every broken or hostile request gets a 4xx
with a clear code and message, nothing of it is stored, the server stays up and its memory bounded.
Runs against one real server per backend (DuckDB and PostgreSQL)."""
from __future__ import annotations

import gzip
import json
import uuid
import zlib
from datetime import datetime
from types import SimpleNamespace

import httpx
import psycopg
import pytest

from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings
from leadscore.store import open_store

NOW = datetime(2026, 11, 23, 12, 0, 0)
OK = {"type": "track", "userId": "u1", "event": "Demo Requested", "messageId": "ok-1"}
JSON = {"Content-Type": "application/json"}


def _j(obj) -> bytes:
    return json.dumps(obj).encode()


def _batch(*msgs, **extra) -> bytes:
    return _j({"batch": list(msgs), **extra})


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def _bomb(inflated: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    out = [z.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join(out) + z.flush()


BIG = "x" * 33_000


def _size(msg) -> int:
    """A message's size as the limit counts it: its compact JSON encoding, in bytes."""
    return len(json.dumps(msg, separators=(",", ":")).encode())
# (id, path, body, headers (None: JSON + the write key), key role, status, code, message)
# message: the exact message, or "~text" for "contains text" where the wording is the parser's own.
CASES = [
    # ---- transport
    ("form-content-type", "/v1/track", _j(OK), {"Content-Type": "application/x-www-form-urlencoded"}, "write",
     415, "unsupported_media_type", "Content-Type 'application/x-www-form-urlencoded' is not supported; send application/json"),
    ("no-content-type", "/v1/track", _j(OK), {}, "write",
     415, "unsupported_media_type", "Content-Type is missing; send application/json"),
    ("xml-content-type", "/v1/batch", b"<batch/>", {"Content-Type": "application/xml"}, "write",
     415, "unsupported_media_type", "Content-Type 'application/xml' is not supported; send application/json"),
    ("multipart", "/v1/batch", b"--x--", {"Content-Type": "multipart/form-data; boundary=x"}, "write",
     415, "unsupported_media_type", "Content-Type 'multipart/form-data' is not supported; send application/json"),
    ("latin1-charset", "/v1/track", _j(OK), {"Content-Type": "application/json; charset=latin-1"}, "write",
     415, "unsupported_media_type", "charset 'latin-1' is not supported; send UTF-8"),
    ("brotli-encoding", "/v1/track", _j(OK), {**JSON, "Content-Encoding": "br"}, "write",
     415, "unsupported_encoding", "Content-Encoding 'br' is not supported; send gzip, deflate or no encoding"),
    ("gzip-header-plain-body", "/v1/track", _j(OK), {**JSON, "Content-Encoding": "gzip"}, "write",
     400, "invalid_encoding", "~the body is not valid gzip data"),
    ("truncated-gzip", "/v1/batch", gzip.compress(_batch(OK))[:-12], {**JSON, "Content-Encoding": "gzip"}, "write",
     400, "invalid_encoding", "the gzip stream is truncated"),
    ("gzip-bomb", "/v1/batch", _bomb(256 << 20), {**JSON, "Content-Encoding": "gzip"}, "write",
     413, "request_too_large", "the request body exceeds 4259840 bytes after inflation"),
    ("over-4mib", "/v1/batch", b'{"batch": [' + b" " * (4 << 20) + b" " * (64 << 10) + b"]}", None, "write",
     413, "request_too_large", "the request body (4259853 bytes) exceeds 4259840 bytes"),
    ("get-method", "GET /v1/track", b"", None, "write", 405, "method_not_allowed", "Method Not Allowed"),
    # ---- keys
    ("no-key", "/v1/track", _j(OK), None, None,
     401, "unauthorized", "a write key is required: HTTP Basic auth with the key as user name, or writeKey in the body"),
    ("unknown-key", "/v1/track", _j({**OK, "writeKey": "lsw_guess"}), None, None, 401, "unauthorized", "unknown or revoked write key"),
    ("sql-in-key", "/v1/track", _j({**OK, "writeKey": "' OR '1'='1"}), None, None, 401, "unauthorized", "unknown or revoked write key"),
    ("key-not-a-string", "/v1/track", _j({**OK, "writeKey": 12345}), None, None, 401, "unauthorized", "writeKey must be a non-empty string"),
    ("garbage-basic", "/v1/track", _j(OK), {**JSON, "Authorization": "Basic %%%"}, None,
     401, "unauthorized", "Authorization: Basic credentials are not valid base64 of UTF-8 text"),
    ("read-key", "/v1/track", _j(OK), None, "read", 403, "forbidden", "a read key cannot send events; use a write key"),
    # ---- JSON
    ("empty-body", "/v1/track", b"", None, "write", 400, "invalid_json", "the body is empty; send a JSON object"),
    ("truncated-json", "/v1/track", b'{"type": "track", "userId": ', None, "write",
     400, "invalid_json", "the body is not valid JSON: Expecting value at line 1 column 29"),
    ("trailing-garbage", "/v1/track", _j(OK) + b" x", None, "write",
     400, "invalid_json", "~the body is not valid JSON: Extra data"),
    ("single-quotes", "/v1/track", b"{'type': 'track'}", None, "write",
     400, "invalid_json", "~the body is not valid JSON: Expecting property name enclosed in double quotes"),
    ("invalid-utf8", "/v1/track", b'{"type":"track","userId":"\xff\xfe","event":"E"}', None, "write",
     400, "invalid_utf8", "the body is not valid UTF-8 (byte 26: invalid start byte)"),
    ("nan", "/v1/track", b'{"type":"track","userId":"u","event":"E","properties":{"v":NaN}}', None, "write",
     400, "invalid_json", "NaN is not a JSON number; send null or a finite number"),
    ("infinity", "/v1/track", b'{"type":"track","userId":"u","event":"E","properties":{"v":-Infinity}}', None, "write",
     400, "invalid_json", "-Infinity is not a JSON number; send null or a finite number"),
    ("huge-float", "/v1/track", b'{"type":"track","userId":"u","event":"E","properties":{"v":1e999}}', None, "write",
     400, "invalid_json", "the number 1e999 is too large for a double"),
    ("huge-int", "/v1/track", b'{"type":"track","userId":"u","event":"E","properties":{"v":18446744073709551616}}', None, "write",
     400, "invalid_json", "the integer 18446744073709551616 does not fit in 64 bits"),
    ("int-5000-digits", "/v1/track", b'{"type":"track","userId":"u","event":"E","properties":{"v":' + b"9" * 5000 + b"}}", None, "write",
     400, "invalid_json", "the number " + "9" * 40 + "… has too many digits"),
    ("duplicate-keys", "/v1/track", b'{"type":"track","type":"identify","userId":"u","event":"E"}', None, "write",
     400, "invalid_json", "the key 'type' appears twice in one object"),
    ("nesting-100k", "/v1/track", b'{"type":"track","userId":"u","event":"E","properties":' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "write",
     400, "invalid_json", "the JSON is nested too deeply"),
    ("nesting-40", "/v1/track", _j({**OK, "properties": _nested(40)}), None, "write",
     400, "invalid_message", "properties" + ".n" * 31 + ": nested more than 32 levels deep"),
    ("top-level-array", "/v1/batch", _j([OK]), None, "write", 400, "invalid_message", "the body must be a JSON object, got list"),
    ("top-level-string", "/v1/track", _j("track"), None, "write", 400, "invalid_message", "the body must be a JSON object, got str"),
    ("json-null", "/v1/track", b"null", None, "write", 400, "invalid_message", "the body must be a JSON object, got NoneType"),
    # ---- strings and fields
    ("nul-in-event", "/v1/track", _j({**OK, "event": "Demo\u0000Requested"}), None, "write",
     400, "invalid_message", "event: contains a NUL character (\\u0000), which cannot be stored"),
    ("nul-in-key", "/v1/track", _j({**OK, "properties": {"a\u0000b": 1}}), None, "write",
     400, "invalid_message", "properties: a key contains a NUL character (\\u0000), which cannot be stored"),
    ("nul-in-batch-context", "/v1/batch", _batch(OK, context={"ip": "1.2.3.4\u0000"}), None, "write",
     400, "invalid_message", "context.ip: contains a NUL character (\\u0000), which cannot be stored"),
    ("lone-surrogate", "/v1/track", b'{"type":"track","userId":"u","event":"E","properties":{"name":"\\ud800"}}', None, "write",
     400, "invalid_message", "properties.name: contains an unpaired UTF-16 surrogate (an invalid \\uD800-\\uDFFF escape)"),
    ("unknown-field", "/v1/track", _j({**OK, "isAdmin": True}), None, "write",
     400, "invalid_message", "isAdmin: unknown field (not part of the Segment spec)"),
    ("unknown-batch-field", "/v1/batch", _batch(OK, dropTables=True), None, "write",
     400, "invalid_message", "dropTables: unknown field (a batch holds batch, sentAt, context, integrations, writeKey)"),
    ("type-mismatch-path", "/v1/identify", _j(OK), None, "write",
     400, "invalid_message", "type: 'track' does not match the endpoint /v1/identify"),
    # ---- batch shape
    ("batch-missing", "/v1/batch", _j({"sentAt": "2026-11-23T00:00:00Z"}), None, "write",
     400, "invalid_message", "batch: required: a list of messages"),
    ("batch-not-list", "/v1/batch", _j({"batch": OK}), None, "write",
     400, "invalid_message", "batch: expected a list of messages, got dict"),
    ("batch-empty", "/v1/batch", _batch(), None, "write", 400, "invalid_message", "batch: empty: send at least one message"),
    ("batch-too-many", "/v1/batch", _j({"batch": [{"type": "track"}] * 10_001}), None, "write",
     400, "invalid_message", "batch: 10001 messages; the limit is 10000"),
    ("batch-item-number", "/v1/batch", _batch(OK, 42), None, "write",
     400, "invalid_message", "batch[1]: expected a JSON object, got int"),
    ("batch-context-string", "/v1/batch", _batch(OK, context="x"), None, "write",
     400, "invalid_message", "context: expected a JSON object, got str"),
    ("item-context-string-with-defaults", "/v1/batch", _batch({**OK, "context": "x"}, context={"ip": "1.1.1.1"}), None, "write",
     400, "invalid_message", "batch[0].context: expected a JSON object, got str"),
    ("batch-sent-at-garbage", "/v1/batch", _batch(OK, sentAt="yesterday"), None, "write",
     400, "invalid_message", "~sentAt: Input should be a valid datetime"),
    ("message-over-32kb", "/v1/batch", _batch(OK, {**OK, "messageId": "big", "properties": {"blob": BIG}}), None, "write",
     413, "message_too_large", f"batch[1]: the message is {_size({**OK, 'messageId': 'big', 'properties': {'blob': BIG}})} bytes; the limit is 32768"),
    ("single-over-32kb", "/v1/track", _j({**OK, "properties": {"blob": BIG}}), None, "write",
     413, "message_too_large", f"message: the message is {_size({**OK, 'properties': {'blob': BIG}})} bytes; the limit is 32768"),
    # ---- messages
    ("missing-type", "/v1/batch", _batch({"userId": "u", "event": "E"}), None, "write",
     400, "invalid_message", "batch[0].type: Field required"),
    ("unknown-type", "/v1/batch", _batch({**OK, "type": "purchase"}), None, "write",
     400, "invalid_message", "~batch[0].type: Input should be 'track', 'page', 'screen', 'identify', 'group' or 'alias'"),
    ("track-without-event", "/v1/batch", _batch({"type": "track", "userId": "u"}), None, "write",
     400, "invalid_message", "batch[0].event: required for track"),
    ("track-blank-event", "/v1/track", _j({**OK, "event": "   "}), None, "write",
     400, "invalid_message", "event: required for track"),
    ("no-ids", "/v1/track", _j({"type": "track", "event": "E", "userId": None, "anonymousId": ""}), None, "write",
     400, "invalid_message", "message: userId or anonymousId is required"),
    ("group-without-group-id", "/v1/group", _j({"userId": "u"}), None, "write",
     400, "invalid_message", "groupId: required for group"),
    ("alias-without-previous-id", "/v1/alias", _j({"userId": "u"}), None, "write",
     400, "invalid_message", "previousId: required for alias"),
    ("timestamp-garbage", "/v1/track", _j({**OK, "timestamp": "next tuesday"}), None, "write",
     400, "invalid_message", "~timestamp: Input should be a valid datetime"),
    ("timestamp-year-1200", "/v1/track", _j({**OK, "timestamp": "1200-01-01T00:00:00Z"}), None, "write",
     400, "invalid_message", "timestamp: timestamp 1200-01-01T00:00:00 is outside 1990–2200"),
    ("timestamp-year-3000", "/v1/track", _j({**OK, "timestamp": "3000-01-01T00:00:00Z"}), None, "write",
     400, "invalid_message", "timestamp: timestamp 3000-01-01T00:00:00 is outside 1990–2200"),
    ("skew-centuries", "/v1/track", _j({**OK, "timestamp": "1991-01-01T00:00:00Z", "sentAt": "2199-01-01T00:00:00Z"}), None, "write",
     400, "invalid_message", "sentAt: sentAt and timestamp put the event outside any plausible time"),
    ("message-id-101-chars", "/v1/track", _j({**OK, "messageId": "m" * 101}), None, "write",
     400, "invalid_message", "messageId: messageId is at most 100 characters"),
    ("user-id-201-chars", "/v1/track", _j({**OK, "userId": "u" * 201}), None, "write",
     400, "invalid_message", "userId: ids are at most 200 characters"),
    ("properties-string", "/v1/track", _j({**OK, "properties": "plan=pro"}), None, "write",
     400, "invalid_message", "properties: Input should be a valid dictionary"),
    ("event-number", "/v1/track", _j({**OK, "event": 42}), None, "write",
     400, "invalid_message", "event: Input should be a valid string"),
    ("user-id-object", "/v1/track", _j({**OK, "userId": {"$ne": None}}), None, "write",
     400, "invalid_message", "userId: expected a string or a number"),
    ("one-bad-among-good", "/v1/batch", _batch(OK, {**OK, "messageId": "ok-2"}, {"type": "track", "userId": "u", "messageId": "bad"}), None, "write",
     400, "invalid_message", "batch[2].event: required for track"),
]

# Injection strings are valid text: they must be stored verbatim and do no harm.
INERT = {
    "name": "Robert'); DROP TABLE events;--",
    "title": "<script>alert(document.cookie)</script>",
    "company": {"name": "\" OR 1=1 --", "industry": "'; DELETE FROM api_keys; --"},
    "note": "{{7*7}} ${jndi:ldap://x} %s%s%n",
}


def _pg_schema():
    import os
    from urllib.parse import quote

    base = os.environ.get("LEADSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return base, schema, f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def svc(request, tmp_path_factory):
    schema = base = None
    if request.param == "duckdb":
        url = str(tmp_path_factory.mktemp("hostile") / "leadscore.duckdb")
    else:
        base, schema, url = _pg_schema()
    store = open_store(url)
    keys = {r: create_key(store, r, NOW).token for r in ("write", "read")}
    app = create_app(store, Settings(), installers=())
    try:
        with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
            yield SimpleNamespace(client=client, keys=keys, store=store, app=app)
    finally:
        store.close()
        if schema:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_the_corpus_has_at_least_50_cases():
    assert len(CASES) >= 50 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_request_is_refused_clearly_and_stores_nothing(svc, case):
    _, path, body, headers, role, status, code, message = case
    method = "POST"
    if " " in path:
        method, path = path.split(" ")
    sent_headers = dict(JSON if headers is None else headers)
    auth = (svc.keys[role], "") if role else None
    before = _rss_kib()
    r = svc.client.request(method, path, content=body or None, headers=sent_headers, auth=auth)
    grew_mib = (_rss_kib() - before) / 1024
    assert r.status_code == status, r.text
    got = r.json()
    assert got["code"] == code
    if message.startswith("~"):
        assert message[1:] in got["message"]
    else:
        assert got["message"] == message
    if got.get("errors"):
        assert all(set(e) == {"loc", "message"} for e in got["errors"])
    assert svc.store.query("SELECT count(*) FROM events")[0][0] == 0
    # memory stays bounded: a 256 MiB gzip bomb or a 4 MiB body costs a few MiB at most
    assert grew_mib < 64
    # and the server is still up
    assert svc.client.get("/healthz").json()["status"] == "ok"


def test_injection_strings_are_stored_verbatim_and_harm_nothing(svc):
    msg = {"type": "identify", "userId": "Robert'); DROP TABLE leads;--", "messageId": "inert-1", "traits": INERT}
    r = svc.client.post("/v1/identify", json=msg, auth=(svc.keys["write"], ""))
    assert r.status_code == 200
    traits = dict(svc.store.query("SELECT key, value FROM lead_traits WHERE lead_id = ?", (msg["userId"],)))
    assert traits == {"name": INERT["name"], "title": INERT["title"], "company.name": INERT["company"]["name"],
                      "company.industry": INERT["company"]["industry"], "note": INERT["note"]}
    assert svc.store.query("SELECT count(*) FROM api_keys")[0][0] == 2
    assert svc.store.query("SELECT count(*) FROM events")[0][0] == 1
    svc.store.execute("DELETE FROM events")
    svc.store.execute("DELETE FROM lead_traits")
    svc.store.execute("DELETE FROM leads")
