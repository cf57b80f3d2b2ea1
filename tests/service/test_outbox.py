"""The outbox itself: retry schedule, input validation, CRM enqueue, and the CLI over a real store."""
from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from leadscore.cli.main import main
from leadscore.service.crm import add_crm_target
from leadscore.service.crm.mapping import FieldMapping, HUBSPOT_DEFAULT
from leadscore.service.outbox import (MAX_ATTEMPTS, SCHEDULE, Alert, OutboxError, enqueue, enqueue_alerts,
                                      enqueue_crm_sync, enqueue_crm_syncs, list_crm_sync, purge, retry_delay)
from leadscore.service.webhooks import add_endpoint, generate_secret

T0 = datetime(2026, 11, 23, 12, 0, 0)


def test_retry_delays_follow_the_standard_webhooks_schedule_within_the_jitter():
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400) and MAX_ATTEMPTS == 10
    rng = random.Random(11)
    for failed, base in enumerate(SCHEDULE[1:], start=1):
        for _ in range(50):
            d = retry_delay(failed, rng)
            assert base * 0.9 <= d <= base * 1.1
    assert retry_delay(10, rng) is None
    spread = {round(retry_delay(2, rng)) for _ in range(50)}
    assert len(spread) > 10  # jitter actually spreads retries


def test_bad_alerts_are_refused_whole_with_the_field_named(store):
    with pytest.raises(OutboxError, match=r"alerts\[1\]\.type: 'became hot' is not a dot-separated event type"):
        enqueue_alerts(store, [Alert("lead.became_hot", {"score": 1}, "u1"), Alert("became hot", {}, "u2")], now=T0)
    with pytest.raises(OutboxError, match=r"alerts\[0\]\.data: Out of range float values are not JSON compliant"):
        enqueue(store, "lead.score_jumped", {"delta": math.nan}, lead_id="u1", now=T0)
    with pytest.raises(OutboxError, match=r"alerts\[0\]\.data: payload is \d+ bytes, over 65536"):
        enqueue(store, "lead.score_jumped", {"blob": "x" * 70000}, lead_id="u1", now=T0)
    with pytest.raises(OutboxError, match="now: expected a datetime, got str"):
        enqueue(store, "lead.score_jumped", {}, lead_id="u1", now="2026-11-23")
    assert store.query("SELECT count(*) FROM outbox_messages")[0][0] == 0


def test_aware_times_are_stored_as_utc(store):
    add_endpoint(store, "https://hooks.example.com/x", now=T0)
    enqueue(store, "lead.became_hot", {}, lead_id="u1", now=datetime(2026, 11, 23, 13, 0, tzinfo=timezone(timedelta(hours=1))),
            timestamp=datetime(2026, 11, 23, 12, 30, tzinfo=timezone.utc))
    body, created = store.query("SELECT body, created_at FROM outbox_messages")[0]
    assert json.loads(body)["timestamp"] == "2026-11-23T12:30:00.000Z" and created == T0


def test_endpoint_registration_checks_its_input(store):
    with pytest.raises(OutboxError, match="url: 'ftp://x' is not an http"):
        add_endpoint(store, "ftp://x", now=T0)
    with pytest.raises(OutboxError, match="secret: must look like whsec_"):
        add_endpoint(store, "https://hooks.example.com", now=T0, secret="hunter2")
    with pytest.raises(OutboxError, match="secret: decodes to 3 bytes"):
        add_endpoint(store, "https://hooks.example.com", now=T0, secret="whsec_YWJj")
    with pytest.raises(OutboxError, match=r"event_types\[1\]: 'hot!' is not"):
        add_endpoint(store, "https://hooks.example.com", now=T0, event_types=["lead.became_hot", "hot!"])
    assert generate_secret().startswith("whsec_") and generate_secret() != generate_secret()


def test_crm_sync_items_are_one_per_enabled_target_and_checked(store):
    row = {"lead_id": "u1", "as_of": T0, "score": 80.0, "fit": 30.0, "engagement": 50.0, "tier": "hot", "stage": "mql",
           "groups": {"big": 1}}
    assert enqueue_crm_sync(store, row, now=T0) == 0  # no target: nothing to sync
    add_crm_target(store, "hs", "hubspot", now=T0, token="t")
    add_crm_target(store, "sf", "salesforce", now=T0, base_url="https://sf.example.com", token="t")
    assert enqueue_crm_syncs(store, [row, {**row, "lead_id": "u2"}], now=T0) == 4
    items = list_crm_sync(store, target="hs", lead_id="u1")
    assert items[0]["score_values"] == {"score": 80.0, "fit": 30.0, "engagement": 50.0, "tier": "hot", "stage": "mql",
                                        "as_of": "2026-11-23T12:00:00.000Z"}
    with pytest.raises(OutboxError, match=r"score_rows\[1\]\.as_of: expected a datetime, got NoneType"):
        enqueue_crm_syncs(store, [row, {"lead_id": "u3", "score": 1}], now=T0)
    with pytest.raises(OutboxError, match=r"score_rows\[0\]\.score: inf is not a finite number"):
        enqueue_crm_sync(store, {**row, "score": float("inf")}, now=T0)
    assert store.query("SELECT count(*) FROM crm_sync")[0][0] == 4


def test_crm_target_and_mapping_validation(store):
    with pytest.raises(OutboxError, match="mapping.points: unknown leadscore field"):
        add_crm_target(store, "hs", "hubspot", now=T0, mapping={"points": "x"})
    with pytest.raises(OutboxError, match=r"mapping\[0\]: 'score' is not field=CrmName"):
        add_crm_target(store, "hs", "hubspot", now=T0, mapping="score")
    with pytest.raises(OutboxError, match="options.sobject: unknown for hubspot"):
        add_crm_target(store, "hs", "hubspot", now=T0, options={"sobject": "Lead"})
    with pytest.raises(OutboxError, match="base_url: Salesforce needs the instance URL"):
        add_crm_target(store, "sf", "salesforce", now=T0)
    fm = FieldMapping.parse(None, HUBSPOT_DEFAULT)
    assert fm.apply({"score": 87.0, "fit": 12.34567, "tier": "HOT"}, strings=True) == \
        {"leadscore_score": "87", "leadscore_fit": "12.3457", "leadscore_tier": "hot"}


def test_cli_registers_lists_and_replays(tmp_path):
    db = str(tmp_path / "cli.duckdb")
    runner = CliRunner()
    out = runner.invoke(main, ["--db", db, "webhooks", "add", "http://10.1.2.3/hook"])
    assert out.exit_code == 1 and "10.1.2.3 is a private/internal address" in out.output
    out = runner.invoke(main, ["--db", db, "webhooks", "add", "https://hooks.example.com/in", "--type", "lead.became_hot"])
    assert out.exit_code == 0 and "whsec_" in out.output
    listed = json.loads(runner.invoke(main, ["--db", db, "webhooks", "list", "--json"]).output)
    assert [(e["url"], e["event_types"], e["secret"]) for e in listed] == [("https://hooks.example.com/in", ["lead.became_hot"], "whsec_…")]
    out = runner.invoke(main, ["--db", db, "deliveries", "replay", "msg_nope"])
    assert out.exit_code == 1 and "unknown message id(s): msg_nope" in out.output
    out = runner.invoke(main, ["--db", db, "crm", "add", "hs", "--kind", "hubspot", "--map", "score=ls_score"])
    assert out.exit_code == 0 and "LEADSCORE_CRM_HS_TOKEN" in out.output
    stats = json.loads(runner.invoke(main, ["--db", db, "deliveries", "stats"]).output)
    assert stats == {"webhooks": {}, "crm": {}}


def test_purge_drops_finished_items_and_keeps_pending_work(store):
    add_endpoint(store, "https://hooks.example.com/x", now=T0)
    old = enqueue(store, "lead.became_hot", {}, lead_id="u1", now=T0)
    keep = enqueue(store, "lead.became_hot", {}, lead_id="u2", now=T0)
    store.execute("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = ? WHERE message_seq = ?", (T0, old.seq))
    add_crm_target(store, "hs", "hubspot", now=T0, token="t")
    enqueue_crm_syncs(store, [{"lead_id": "u1", "as_of": T0, "score": 1.0}, {"lead_id": "u2", "as_of": T0, "score": 2.0}], now=T0)
    store.execute("UPDATE crm_sync SET status = 'synced', synced_at = ? WHERE lead_id = 'u1'", (T0,))
    assert purge(store, before=T0 + timedelta(days=30)) == {"deliveries": 1, "messages": 1, "crm_sync": 1}
    assert store.query("SELECT message_id FROM outbox_messages") == [(keep.message_id,)]
    assert store.query("SELECT lead_id, status FROM crm_sync") == [("u2", "pending")]
    assert purge(store, before=T0 + timedelta(days=30)) == {"deliveries": 0, "messages": 0, "crm_sync": 0}
