"""HubSpot CRM v3 contract: property creation, batch upsert by e-mail, 207 partial failures, 429, 5xx."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from tests.contract.fakeapi import ContractViolation, FakeApi, Request, expect

from leadscore.service.crm import CrmSyncWorker, add_crm_target, list_crm_targets
from leadscore.service.outbox import enqueue_crm_syncs, list_crm_sync

T0 = datetime(2026, 11, 23, 12, 0, 0)
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
STAMP = "2026-11-23T12:00:00.000Z"


@dataclass
class FakeHubSpot(FakeApi):
    properties: dict = field(default_factory=dict)
    contacts: dict = field(default_factory=dict)

    def handle(self, req: Request):
        expect(req.headers.get("authorization") == f"Bearer {TOKEN}", "Authorization must be 'Bearer <private app token>'")
        expect(req.headers.get("content-type", "").startswith("application/json"), "JSON body expected")
        if (req.method, req.path) == ("POST", "/crm/v3/properties/contacts"):
            return self.create_property(req.body)
        if (req.method, req.path) == ("POST", "/crm/v3/objects/contacts/batch/upsert"):
            return self.upsert(req.body["inputs"] if isinstance(req.body, dict) else None)
        raise ContractViolation("not an endpoint the sync should call")

    def create_property(self, body):
        expect(isinstance(body, dict), "property body must be an object")
        for key in ("name", "label", "type", "fieldType", "groupName"):
            expect(isinstance(body.get(key), str) and body[key], f"property needs a non-empty string {key}")
        if body["type"] == "number":
            expect(body["fieldType"] == "number", "a number property has fieldType number")
        elif body["type"] == "enumeration":
            expect(body["fieldType"] in ("select", "radio", "checkbox"), "an enumeration needs a select-like fieldType")
            opts = body.get("options")
            expect(isinstance(opts, list) and opts, "an enumeration needs options")
            for o in opts:
                expect(isinstance(o.get("label"), str) and isinstance(o.get("value"), str), "options are {label, value}")
        else:
            raise ContractViolation(f"unexpected property type {body['type']}")
        if body["name"] in self.properties:
            return 409, {}, {"status": "error", "message": f"Property named '{body['name']}' already exists.",
                             "category": "OBJECT_ALREADY_EXISTS", "correlationId": "c-1"}
        self.properties[body["name"]] = body
        return 201, {}, {**body, "createdAt": STAMP, "updatedAt": STAMP}

    def check_inputs(self, inputs):
        expect(isinstance(inputs, list) and 1 <= len(inputs) <= 100, f"1 to 100 inputs per call, got {len(inputs or [])}")
        for inp in inputs:
            expect(inp.get("idProperty") == "email", "upsert by idProperty email")
            expect(isinstance(inp.get("id"), str) and "@" in inp["id"], "id is the e-mail")
            props = inp.get("properties")
            expect(isinstance(props, dict) and props, "properties object")
            for name, value in props.items():
                expect(isinstance(value, str), f"{name}: property values are strings, got {type(value).__name__}")
                expect(name in self.properties, f"{name}: property was not created first")
                defn = self.properties[name]
                if defn["type"] == "number":
                    float(value)
                else:
                    expect(value in {o["value"] for o in defn["options"]}, f"{name}: {value!r} is not an option")

    def upsert(self, inputs, status=200):
        self.check_inputs(inputs)
        results = []
        for inp in inputs:
            new = inp["id"] not in self.contacts
            self.contacts.setdefault(inp["id"], {}).update(inp["properties"])
            results.append({"id": str(1000 + list(self.contacts).index(inp["id"])), "properties": {"email": inp["id"], **inp["properties"]},
                            "createdAt": STAMP, "updatedAt": STAMP, "new": new})
        headers = {"X-HubSpot-RateLimit-Max": "190", "X-HubSpot-RateLimit-Remaining": "150",
                   "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
        return status, headers, {"status": "COMPLETE", "results": results, "startedAt": STAMP, "completedAt": STAMP}


def upserts(api):
    return api.calls("POST", "/crm/v3/objects/contacts/batch/upsert")


@pytest.fixture
def hubspot():
    api = FakeHubSpot().start()
    yield api
    api.stop()
    assert api.violations == []


def _leads(store, n, prefix="l"):
    store.add_leads([(f"{prefix}{i}", {"email": f"{prefix}{i}@example.com"}, T0) for i in range(n)])


def _row(lead, score, as_of=T0, tier="warm", stage="mql"):
    return {"lead_id": lead, "as_of": as_of, "score": score, "fit": 40.0, "engagement": score - 40.0, "tier": tier,
            "stage": stage, "grade": "B", "model_version": "m1"}


def _worker(store):
    return CrmSyncWorker(store, rng=random.Random(3))


def test_properties_then_batches_of_100_by_email_with_string_values(store, hubspot):
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    _leads(store, 250)
    assert enqueue_crm_syncs(store, [_row(f"l{i}", 50 + i / 4) for i in range(250)], now=T0) == 250
    with _worker(store) as w:
        report = w.run_once(T0)
    assert report.synced == 250
    props = hubspot.calls("POST", "/crm/v3/properties/contacts")
    assert [(p.body["name"], p.body["type"], p.body["fieldType"]) for p in props] == [
        ("leadscore_score", "number", "number"), ("leadscore_fit", "number", "number"),
        ("leadscore_engagement", "number", "number"), ("leadscore_tier", "enumeration", "select"),
        ("leadscore_stage", "enumeration", "select")]
    assert [o["value"] for o in props[3].body["options"]] == ["cold", "warm", "hot"]
    assert [len(r.body["inputs"]) for r in upserts(hubspot)] == [100, 100, 50]
    assert hubspot.contacts["l1@example.com"] == {"leadscore_score": "50.25", "leadscore_fit": "40", "leadscore_engagement": "10.25",
                                                  "leadscore_tier": "warm", "leadscore_stage": "mql"}
    assert list_crm_targets(store)[0].properties_ready is True
    enqueue_crm_syncs(store, [_row("l1", 90, T0 + timedelta(hours=1), tier="hot")], now=T0 + timedelta(hours=1))
    with _worker(store) as w:  # properties are not created again
        w.run_once(T0 + timedelta(hours=1))
    assert len(hubspot.calls("POST", "/crm/v3/properties/contacts")) == 5
    assert hubspot.contacts["l1@example.com"]["leadscore_tier"] == "hot"


def test_existing_properties_answer_409_and_sync_goes_on(store, hubspot):
    for name in ("leadscore_score", "leadscore_tier"):
        hubspot.properties[name] = {"name": name, "type": "number" if name.endswith("score") else "enumeration",
                                    "options": [{"label": t, "value": t} for t in ("cold", "warm", "hot")]}
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    _leads(store, 1)
    enqueue_crm_syncs(store, [_row("l0", 61)], now=T0)
    with _worker(store) as w:
        assert w.run_once(T0).synced == 1
    assert hubspot.contacts["l0@example.com"]["leadscore_score"] == "61"


def test_latest_score_wins_per_lead(store, hubspot):
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    _leads(store, 2)
    rows = [_row("l0", 55, T0), _row("l0", 80, T0 + timedelta(minutes=2), tier="hot"), _row("l0", 60, T0 + timedelta(minutes=1)),
            _row("l1", 30, T0, tier="cold", stage="lead")]
    enqueue_crm_syncs(store, rows, now=T0)
    with _worker(store) as w:
        report = w.run_once(T0 + timedelta(minutes=3))
    assert (report.synced, report.superseded) == (2, 2)
    [call] = upserts(hubspot)
    assert {i["id"]: i["properties"]["leadscore_score"] for i in call.body["inputs"]} == {"l0@example.com": "80", "l1@example.com": "30"}
    assert sorted(r["status"] for r in list_crm_sync(store)) == ["superseded", "superseded", "synced", "synced"]


def test_207_partial_failure_retries_only_the_failed_inputs(store, hubspot):
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    _leads(store, 5)
    bad = {"l1@example.com", "l3@example.com"}

    def partial(req):
        if req.path != "/crm/v3/objects/contacts/batch/upsert":
            return None
        good = [i for i in req.body["inputs"] if i["id"] not in bad]
        _, headers, body = hubspot.upsert(good)
        failed = [i for i in req.body["inputs"] if i["id"] in bad]
        body.update(status="COMPLETE", numErrors=len(failed), errors=[
            {"status": "error", "category": "OBJECT_ALREADY_EXISTS", "message": "Contact is being merged",
             "context": {"objectWriteTraceId": [i["objectWriteTraceId"]]}, "errors": []} for i in failed])
        return 207, headers, body

    hubspot.faults.append(partial)
    enqueue_crm_syncs(store, [_row(f"l{i}", 50 + i) for i in range(5)], now=T0)
    with _worker(store) as w:
        first = w.run_once(T0)
        assert (first.synced, first.failed) == (3, 2)
        assert w.run_once(T0 + timedelta(seconds=2)).synced == 0  # not due yet (5 s)
        second = w.run_once(T0 + timedelta(seconds=6))
    assert second.synced == 2
    assert [sorted(i["id"] for i in r.body["inputs"]) for r in upserts(hubspot)] == [
        [f"l{i}@example.com" for i in range(5)], sorted(bad)]
    assert set(hubspot.contacts) == {f"l{i}@example.com" for i in range(5)}
    failed = [r for r in list_crm_sync(store) if r["lead_id"] in ("l1", "l3")]
    assert [(r["status"], r["attempts"]) for r in failed] == [("synced", 2), ("synced", 2)]


@pytest.mark.parametrize("policy", ["TEN_SECONDLY_ROLLING", "DAILY"])
def test_429_pauses_by_the_rate_limit_headers_without_spending_attempts(store, hubspot, policy):
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    _leads(store, 3)

    def limited(req):
        if req.path != "/crm/v3/objects/contacts/batch/upsert":
            return None
        return 429, {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0",
                     "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Daily": "250000",
                     "X-HubSpot-RateLimit-Daily-Remaining": "0" if policy == "DAILY" else "1000"}, \
            {"status": "error", "message": f"You have reached your {policy.lower()} limit.", "errorType": "RATE_LIMIT",
             "correlationId": "c-2", "policyName": policy}

    hubspot.faults.append(limited)
    enqueue_crm_syncs(store, [_row(f"l{i}", 70) for i in range(3)], now=T0)
    with _worker(store) as w:
        assert w.run_once(T0).requests_paused == ["hubspot"]
        [t] = list_crm_targets(store)
        resume = T0 + (timedelta(seconds=10) if policy != "DAILY" else timedelta(hours=12))  # daily: next UTC midnight
        assert t.paused_until == resume and "limit" in t.last_error
        assert [r["attempts"] for r in list_crm_sync(store)] == [0, 0, 0]
        assert w.run_once(resume - timedelta(seconds=1)).synced == 0
        assert len(upserts(hubspot)) == 1
        assert w.run_once(resume).synced == 3


def test_5xx_is_retried_on_the_schedule(store, hubspot):
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    _leads(store, 2)
    hubspot.faults.append(lambda req: (502, {}, {"message": "Bad gateway"}) if "batch" in req.path else None)
    enqueue_crm_syncs(store, [_row("l0", 70), _row("l1", 71)], now=T0)
    with _worker(store) as w:
        assert w.run_once(T0).failed == 2
        rows = list_crm_sync(store)
        assert {(r["status"], r["attempts"], r["last_status"]) for r in rows} == {("pending", 1, 502)}
        assert w.run_once(T0 + timedelta(seconds=6)).synced == 2


def test_leads_without_email_are_skipped_with_a_reason(store, hubspot):
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    store.add_leads([("anon", {"title": "CTO"}, T0)])
    enqueue_crm_syncs(store, [_row("anon", 70)], now=T0)
    with _worker(store) as w:
        assert w.run_once(T0).skipped == 1
    [row] = list_crm_sync(store)
    assert (row["status"], row["last_error"]) == ("skipped", "lead anon has no email trait")
    assert upserts(hubspot) == []


def test_a_late_older_score_never_overwrites_a_newer_synced_one(store, hubspot):
    add_crm_target(store, "hubspot", "hubspot", now=T0, base_url=hubspot.url, token=TOKEN)
    _leads(store, 1)
    enqueue_crm_syncs(store, [_row("l0", 80, T0 + timedelta(hours=2), tier="hot")], now=T0)
    with _worker(store) as w:
        assert w.run_once(T0).synced == 1
        enqueue_crm_syncs(store, [_row("l0", 40, T0 + timedelta(hours=1))], now=T0)  # arrives late
        report = w.run_once(T0 + timedelta(minutes=1))
    assert (report.synced, report.superseded) == (0, 1)
    assert len(upserts(hubspot)) == 1 and hubspot.contacts["l0@example.com"]["leadscore_score"] == "80"
