"""The write side of a live pass on DuckDB and PostgreSQL, value by value: the window lows score_jump
alerts read from score_history, and every row one batch writes (history with per-lead causes, alerts,
webhook bodies and deliveries in seq order, CRM sync items). The expected values are worked out in the
comments; the alert ids are the sha256 ids of (rule, lead, instant, cause, cause_ref)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from leadscore.engine import ScoreChange
from leadscore.engine.models_registry import save_model
from leadscore.events import normalize_batch
from leadscore.model import parse_model
from leadscore.service.crm.sync import add_crm_target
from leadscore.service.live import LiveScorer, LiveSettings, current_rows, window_lows
from leadscore.service.webhooks import add_endpoint

T0 = datetime(2026, 4, 1, 10)

MODEL = """\
name: writes
version: w-1
groups:
  web: {axis: engagement}
  persona: {axis: fit}
tiers: [{name: cold}, {name: warm, min: 40}, {name: hot, min: 80}]
alerts:
  - {name: became_hot, trigger: became_tier, tier: hot}
  - {name: intent, trigger: high_intent, event: Demo Requested, fit: {gte: 30}}
  - {name: surge, trigger: score_jump, points: 40, within: 1h}
  - {name: surge3, trigger: score_jump, points: 40, within: 3h}
rules:
  - {name: pricing, group: web, page: /pricing, points: 30, window: 7d}
  - {name: demo, group: web, event: Demo Requested, points: 50}
  - {name: vp, group: persona, trait: {seniority: vp}, points: 40}
"""


def change(lead, score, prev):
    return ScoreChange(lead, T0, score, 0.0, score, "cold", "lead", "D4", prev, "cold", "lead", "event", None, {}, {})


def test_window_lows_read_the_held_score_and_the_lowest_inside_the_window(store):
    model = parse_model(MODEL, "writes.yaml")
    h = timedelta(hours=1)
    # Each lead's history as refresh_scores writes it: every row holds the score it replaced (prev), and
    # each change below has its own row at T0 (written in the same transaction before the lows are read);
    # t's history was written by another path (no row at T0).
    rows = [("x", T0 - 3 * h, 10.0, None), ("x", T0 - 2 * h, 50.0, 10.0), ("x", T0 - h / 2, 20.0, 50.0),
            ("x", T0 - h / 6, 60.0, 20.0), ("x", T0, 100.0, 60.0),
            ("y", T0 - 3 * h, 5.0, None), ("y", T0, 100.0, 5.0), ("z", T0, 100.0, None),
            ("w", T0 - h / 3, 15.0, None), ("w", T0, 100.0, 15.0), ("v", T0 - h, 33.0, None), ("v", T0, 100.0, 33.0),
            ("u", T0 - h / 2, 50.0, None), ("u", T0, 1.0, 50.0), ("t", T0 - 3 * h, 44.0, None)]
    with store.transaction() as conn:
        for lead, at, score, prev in rows:
            store._execute(conn, "INSERT INTO score_history (lead_id, changed_at, model_version, score, fit, engagement, tier, "
                           "stage, prev_score, cause) VALUES (?, ?, 'w-1', ?, 0, ?, 'cold', 'lead', ?, 'event')",
                           (lead, at, score, score, prev))
        changes = [change("x", 100.0, 60.0), change("y", 100.0, 5.0), change("z", 100.0, None), change("w", 100.0, 15.0),
                   change("v", 100.0, 33.0), change("u", 1.0, 50.0),   # u falls: no score_jump can fire
                   change("t", 100.0, 44.0)]
        lows = window_lows(store, conn, model, changes)
    assert lows == {
        # surge (1 h, from T0-1h): x held 50 (at T0-2h), then 20 and 60 inside -> 20; y held 5; z never scored -> 0;
        # w unscored at the start -> 0 (15 inside is higher); v held 33 from exactly T0-1h; t held 44 since T0-3h
        ("surge", "x"): 20.0, ("surge", "y"): 5.0, ("surge", "z"): 0.0, ("surge", "w"): 0.0, ("surge", "v"): 33.0,
        ("surge", "t"): 44.0,
        # surge3 (3 h, from T0-3h): x held 10 (exactly at the start); y 5; v unscored at the start -> 0; t 44
        ("surge3", "x"): 10.0, ("surge3", "y"): 5.0, ("surge3", "z"): 0.0, ("surge3", "w"): 0.0, ("surge3", "v"): 0.0,
        ("surge3", "t"): 44.0,
    }
    with store.transaction() as conn:
        assert current_rows(store, conn, ["nobody"]) == {}


def msg(kind, user, mid, ts, **fields):
    return {"type": kind, "userId": user, "messageId": mid, "timestamp": ts.isoformat() + "Z", **fields}


def test_one_batch_writes_these_rows(store):
    save_model(store, parse_model(MODEL, "writes.yaml"), T0, activate=True)
    live = LiveScorer(store, LiveSettings(time_rescore_seconds=0))
    add_endpoint(store, "https://hooks.example.com/all", now=T0, endpoint_id="ep_all", secret="whsec_" + "A" * 32)
    add_endpoint(store, "https://hooks.example.com/hot", now=T0, endpoint_id="ep_hot", secret="whsec_" + "B" * 32,
                 event_types=["lead.became_hot"])
    add_crm_target(store, "hub", "hubspot", now=T0, base_url="http://127.0.0.1:9", token="t")

    def batch(messages, received):
        result = store.ingest(normalize_batch(messages, received))
        return live.process(result.new_message_ids, result.leads_touched)

    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=5)
    batch([msg("identify", "ann", "a1", T0, traits={"seniority": "vp"}),
           msg("page", "ann", "a2", T0, properties={"path": "/pricing"}),
           msg("page", "bob", "b1", T0, properties={"path": "/pricing"})], t1)
    # ann 40 (vp) + 30 (pricing) = 70, warm: surge and surge3 fire (70 up from 0: never scored before);
    # bob 30 rises by less than 40: nothing
    report = batch([msg("track", "ann", "a3", t2, event="Demo Requested")], t2)
    # ann 70 + 50 = 120, hot: became_hot fires; intent fires (fit 40 >= 30); surge does not (low 0 in the
    # window, but 70 - 0 had already crossed 40)
    assert report.alerts == 2 and report.crm_items == 1   # one changed lead, one CRM target
    assert store.query("SELECT lead_id, changed_at, score, fit, tier, stage, prev_score, prev_tier, cause, cause_ref "
                       "FROM score_history ORDER BY changed_at, lead_id") == [
        ("ann", t1, 70.0, 40.0, "warm", "lead", None, None, "event", "a1,a2"),
        ("bob", t1, 30.0, 0.0, "cold", "lead", None, None, "event", "b1"),
        ("ann", t2, 120.0, 40.0, "hot", "lead", 70.0, "warm", "event", "a3"),
    ]
    messages = store.query("SELECT seq, message_id, type, lead_id, body, created_at FROM outbox_messages ORDER BY seq")
    surge, surge3, hot, intent = (
        "alr_f735e3b6e18fa27bcb21215c73955c0e", "alr_a0cf87b8af56f63e07c64543e5fa6c26",
        "alr_f2976bc6a1300d59e0d96aae27354db0", "alr_177fac3025f8ee5d5108b1ef01512c9a")
    assert [(m[1], m[2], m[3], m[5]) for m in messages] == [
        (surge, "lead.score_jumped", "ann", t1), (surge3, "lead.score_jumped", "ann", t1),
        (hot, "lead.became_hot", "ann", t2), (intent, "lead.high_intent", "ann", t2)]
    assert [m[0] for m in messages] == sorted(m[0] for m in messages)
    assert [m[4] for m in messages] == [
        '{"type":"lead.score_jumped","timestamp":"2026-04-01T10:01:00.000Z","data":{"alert":"surge","trigger":"score_jump",'
        '"lead_id":"ann","model_version":"w-1","score":70.0,"prev_score":null,"tier":"warm","prev_tier":null,"stage":"lead",'
        '"prev_stage":null,"cause":"event","rise":70.0,"within_seconds":3600.0}}',
        '{"type":"lead.score_jumped","timestamp":"2026-04-01T10:01:00.000Z","data":{"alert":"surge3","trigger":"score_jump",'
        '"lead_id":"ann","model_version":"w-1","score":70.0,"prev_score":null,"tier":"warm","prev_tier":null,"stage":"lead",'
        '"prev_stage":null,"cause":"event","rise":70.0,"within_seconds":10800.0}}',
        '{"type":"lead.became_hot","timestamp":"2026-04-01T10:05:00.000Z","data":{"alert":"became_hot","trigger":"became_tier",'
        '"lead_id":"ann","model_version":"w-1","score":120.0,"prev_score":70.0,"tier":"hot","prev_tier":"warm","stage":"lead",'
        '"prev_stage":"lead","cause":"event"}}',
        '{"type":"lead.high_intent","timestamp":"2026-04-01T10:05:00.000Z","data":{"alert":"intent","trigger":"high_intent",'
        '"lead_id":"ann","model_version":"w-1","score":120.0,"prev_score":70.0,"tier":"hot","prev_tier":"warm","stage":"lead",'
        '"prev_stage":"lead","cause":"event","event":"Demo Requested","message_id":"a3","fit":40.0}}',
    ]
    alerts = store.query("SELECT alert_id, lead_id, name, trigger, type, fired_at, model_version, score, prev_score, tier, "
                         "prev_tier, stage, prev_stage, cause, cause_ref, detail FROM alerts ORDER BY fired_at, name")
    assert [a[:15] for a in alerts] == [
        (surge, "ann", "surge", "score_jump", "lead.score_jumped", t1, "w-1", 70.0, None, "warm", None, "lead", None,
         "event", "a1,a2"),
        (surge3, "ann", "surge3", "score_jump", "lead.score_jumped", t1, "w-1", 70.0, None, "warm", None, "lead", None,
         "event", "a1,a2"),
        (hot, "ann", "became_hot", "became_tier", "lead.became_hot", t2, "w-1", 120.0, 70.0, "hot", "warm", "lead", "lead",
         "event", "a3"),
        (intent, "ann", "intent", "high_intent", "lead.high_intent", t2, "w-1", 120.0, 70.0, "hot", "warm", "lead", "lead",
         "event", "a3")]
    details = ['{"rise": 70.0, "within_seconds": 3600.0}', '{"rise": 70.0, "within_seconds": 10800.0}', '{}',
               '{"event": "Demo Requested", "message_id": "a3", "fit": 40.0}']
    if store.dialect.name == "duckdb":   # the text json.dumps gave; PostgreSQL keeps JSONB
        assert [a[15] for a in alerts] == details
    assert [a[15] if isinstance(a[15], dict) else json.loads(a[15]) for a in alerts] == [json.loads(d) for d in details]
    # every alert goes to ep_all; only became_hot to ep_hot
    assert store.query("SELECT m.message_id, d.endpoint_id, d.lead_id, d.status, d.attempts, d.next_attempt_at "
                       "FROM webhook_deliveries d JOIN outbox_messages m ON m.seq = d.message_seq "
                       "ORDER BY d.message_seq, d.endpoint_id") == [
        (surge, "ep_all", "ann", "pending", 0, t1), (surge3, "ep_all", "ann", "pending", 0, t1),
        (hot, "ep_all", "ann", "pending", 0, t2), (hot, "ep_hot", "ann", "pending", 0, t2),
        (intent, "ep_all", "ann", "pending", 0, t2)]
    assert store.query("SELECT target, lead_id, as_of, score_values, status FROM crm_sync ORDER BY seq") == [
        ("hub", "ann", t1, '{"score":70.0,"fit":40.0,"engagement":30.0,"tier":"warm","stage":"lead","grade":"B3",'
                           '"model_version":"w-1","as_of":"2026-04-01T10:01:00.000Z"}', "pending"),
        ("hub", "bob", t1, '{"score":30.0,"fit":0.0,"engagement":30.0,"tier":"cold","stage":"lead","grade":"D3",'
                           '"model_version":"w-1","as_of":"2026-04-01T10:01:00.000Z"}', "pending"),
        ("hub", "ann", t2, '{"score":120.0,"fit":40.0,"engagement":80.0,"tier":"hot","stage":"lead","grade":"B2",'
                           '"model_version":"w-1","as_of":"2026-04-01T10:05:00.000Z"}', "pending"),
    ]
    rows = store.query("SELECT lead_id, groups, rules FROM lead_scores ORDER BY lead_id")
    if store.dialect.name == "duckdb":
        assert rows == [("ann", '{"web": 80.0, "persona": 40.0}', '{"pricing": 30.0, "demo": 50.0, "vp": 40.0}'),
                        ("bob", '{"web": 30.0, "persona": 0.0}', '{"pricing": 30.0}')]
    else:
        assert rows == [("ann", {"web": 80.0, "persona": 40.0}, {"pricing": 30.0, "demo": 50.0, "vp": 40.0}),
                        ("bob", {"web": 30.0, "persona": 0.0}, {"pricing": 30.0})]
    # processing the second batch again stores nothing new
    again = live.process(["a3"], ["ann"], as_of=t2)
    assert again.alerts == 0 and store.query("SELECT count(*) FROM outbox_messages")[0][0] == 4


def test_crm_items_have_the_same_text_from_plain_and_numpy_rows(store):
    """Plain Python values and numpy values (what a score frame holds) give the same text:
    json.dumps(values, separators=(",", ":")) of the score keys in order, then as_of."""
    import numpy as np

    from leadscore.service import outbox

    add_crm_target(store, "hub", "hubspot", now=T0, base_url="http://127.0.0.1:9", token="t")
    plain = [{"lead_id": "ann", "as_of": T0, "score": 0.1 + 0.2, "fit": 40.0, "engagement": 1e-07, "tier": 'h"o\\t',
              "stage": "Lead é", "grade": "A1", "model_version": "w-1"},
             {"lead_id": "bob", "as_of": T0, "score": 1e22, "fit": -0.0, "engagement": 12.3456, "tier": "cold",
              "stage": "lead", "grade": "D4", "model_version": "w-1"}]
    as_numpy = [{k: np.float64(v) if isinstance(v, float) else v for k, v in r.items()} for r in plain]
    assert outbox.enqueue_crm_syncs(store, plain, now=T0) == 2
    assert outbox.enqueue_crm_syncs(store, as_numpy, now=T0) == 2
    texts = [r[0] for r in store.query("SELECT score_values FROM crm_sync ORDER BY seq")]
    expected = [
        '{"score":0.30000000000000004,"fit":40.0,"engagement":1e-07,"tier":"h\\"o\\\\t","stage":"Lead \\u00e9",'
        '"grade":"A1","model_version":"w-1","as_of":"2026-04-01T10:00:00.000Z"}',
        '{"score":1e+22,"fit":-0.0,"engagement":12.3456,"tier":"cold","stage":"lead","grade":"D4","model_version":"w-1",'
        '"as_of":"2026-04-01T10:00:00.000Z"}']
    assert texts == expected + expected


def test_enqueue_alerts_skips_stored_and_repeated_message_ids_in_order(store):
    """One INSERT for a call's messages: a message_id already stored is skipped, one repeated inside the call
    is enqueued once with its first body, and seqs follow the alerts' order."""
    from leadscore.service import outbox

    add_endpoint(store, "https://hooks.example.com/all", now=T0, endpoint_id="ep_all", secret="whsec_" + "A" * 32)
    first = outbox.enqueue_alerts(store, [outbox.Alert("lead.became_hot", {"n": 1}, "ann", T0, "m1"),
                                          outbox.Alert("lead.became_hot", {"n": 2}, "bob", T0, "m2"),
                                          outbox.Alert("lead.became_hot", {"n": 3}, "ann", T0, "m1")], now=T0)
    assert [(e.message_id, e.deliveries) for e in first] == [("m1", 1), ("m2", 1)] and first[0].seq < first[1].seq
    second = outbox.enqueue_alerts(store, [outbox.Alert("lead.became_hot", {"n": 4}, "bob", T0, "m2"),
                                           outbox.Alert("lead.became_hot", {"n": 5}, "cy", T0, "m3")], now=T0)
    assert [(e.message_id, e.deliveries) for e in second] == [("m3", 1)] and second[0].seq > first[1].seq
    assert store.query("SELECT message_id, lead_id, body FROM outbox_messages ORDER BY seq") == [
        ("m1", "ann", '{"type":"lead.became_hot","timestamp":"2026-04-01T10:00:00.000Z","data":{"n":1,"lead_id":"ann"}}'),
        ("m2", "bob", '{"type":"lead.became_hot","timestamp":"2026-04-01T10:00:00.000Z","data":{"n":2,"lead_id":"bob"}}'),
        ("m3", "cy", '{"type":"lead.became_hot","timestamp":"2026-04-01T10:00:00.000Z","data":{"n":5,"lead_id":"cy"}}')]
    assert store.query("SELECT count(*) FROM webhook_deliveries")[0][0] == 3
