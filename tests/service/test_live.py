"""Live scoring (leadscore.service.live) on DuckDB and PostgreSQL: the LiveScorer on a real store, and
through a real loopback server where acknowledgement and start-up behaviour matter."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import httpx

from leadscore.engine import explain_lead
from leadscore.engine.models_registry import save_model
from leadscore.events import normalize_batch
from leadscore.model import parse_model
from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.crm.sync import add_crm_target
from leadscore.service.live import LiveScorer, LiveSettings
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings
from tests.service.test_api import INSTALLERS, TINY, TINY2, iso, utcnow, wait_for

T0 = datetime(2026, 4, 1, 10)


def scorer(store, **settings) -> LiveScorer:
    save_model(store, parse_model(TINY, "tiny.yaml"), T0, activate=True)
    return LiveScorer(store, LiveSettings(time_rescore_seconds=0, **settings))


def ingest(store, live, messages, received):
    result = store.ingest(normalize_batch(messages, received))
    return live.process(result.new_message_ids, result.leads_touched)


def msg(kind, user, mid, ts, **fields):
    return {"type": kind, "userId": user, "messageId": mid, "timestamp": ts.isoformat() + "Z", **fields}


def test_batches_move_scores_with_per_lead_causes_and_crm_items(store):
    live = scorer(store)
    add_crm_target(store, "hub", "hubspot", now=T0, base_url="http://127.0.0.1:9", token="t")
    report = ingest(store, live, [
        msg("identify", "ann", "a1", T0, traits={"seniority": "vp"}),
        msg("page", "ann", "a2", T0, properties={"path": "/pricing"}),
        msg("page", "bob", "b1", T0, properties={"path": "/pricing"}),
    ], T0 + timedelta(minutes=1))
    # as of the receive time: ann 30 + 40 = 70, bob 30
    assert sorted((c.lead_id, c.score, c.cause, c.cause_ref) for c in report.changes) == [
        ("ann", 70.0, "event", "a1,a2"), ("bob", 30.0, "event", "b1")]
    assert report.as_of == T0 + timedelta(minutes=1)
    rows = store.query("SELECT lead_id, status, score_values FROM crm_sync ORDER BY lead_id")
    assert [(r[0], r[1], json.loads(r[2])["score"]) for r in rows] == [("ann", "pending", 70.0), ("bob", "pending", 30.0)]
    # a retried batch (same messageIds) stores nothing new and changes nothing
    again = ingest(store, live, [msg("page", "bob", "b1", T0, properties={"path": "/pricing"})], T0 + timedelta(minutes=2))
    assert again is None or again.changes == []
    assert store.query("SELECT count(*) FROM score_history")[0][0] == 2


def test_time_rescore_writes_only_changes_and_scores_never_go_back_in_time(store):
    live = scorer(store, chunk_leads=1)  # one lead per transaction: the chunking path
    ingest(store, live, [msg("page", "ann", "a1", T0, properties={"path": "/pricing"}),
                         msg("track", "bob", "b1", T0, event="Demo Requested")], T0)
    # day 8: ann's pricing view left the 7-day window (30 → 0); bob's demo request has no window
    report = live.rescore_time(T0 + timedelta(days=8))
    assert [(c.lead_id, c.score, c.prev_score, c.cause) for c in report.changes] == [("ann", 0.0, 30.0, "time")]
    # only ann was due (her view's window edge passed): bob's score cannot move with time alone
    assert report.leads == 1 and live.last_time_rescore["population"] == 2
    # a batch received "earlier" than the last re-score is scored as of the later instant
    late = ingest(store, live, [msg("page", "cy", "c1", T0, properties={"path": "/pricing"})], T0 + timedelta(days=1))
    assert late.as_of == T0 + timedelta(days=8)
    assert [(c.lead_id, c.score) for c in late.changes] == [("cy", 0.0)]
    # nothing left that time can move: the next tick re-scores no one
    assert live.rescore_time(T0 + timedelta(days=9)).leads == 0


def test_activation_rescores_everyone_with_progress_and_history_notes_the_model(store):
    live = scorer(store, chunk_leads=2)
    ingest(store, live, [msg("track", u, f"m{u}", T0, event="Demo Requested") for u in ("a", "b", "c")], T0)
    save_model(store, parse_model(TINY2, "tiny2.yaml"), T0)
    report = live.activate("tiny-2", T0 + timedelta(hours=1))  # two chunks: 2 leads, then 1
    state = live.activation
    assert (state["state"], state["done"], state["total"], state["changed"]) == ("done", 3, 3, 3)
    assert {(c.score, c.cause, c.cause_ref) for c in report.changes} == {(10.0, "model", "tiny-2")}
    assert store.query("SELECT DISTINCT model_version FROM lead_scores") == [("tiny-2",)]


def test_alerts_are_stored_with_their_webhooks_in_the_outbox(store):
    live = scorer(store)
    ingest(store, live, [msg("identify", "ann", "a1", T0, traits={"seniority": "vp"}),
                         msg("page", "ann", "a2", T0, properties={"path": "/pricing"})], T0)
    report = ingest(store, live, [msg("track", "ann", "a3", T0 + timedelta(minutes=5), event="Demo Requested")],
                    T0 + timedelta(minutes=5))
    assert report.alerts == 2
    rows = store.query("SELECT a.name, a.type, m.type, m.lead_id FROM alerts a JOIN outbox_messages m "
                       "ON m.message_id = a.alert_id ORDER BY a.name")
    assert rows == [("became_hot", "lead.became_hot", "lead.became_hot", "ann"),
                    ("intent", "lead.high_intent", "lead.high_intent", "ann")]
    # processing the same messages again raises nothing twice
    again = live.process(["a3"], ["ann"], as_of=T0 + timedelta(minutes=5))
    assert again.alerts == 0 and store.query("SELECT count(*) FROM alerts")[0][0] == 2


def test_consecutive_batches_merge_into_the_cache_and_a_commit_the_scorer_never_saw_stops_merging(store):
    """Each batch handed with its commit numbers (what the writer's hook passes): on DuckDB the leads'
    new page views are merged into their cache rows, no history read; a page view stored by another
    path (a commit no pass saw) makes the next pass read the history (up to its watermark) instead,
    and merging resumes after it. Every score equals a full re-score: 30 a page view (7-day window)."""
    from leadscore.engine import score_leads

    live = scorer(store)
    duck = store.dialect.name == "duckdb"

    def handed(messages, received):
        result = store.ingest(normalize_batch(messages, received))
        return live.process(result.new_message_ids, result.leads_touched, seqs=result.seqs)

    def check(at, merged):
        assert live.counters["merged_leads"] == (merged if duck else 0)
        want = score_leads(store, live.model(), at).set_index("lead_id")["score"].to_dict()
        got = dict(store.query("SELECT lead_id, score FROM lead_scores"))
        assert got == want

    t = T0
    handed([msg("page", "ann", "a1", t, properties={"path": "/pricing"}),
            msg("page", "bob", "b1", t, properties={"path": "/pricing"})], t + timedelta(minutes=1))
    check(t + timedelta(minutes=1), 2)                    # first visits
    handed([msg("page", "ann", "a2", t + timedelta(hours=1), properties={"path": "/pricing"})], t + timedelta(hours=1))
    check(t + timedelta(hours=1), 3)
    assert dict(store.query("SELECT lead_id, score FROM lead_scores"))["ann"] == 60.0
    store.ingest(normalize_batch([msg("page", "bob", "b2", t + timedelta(hours=2), properties={"path": "/pricing"})],
                                 t + timedelta(hours=2)))  # stored, never handed to the scorer
    handed([msg("page", "ann", "a3", t + timedelta(hours=3), properties={"path": "/pricing"}),
            msg("page", "bob", "b3", t + timedelta(hours=3), properties={"path": "/pricing"})], t + timedelta(hours=3))
    check(t + timedelta(hours=3), 3)                      # not merged: bob's b2 would be missing
    assert dict(store.query("SELECT lead_id, score FROM lead_scores")) == {"ann": 90.0, "bob": 90.0}
    handed([msg("page", "bob", "b4", t + timedelta(hours=4), properties={"path": "/pricing"})], t + timedelta(hours=4))
    check(t + timedelta(hours=4), 4)
    assert dict(store.query("SELECT lead_id, score FROM lead_scores"))["bob"] == 120.0


def test_a_time_re_score_merges_half_life_decay_from_the_cache_when_every_commit_was_handed(store):
    """A page view worth 20 halving every 10 days (the same model as the cache's), handed to the scorer
    with its commit; 5 days later the time scheduler re-scores the lead (a half-life rule moves at every
    instant): on DuckDB from its cached state alone (merged), 20 × 0.5^0.5 = 14.1421, what a full
    re-score gives; a commit the scorer never saw makes the next tick read the history instead."""
    from leadscore.engine import score_leads

    decaying = TINY.replace("points: 30, window: 7d", "points: 20, decay: {half_life: 10d}")
    save_model(store, parse_model(decaying, "decaying.yaml"), T0, activate=True)
    live = LiveScorer(store, LiveSettings(time_rescore_seconds=0))
    duck = store.dialect.name == "duckdb"
    result = store.ingest(normalize_batch([msg("page", "ann", "a1", T0, properties={"path": "/pricing"})], T0))
    live.process(result.new_message_ids, result.leads_touched, seqs=result.seqs)
    at = T0 + timedelta(days=5)
    live.rescore_time(at)
    assert live.counters["merged_leads"] == (2 if duck else 0)      # the first visit, then the tick
    assert dict(store.query("SELECT lead_id, score FROM lead_scores")) == {"ann": 14.1421}
    assert score_leads(store, live.model(), at).set_index("lead_id").loc["ann", "score"] == 14.1421
    store.ingest(normalize_batch([msg("page", "bob", "b1", at, properties={"path": "/pricing"})], at))  # not handed
    live.rescore_time(at + timedelta(days=5))
    assert live.counters["merged_leads"] == (2 if duck else 0)
    assert dict(store.query("SELECT lead_id, score FROM lead_scores")) == {"ann": 10.0, "bob": 14.1421}


def _server(store, **live_settings):
    now = utcnow()
    keys = {role: create_key(store, role, now).token for role in ("admin", "read", "write")}
    app = create_app(store, Settings(), installers=INSTALLERS)
    # nice 0: as tests/service/test_api.py (scoring must not starve behind the suite's other worker)
    app.state.live.settings = LiveSettings(**{"time_rescore_seconds": 0, "nice": 0, **live_settings})
    return app, keys


def test_acknowledgements_do_not_wait_for_scoring(store):
    save_model(store, parse_model(TINY, "tiny.yaml"), utcnow(), activate=True)
    app, keys = _server(store)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        live = app.state.live
        t = utcnow() - timedelta(minutes=5)
        with live.lock:  # a long re-score holds the scorer: ingestion must still acknowledge
            r = client.post("/v1/batch", auth=(keys["write"], ""), json={"batch": [
                msg("page", "ann", "a1", t, properties={"path": "/pricing"})]})
            assert r.status_code == 200
            assert store.query("SELECT count(*) FROM events WHERE message_id = 'a1'")[0][0] == 1
            assert store.query("SELECT count(*) FROM lead_scores")[0][0] == 0
        headers = {"Authorization": f"Bearer {keys['read']}"}
        lead = wait_for(lambda: client.get("/api/leads/ann", headers=headers).json().get("current"))
        assert lead["score"] == 30.0
        # whether a pass yields the CPU to ingestion reads the writer's backlog (LiveScorer.on_ingest): one
        # event submitted while the store's write lock is held stays waiting
        with store._lock:
            app.state.writer.submit(normalize_batch([msg("page", "bob", "b1", t, properties={"path": "/pricing"})], t))
            assert live.backlog() == app.state.writer.pending_events == 1


def test_startup_scores_a_store_that_has_no_live_scores_and_the_lead_endpoint_is_the_explanation(store):
    save_model(store, parse_model(TINY, "tiny.yaml"), utcnow(), activate=True)
    t = utcnow() - timedelta(hours=1)
    store.ingest(normalize_batch([msg("identify", "ann", "a1", t, traits={"seniority": "vp"}),
                                  msg("page", "ann", "a2", t, properties={"path": "/pricing"})], t))
    app, keys = _server(store)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {keys['read']}"}
        state = wait_for(lambda: (a := client.get("/api/models/activation", headers=headers).json())["state"] == "done" and a)
        assert (state["done"], state["total"], state["reason"]) == (1, 1, "start-up catch-up")
        hist = client.get("/api/leads/ann/history", headers=headers).json()
        assert [(h["cause"], h["cause_ref"], h["score"]) for h in hist] == [("model", "tiny-1", 70.0)]
        at = (t + timedelta(minutes=1)).replace(microsecond=0)
        lead = client.get("/api/leads/ann", headers=headers, params={"as_of": iso(at)}).json()
        cli = explain_lead(store, parse_model(TINY, "tiny.yaml"), "ann", at)
        extras = {"traits", "account", "current", "history", "timeline", "videos"}
        assert set(lead) - extras == set(cli)
        assert {k: lead[k] for k in cli} == json.loads(json.dumps(cli, default=str))


def test_event_passes_yield_the_cpu_from_the_configured_ingestion_backlog(store):
    """on_ingest scores in the thread that calls it (the writer's hook thread), at its priority, while the
    ingestion backlog is below ``LiveSettings.yield_backlog``; at or above it, in one other thread
    ``LiveSettings.nice`` below (lowered once); with nice 0, never elsewhere; by default, always there."""
    import os
    import threading

    live = scorer(store, nice=7, yield_backlog=100)
    backlog = [0]
    live.backlog = lambda: backlog[0]
    seen = []
    process = live.process

    def observed(*args, **kwargs):      # the real pass, noting the thread it runs in and that thread's nice value
        tid = threading.get_native_id()
        seen.append((tid, os.getpriority(os.PRIO_PROCESS, tid)))
        return process(*args, **kwargs)
    live.process = observed
    hook = {}

    def page(lead, at_backlog):
        backlog[0] = at_backlog
        live.on_ingest(store.ingest(normalize_batch([msg("page", lead, f"p-{lead}", T0, properties={"path": "/pricing"})],
                                                    T0)))

    def hook_thread():
        tid = threading.get_native_id()
        hook["tid"], hook["before"] = tid, os.getpriority(os.PRIO_PROCESS, tid)
        page("ann", 0)
        page("bob", 100)      # behind
        page("cid", 5000)     # behind
        page("dan", 99)
        hook["after"] = os.getpriority(os.PRIO_PROCESS, tid)

    t = threading.Thread(target=hook_thread)
    t.start()
    t.join()
    live.stop()
    here = (hook["tid"], hook["before"])
    assert seen[0] == here and seen[3] == here and hook["after"] == hook["before"]
    assert seen[1][0] != hook["tid"] and seen[1][1] == min(19, hook["before"] + 7)
    assert seen[2] == seen[1]
    assert live.counters["yielded_batches"] == 2
    assert dict(store.query("SELECT lead_id, score FROM lead_scores")) == {"ann": 30.0, "bob": 30.0, "cid": 30.0,
                                                                          "dan": 30.0}
    never = LiveScorer(store, LiveSettings(time_rescore_seconds=0, nice=0, yield_backlog=0))
    never.backlog = lambda: 10**6
    never.on_ingest(store.ingest(normalize_batch([msg("page", "eve", "p-eve", T0, properties={"path": "/pricing"})], T0)))
    assert never.counters["yielded_batches"] == 0 and never.counters["batches"] == 1
    default = LiveScorer(store, LiveSettings(time_rescore_seconds=0))      # no backlog known: reads as 0
    default.on_ingest(store.ingest(normalize_batch([msg("page", "gus", "p-gus", T0, properties={"path": "/pricing"})], T0)))
    default.stop()
    assert default.counters["yielded_batches"] == 1
    late = LiveScorer(store, LiveSettings(time_rescore_seconds=0, nice=7, yield_backlog=0))
    late.backlog = lambda: 1
    late._yield_thread().shutdown()     # as stop() does, between the backlog's reading and the hand-over
    late.on_ingest(store.ingest(normalize_batch([msg("page", "fay", "p-fay", T0, properties={"path": "/pricing"})], T0)))
    assert late.counters["yielded_batches"] == 0 and late.counters["batches"] == 1   # scored here instead


def test_a_batchs_message_ids_per_lead_events_and_lags_are_the_same_read_from_its_rows_or_its_ids(store):
    """A pass handed its commit numbers reads its batch as rows (DuckDB: Arrow, no Python object per
    message); without them it reads the messages by id. Both give each lead the last 20 of its
    messageIds in (timestamp, messageId) order as the history's cause_ref, the demo request as the
    intent alert's event, and one freshness sample per message: done 2.5 s after the batch's receipt.

    ann: 23 page views sent newest first, p00..p22 at T0 + k minutes, but p21 and p22 at the same
    instant as p20 (order by id at equal times): her refs are p03..p22. bob: a demo request (the
    high_intent event, his fit 40 ≥ 30 from the identify) and a page view one minute earlier: d1 after b1."""
    received = T0 + timedelta(hours=1)

    def batch(prefix):
        minutes = [k if k <= 20 else 20 for k in range(23)]
        pages = [msg("page", "ann", f"{prefix}p{k:02d}", T0 + timedelta(minutes=m), properties={"path": "/pricing"})
                 for k, m in reversed(list(enumerate(minutes)))]
        return pages + [msg("identify", "bob", f"{prefix}i1", T0, traits={"seniority": "vp"}),
                        msg("track", "bob", f"{prefix}d1", T0 + timedelta(minutes=5), event="Demo Requested"),
                        msg("page", "bob", f"{prefix}b1", T0 + timedelta(minutes=4), properties={"path": "/pricing"})]

    got = {}
    for way, prefix in (("rows", "r-"), ("ids", "i-")):
        live = scorer(store)
        live.clock = lambda: received + timedelta(seconds=2.5)
        result = store.ingest(normalize_batch(batch(prefix), received))
        seqs = result.seqs if way == "rows" else ()
        report = live.process(result.new_message_ids, result.leads_touched, seqs=seqs)
        refs = {c.lead_id: c.cause_ref for c in report.changes}
        intents = store.query("SELECT lead_id, cause_ref FROM alerts WHERE name = 'intent' AND cause_ref LIKE ?",
                              (prefix + "%",))
        lags = live.stats()["freshness_seconds"]
        got[way] = (refs, intents, live.counters["events"], (lags["samples"], lags["p50"], lags["max"]))
        store.execute("DELETE FROM lead_scores")   # the second way scores the leads from scratch again
        store.execute("DELETE FROM live_rule_cache")
    for way, prefix in (("rows", "r-"), ("ids", "i-")):
        refs, intents, events, samples = got[way]
        assert refs == {"ann": ",".join(f"{prefix}p{k:02d}" for k in range(3, 23)),
                        "bob": f"{prefix}i1,{prefix}b1,{prefix}d1"}, way
        assert intents == [("bob", f"{prefix}d1")], way
        assert (events, samples) == (26, (26, 2.5, 2.5)), way
