"""API keys: created with a token shown once, stored hashed, revocable, role-checked and rate-limited;
through the library, the `leadscore keys` CLI and the admin API of a real server (DuckDB and PostgreSQL)."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from types import SimpleNamespace

import httpx
import pytest
from click.testing import CliRunner
from fastapi import APIRouter, Depends

from leadscore.cli.main import main
from leadscore.service.app import create_app
from leadscore.service.auth import KeyError_, create_key, list_keys, require, revoke_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings

NOW = datetime(2026, 11, 23, 12, 0, 0)
LATER = datetime(2026, 11, 23, 13, 0, 0)


def test_a_key_is_stored_only_as_the_sha256_of_its_token(store):
    new = create_key(store, "write", NOW, name="web site")
    assert new.token.startswith("lsw_") and len(new.token) == 4 + 43
    [row] = store.query("SELECT * FROM api_keys")
    assert new.token not in [str(v) for v in row]
    assert hashlib.sha256(new.token.encode()).hexdigest() in row
    [listed] = list_keys(store)
    assert listed.public() == {"key_id": new.key.key_id, "name": "web site", "role": "write",
                               "prefix": new.token[:10], "rate_limit": None, "burst": None,
                               "created_at": "2026-11-23T12:00:00", "revoked_at": None}
    assert create_key(store, "write", NOW).token != new.token


def test_revoking_is_idempotent_and_unknown_ids_and_roles_are_refused(store):
    key = create_key(store, "read", NOW).key
    assert revoke_key(store, key.key_id, NOW).revoked_at == NOW
    assert revoke_key(store, key.key_id, LATER).revoked_at == NOW   # the first revocation stands
    assert list_keys(store, include_revoked=False) == []
    with pytest.raises(KeyError_, match="no key with id 'key_nope'"):
        revoke_key(store, "key_nope", NOW)
    with pytest.raises(KeyError_, match="role must be one of admin, read, write, not 'root'"):
        create_key(store, "root", NOW)
    with pytest.raises(KeyError_, match="rate_limit must be a positive number of requests, not -1"):
        create_key(store, "write", NOW, rate_limit=-1)


def test_the_keys_cli_creates_lists_and_revokes(store_url):
    runner = CliRunner()
    created = runner.invoke(main, ["--db", store_url, "keys", "create", "--role", "admin", "--name", "ops", "-q"])
    assert created.exit_code == 0, created.output
    token = created.output.strip()
    assert token.startswith("lsa_")
    listed = runner.invoke(main, ["--db", store_url, "keys", "list"])
    assert listed.exit_code == 0 and "ops" in listed.output and "admin" in listed.output
    as_json = runner.invoke(main, ["--db", store_url, "keys", "list", "--json"])
    [key] = [json.loads(line) for line in as_json.output.splitlines()]
    assert (key["role"], key["name"], key["prefix"]) == ("admin", "ops", token[:10])
    assert token not in listed.output + as_json.output
    key = SimpleNamespace(**key)
    revoked = runner.invoke(main, ["--db", store_url, "keys", "revoke", key.key_id])
    assert revoked.exit_code == 0 and f"revoked admin key {key.key_id} (ops)" in revoked.output
    bad = runner.invoke(main, ["--db", store_url, "keys", "revoke", "key_nope"])
    assert bad.exit_code == 1 and "no key with id 'key_nope'" in bad.output
    bad_role = runner.invoke(main, ["--db", store_url, "keys", "create", "--role", "root"])
    assert bad_role.exit_code == 2 and "'root' is not one of 'admin', 'read', 'write'" in bad_role.output


def _reader_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/things")
    def things(key=Depends(require("read"))):
        return {"key": key.key_id if key else None}

    return router


@pytest.fixture
def keyed(store):
    tokens = {r: create_key(store, r, NOW, name=r).token for r in ("admin", "read", "write")}
    app = create_app(store, Settings(), routers=[_reader_router()], installers=())
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        yield client, tokens, app


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_roles_read_keys_read_write_keys_only_ingest_admin_does_everything(keyed):
    client, tokens, _ = keyed
    assert client.get("/api/things", headers=_bearer(tokens["read"])).status_code == 200
    assert client.get("/api/things", headers={"X-API-Key": tokens["admin"]}).status_code == 200
    assert client.get("/api/things", auth=(tokens["read"], "")).status_code == 200
    r = client.get("/api/things", headers=_bearer(tokens["write"]))
    assert (r.status_code, r.json()) == (403, {"code": "forbidden", "message": "a write key cannot do this; it needs read access"})
    r = client.get("/api/things")
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    r = client.get("/api/keys", headers=_bearer(tokens["read"]))
    assert (r.status_code, r.json()["message"]) == (403, "a read key cannot do this; it needs admin access")


def test_the_admin_api_creates_a_key_shown_once_and_revokes_it_at_once(keyed):
    client, tokens, _ = keyed
    r = client.post("/api/keys", json={"role": "write", "name": "tracker"}, headers=_bearer(tokens["admin"]))
    assert r.status_code == 201
    token, key_id = r.json()["token"], r.json()["key"]["key_id"]
    track = {"type": "track", "userId": "u", "event": "E", "messageId": "k1"}
    assert client.post("/v1/track", json=track, auth=(token, "")).status_code == 200
    listing = client.get("/api/keys", headers=_bearer(tokens["admin"])).json()
    assert {k["name"] for k in listing} == {"admin", "read", "write", "tracker"}
    assert all("token" not in k and "token_hash" not in k for k in listing)
    r = client.delete(f"/api/keys/{key_id}", headers=_bearer(tokens["admin"]))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = client.post("/v1/track", json={**track, "messageId": "k2"}, auth=(token, ""))
    assert (r.status_code, r.json()["message"]) == (401, "unknown or revoked write key")
    r = client.delete("/api/keys/key_nope", headers=_bearer(tokens["admin"]))
    assert (r.status_code, r.json()) == (404, {"code": "not_found", "message": "no key with id 'key_nope'"})
    r = client.post("/api/keys", json={"role": "root"}, headers=_bearer(tokens["admin"]))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "role"


def test_a_read_key_over_its_rate_limit_gets_429_with_retry_after(keyed, store):
    client, _, app = keyed
    token = create_key(store, "read", NOW, rate_limit=0.01, burst=1).token
    app.state.keys.reload()
    assert client.get("/api/things", headers=_bearer(token)).status_code == 200
    r = client.get("/api/things", headers=_bearer(token))
    assert (r.status_code, r.json()["code"]) == (429, "rate_limited")
    assert 95 <= int(r.headers["Retry-After"]) <= 100   # a token takes 100 s at 0.01/s


def test_demo_mode_lets_loopback_read_without_a_key_but_never_write(store):
    app = create_app(store, Settings(demo=True), routers=[_reader_router()], installers=())
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url) as client:
        assert client.get("/api/things").json() == {"key": None}
        assert client.get("/api/keys").status_code == 401
        r = client.post("/v1/track", json={"type": "track", "userId": "u", "event": "E"})
        assert r.status_code == 401
