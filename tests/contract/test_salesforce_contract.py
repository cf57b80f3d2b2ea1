"""Salesforce REST contract over TLS (self-signed certificate made in the test): sObject Collections
PATCH with ``allOrNone: false``, ≤200 records, per-record results in order, 401 refresh, 403 limit, 400."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import pytest
from tests.contract.fakeapi import FakeApi, Request, expect

from leadscore.service.crm import CrmSyncWorker, SalesforceClient, add_crm_target, list_crm_targets
from leadscore.service.crm.mapping import FieldMapping
from leadscore.service.outbox import enqueue_crm_syncs, list_crm_sync, replay_crm

T0 = datetime(2026, 11, 23, 12, 0, 0)
COLLECTIONS = "/services/data/v60.0/composite/sobjects"
FIELDS = {"Lead_Score__c": float, "Lead_Fit__c": float, "Lead_Engagement__c": float, "Lead_Tier__c": str,
          "Lead_Stage__c": str, "Custom_Score__c": float, "LeadScore_Id__c": str}


@dataclass
class FakeSalesforce(FakeApi):
    token: str = "00D-first-token"
    leads: dict = field(default_factory=dict)        # Id -> fields
    ext_field: str | None = None

    def handle(self, req: Request):
        if (req.method, req.path) == ("POST", "/services/oauth2/token"):
            return self.oauth(req)
        auth = req.headers.get("authorization", "")
        expect(auth.startswith("Bearer "), "Authorization must be 'Bearer <access token>'")
        if auth != f"Bearer {self.token}":
            return 401, {}, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        path = COLLECTIONS + (f"/Lead/{self.ext_field}" if self.ext_field else "")
        expect((req.method, req.path) == ("PATCH", path), f"expected PATCH {path}")
        body = req.body
        expect(isinstance(body, dict) and body.get("allOrNone") is False, "allOrNone must be false")
        records = body.get("records")
        expect(isinstance(records, list) and 1 <= len(records) <= 200, f"1 to 200 records, got {len(records or [])}")
        results = []
        for rec in records:
            expect(rec.get("attributes") == {"type": "Lead"}, "each record carries attributes.type Lead")
            key = rec.get(self.ext_field or "id")
            expect(isinstance(key, str) and key, f"each record carries {self.ext_field or 'id'}")
            for name, value in rec.items():
                if name in ("attributes", "id"):
                    continue
                expect(name in FIELDS, f"{name} is not a field of Lead")
                if FIELDS[name] is float:
                    expect(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} must be a JSON number")
                else:
                    expect(isinstance(value, str), f"{name} must be a string")
            if key not in self.leads:
                results.append({"success": False, "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted",
                                                              "fields": []}]})
                continue
            self.leads[key].update({k: v for k, v in rec.items() if k not in ("attributes", "id")})
            results.append({"id": key, "success": True, "errors": []})
        return 200, {"Sforce-Limit-Info": "api-usage=42/15000"}, results


    def oauth(self, req: Request):
        expect(req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"), "a form body")
        form = parse_qs(req.raw.decode())
        expect(form.get("grant_type") == ["refresh_token"], "grant_type=refresh_token")
        expect(form.get("client_id") == ["3MVG9-client"], "client_id of the connected app")
        if form.get("refresh_token") != ["5Aep-refresh"] or form.get("client_secret") != ["s3cret"]:
            return 400, {}, {"error": "invalid_grant", "error_description": "expired access/refresh token"}
        self.token = "00D-refreshed-token"
        return 200, {}, {"access_token": self.token, "instance_url": self.url, "token_type": "Bearer",
                         "issued_at": "1795435200000", "id": f"{self.url}/id/00D/005", "signature": "c2ln"}


@pytest.fixture
def salesforce(server_tls):
    api = FakeSalesforce(tls=server_tls).start()
    yield api
    api.stop()
    assert api.violations == []


def _leads(store, sf, n):
    rows = []
    for i in range(n):
        sf_id = f"00Q{i:012d}"
        sf.leads[sf_id] = {}
        rows.append((f"l{i}", {"email": f"l{i}@example.com", "salesforce_id": sf_id}, T0))
    store.add_leads(rows)


def _row(lead, score, as_of=T0, tier="warm", stage="mql"):
    return {"lead_id": lead, "as_of": as_of, "score": score, "fit": 40.0, "engagement": score - 40, "tier": tier, "stage": stage}


def _target(store, sf, tls_cert, **kw):
    kw.setdefault("token", sf.token)
    return add_crm_target(store, "sf", "salesforce", now=T0, base_url=sf.url, options={"ca_file": tls_cert[0]}, **kw)


def test_collections_patch_over_tls_in_batches_of_200_with_results_in_order(store, salesforce, tls_cert):
    _target(store, salesforce, tls_cert)
    _leads(store, salesforce, 450)
    salesforce.leads.pop("00Q000000000007")  # deleted in Salesforce: that record fails, the rest succeed
    enqueue_crm_syncs(store, [_row(f"l{i}", 50 + i / 2) for i in range(450)], now=T0)
    with CrmSyncWorker(store, rng=random.Random(1)) as w:
        report = w.run_once(T0)
    assert (report.synced, report.dead) == (449, 1)
    calls = salesforce.calls("PATCH", COLLECTIONS)
    assert [len(c.body["records"]) for c in calls] == [200, 200, 50]
    assert calls[0].body["records"][3] == {"attributes": {"type": "Lead"}, "id": "00Q000000000003", "Lead_Score__c": 51.5,
                                           "Lead_Fit__c": 40, "Lead_Engagement__c": 11.5, "Lead_Tier__c": "warm", "Lead_Stage__c": "mql"}
    assert salesforce.leads["00Q000000000449"]["Lead_Score__c"] == 274.5
    [dead] = list_crm_sync(store, status="dead")
    assert (dead["lead_id"], dead["last_error"]) == ("l7", "ENTITY_IS_DELETED: entity is deleted")
    assert list_crm_targets(store)[0].limit_info == "api-usage=42/15000"


def test_expired_session_is_refreshed_through_the_callback_and_retried(store, salesforce, tls_cert):
    _target(store, salesforce, tls_cert)
    _leads(store, salesforce, 2)
    salesforce.token = "00D-second-token"  # the stored token expired
    refreshed = []

    def refresh():
        refreshed.append(1)
        return "00D-second-token"

    enqueue_crm_syncs(store, [_row("l0", 70), _row("l1", 71)], now=T0)
    with CrmSyncWorker(store, refresh={"sf": refresh}) as w:
        assert w.run_once(T0).synced == 2
    assert refreshed == [1]
    assert [c.headers["authorization"] for c in salesforce.requests] == ["Bearer 00D-first-token", "Bearer 00D-second-token"]


def test_request_limit_exceeded_stops_and_waits(store, salesforce, tls_cert):
    _target(store, salesforce, tls_cert)
    _leads(store, salesforce, 3)
    salesforce.faults.append(lambda req: (403, {}, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]))
    enqueue_crm_syncs(store, [_row(f"l{i}", 70) for i in range(3)], now=T0)
    with CrmSyncWorker(store) as w:
        assert w.run_once(T0).requests_paused == ["sf"]
        assert list_crm_targets(store)[0].paused_until == T0 + timedelta(hours=1)
        assert [r["attempts"] for r in list_crm_sync(store)] == [0, 0, 0]
        assert w.run_once(T0 + timedelta(minutes=59)).synced == 0
        assert len(salesforce.requests) == 1
        assert w.run_once(T0 + timedelta(hours=1)).synced == 3


def test_400_is_not_retried_and_goes_to_the_dead_letters_then_replays(store, salesforce, tls_cert):
    _target(store, salesforce, tls_cert)
    _leads(store, salesforce, 2)
    salesforce.faults.append(lambda req: (400, {}, [{"message": "Json Deserialization failed", "errorCode": "JSON_PARSER_ERROR"}]))
    enqueue_crm_syncs(store, [_row("l0", 70), _row("l1", 71)], now=T0)
    with CrmSyncWorker(store) as w:
        assert w.run_once(T0).dead == 2
        assert w.run_once(T0 + timedelta(days=2)).synced == 0
        assert {r["last_error"] for r in list_crm_sync(store, status="dead")} == \
            {'HTTP 400: [{"message": "Json Deserialization failed", "errorCode": "JSON_PARSER_ERROR"}]'}
        assert replay_crm(store, now=T0 + timedelta(days=2), target_name="sf") == 2
        assert w.run_once(T0 + timedelta(days=2)).synced == 2
    assert len(salesforce.requests) == 2


def test_server_errors_retry_on_the_schedule(store, salesforce, tls_cert):
    _target(store, salesforce, tls_cert)
    _leads(store, salesforce, 1)
    salesforce.faults += [lambda req: (503, {}, [{"message": "down for maintenance", "errorCode": "SERVER_UNAVAILABLE"}])] * 2
    enqueue_crm_syncs(store, [_row("l0", 70)], now=T0)
    with CrmSyncWorker(store, rng=random.Random(2)) as w:
        assert w.run_once(T0).failed == 1
        assert w.run_once(T0 + timedelta(seconds=6)).failed == 1
        assert w.run_once(T0 + timedelta(seconds=60)).synced == 0  # third try is ~5 min after the second
        assert w.run_once(T0 + timedelta(minutes=6)).synced == 1
    [row] = list_crm_sync(store)
    assert (row["status"], row["attempts"]) == ("synced", 3)


def test_external_id_and_a_custom_mapping(store, salesforce, tls_cert):
    salesforce.ext_field = "LeadScore_Id__c"
    add_crm_target(store, "sf", "salesforce", now=T0, base_url=salesforce.url, token=salesforce.token,
                   mapping="score=Custom_Score__c,tier=Lead_Tier__c",
                   options={"ca_file": tls_cert[0], "external_id_field": "LeadScore_Id__c"})
    salesforce.leads["l0"] = {}
    store.add_leads([("l0", {"email": "l0@example.com"}, T0)])
    enqueue_crm_syncs(store, [_row("l0", 88.125, tier="hot")], now=T0)
    with CrmSyncWorker(store) as w:
        assert w.run_once(T0).synced == 1
    [call] = salesforce.requests
    assert call.path == COLLECTIONS + "/Lead/LeadScore_Id__c"
    assert call.body["records"] == [{"attributes": {"type": "Lead"}, "LeadScore_Id__c": "l0", "Custom_Score__c": 88.125,
                                     "Lead_Tier__c": "hot"}]


def test_the_client_alone_refuses_an_untrusted_certificate(salesforce):
    from leadscore.service.crm.base import SyncItem
    client = SalesforceClient(salesforce.url, salesforce.token, mapping=FieldMapping({"score": "Lead_Score__c"}))
    try:
        res = client.push([SyncItem("1", "00Q1", {"Lead_Score__c": 1})], T0)
    finally:
        client.close()
    assert res.results["1"].retry is True and "CERTIFICATE_VERIFY_FAILED" in res.results["1"].error
    assert salesforce.requests == []


@pytest.mark.parametrize("refresh_token", ["5Aep-refresh", "revoked"])
def test_oauth_refresh_token_flow_from_the_environment(store, salesforce, tls_cert, monkeypatch, refresh_token):
    monkeypatch.setenv("LEADSCORE_CRM_SF_REFRESH_TOKEN", refresh_token)
    monkeypatch.setenv("LEADSCORE_CRM_SF_CLIENT_SECRET", "s3cret")
    add_crm_target(store, "sf", "salesforce", now=T0, base_url=salesforce.url, token="00D-stale",
                   options={"ca_file": tls_cert[0], "client_id": "3MVG9-client",
                            "token_url": salesforce.url + "/services/oauth2/token"})
    _leads(store, salesforce, 1)
    enqueue_crm_syncs(store, [_row("l0", 70)], now=T0)
    with CrmSyncWorker(store) as w:
        report = w.run_once(T0)
    paths = [(r.method, r.path) for r in salesforce.requests]
    if refresh_token == "revoked":
        assert (report.synced, report.failed) == (0, 1)
        assert paths == [("PATCH", COLLECTIONS), ("POST", "/services/oauth2/token")]
        assert "INVALID_SESSION_ID" in list_crm_sync(store)[0]["last_error"]
    else:
        assert report.synced == 1
        assert paths == [("PATCH", COLLECTIONS), ("POST", "/services/oauth2/token"), ("PATCH", COLLECTIONS)]
        assert salesforce.requests[-1].headers["authorization"] == "Bearer 00D-refreshed-token"
