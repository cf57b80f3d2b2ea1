"""Partial re-scores (``leadscore.engine.partial``): a batch re-derives only the rules its messages can
move and reads the others from the rule cache; the result must be the full re-score's, on every lead
and column. Hand-worked cases first, then the differential test on a generated population."""
import json
from datetime import datetime, timedelta
from pathlib import Path

from leadscore.demo import DemoConfig, load_population
from leadscore.demo.catalog import write_catalog
from leadscore.engine import partial, score_leads
from leadscore.events import normalize_batch
from leadscore.model import default_model_path, load_model
from leadscore.store import open_store
from leadscore.video.catalog import import_catalog, load_catalog
from tests.engine.helpers import model, page, track

MODEL = model("""
name: partial
groups:
  web: {axis: engagement}
  email: {axis: engagement}
tiers: [{name: cold}, {name: warm, min: 20}, {name: hot, min: 50}]
stages:
  - {name: subscriber}
  - {name: lead}
  - {name: SQL, when: {event: [Demo Requested]}}
rules:
  - {name: pricing, group: web, page: /pricing, points: 5}
  - {name: email_open, group: email, event: Email Opened, points: 10, decay: {steps: [{after: 30d, keep: 0.5}]}}
  - {name: demo, group: web, event: Demo Requested, points: 30}
""")
T0 = datetime(2026, 10, 2)


def _ingest(store, messages, at):
    store.ingest(normalize_batch(messages, at))


def _cache(store, m, as_of, leads=None):
    """A full re-score with state, written to the cache (what the live path does for a new lead)."""
    frame, state, paths = partial.score_live(store, m, as_of, leads)
    with store.transaction() as conn:
        partial.save_cache(store, conn, as_of, state)
    return frame, paths


def _ids(messages):
    """Each lead's new messages' ids (the live path's ``message_ids``)."""
    ids = {}
    for msg in messages:
        ids.setdefault(msg["userId"], set()).add(msg["messageId"])
    return ids


def _live(store, m, as_of, messages):
    """The live path's call: each lead's new messages as (type, event), and their ids."""
    by_lead = {}
    for msg in messages:
        by_lead.setdefault(msg["userId"], set()).add((msg["type"], msg.get("event")))
    frame, state, paths = partial.score_live(store, m, as_of, sorted(by_lead), by_lead, message_ids=_ids(messages))
    with store.transaction() as conn:
        partial.save_cache(store, conn, as_of, state)
    return frame.set_index("lead_id"), paths


def test_a_page_view_re_derives_the_page_rule_and_keeps_the_cached_email_points(store):
    _ingest(store, [track("ann", "Email Opened", "2026-10-01T09:00:00Z"),
                    track("ann", "Email Opened", "2026-10-01T10:00:00Z")], T0)
    first, paths = _cache(store, MODEL, T0)
    assert paths == {"partial": 0, "full": 1, "merged": 0} and first.set_index("lead_id").loc["ann", "score"] == 20.0  # 2 × 10
    new = [page("ann", "/pricing", "2026-10-03T09:00:00Z")]
    _ingest(store, new, datetime(2026, 10, 3, 9))
    got, paths = _live(store, MODEL, datetime(2026, 10, 3, 9), new)
    assert paths == {"partial": 1, "full": 0, "merged": 0}
    # pricing 5 (derived) + two e-mail opens 2 × 10 (cached, no decay step within 30 days) = 25
    assert got.loc["ann", "score"] == 25.0 and got.loc["ann", "rule:email_open"] == 20.0
    assert got.loc["ann", "tier"] == "warm" and got.loc["ann", "hits:email_open"] == 2


def test_a_lead_whose_cached_rule_crossed_a_decay_step_takes_the_full_path(store):
    """The cache row is good until the first decay step of its e-mail opens (Oct 1 + 30 days): a page
    view after that re-derives every rule; with the stale cache the score would be 5 + 20 = 25."""
    _ingest(store, [track("ann", "Email Opened", "2026-10-01T09:00:00Z"),
                    track("ann", "Email Opened", "2026-10-01T10:00:00Z")], T0)
    _cache(store, MODEL, T0)
    until = store.query("SELECT valid_until FROM live_rule_cache WHERE lead_id = 'ann'")[0][0]
    assert until == datetime(2026, 10, 31, 9)   # the first open's step: Oct 1 09:00 + 30 days
    new = [page("ann", "/pricing", "2026-11-05T09:00:00Z")]
    _ingest(store, new, datetime(2026, 11, 5, 9))
    got, paths = _live(store, MODEL, datetime(2026, 11, 5, 9), new)
    assert paths == {"partial": 0, "full": 1, "merged": 0}
    # pricing 5 + two opens past their step, 2 × 10 × 0.5 = 10 → 15
    assert got.loc["ann", "score"] == 15.0 and got.loc["ann", "rule:email_open"] == 10.0
    # the new cache row: no later edge (both opens are past their only step)
    assert store.query("SELECT valid_until FROM live_rule_cache WHERE lead_id = 'ann'")[0][0] is None


def test_the_stage_flag_of_a_cached_demo_request_keeps_the_lead_in_its_stage(store):
    _ingest(store, [track("bob", "Demo Requested", "2026-10-01T09:00:00Z")], T0)
    _cache(store, MODEL, T0)
    new = [track("bob", "Email Opened", "2026-10-03T09:00:00Z")]
    _ingest(store, new, datetime(2026, 10, 3, 9))
    got, paths = _live(store, MODEL, datetime(2026, 10, 3, 9), new)
    assert paths == {"partial": 1, "full": 0, "merged": 0}
    # demo 30 (cached) + open 10 (derived) = 40; the Demo Requested flag (cached) keeps the SQL stage
    assert got.loc["bob", "score"] == 40.0 and got.loc["bob", "stage"] == "SQL"


def test_an_identify_takes_the_full_path_and_a_new_model_ignores_the_cache(store):
    _ingest(store, [track("cy", "Email Opened", "2026-10-01T09:00:00Z")], T0)
    _cache(store, MODEL, T0)
    new = [{"type": "identify", "userId": "cy", "timestamp": "2026-10-03T09:00:00Z", "traits": {"title": "VP"},
            "messageId": "cy-id"}]
    _ingest(store, new, datetime(2026, 10, 3, 9))
    assert _live(store, MODEL, datetime(2026, 10, 3, 9), new)[1] == {"partial": 0, "full": 1, "merged": 0}
    other = model("""
name: partial-2
groups: {email: {axis: engagement}}
tiers: [{name: cold}, {name: warm, min: 20}]
rules:
  - {name: email_open, group: email, event: Email Opened, points: 7}
""")
    new = [track("cy", "Email Opened", "2026-10-04T09:00:00Z")]
    _ingest(store, new, datetime(2026, 10, 4, 9))
    got, paths = _live(store, other, datetime(2026, 10, 4, 9), new)
    assert paths == {"partial": 0, "full": 1, "merged": 0} and got.loc["cy", "score"] == 14.0   # 2 × 7


def test_a_first_visit_joins_the_partial_query_and_a_lead_with_unscored_history_does_not(store):
    """A batch of a cached lead's page view and three first page views. neo has no message but the
    batch's: partial, its rules it cannot match read as zero (pricing 5). old's e-mail open was stored
    before and never scored (no cache row): the full path counts it (5 + 10 = 15; read as zero it would
    be 5). ali's alias call merged anon-ali's e-mail open into it: full path (5 + 10)."""
    _ingest(store, [track("ann", "Email Opened", "2026-10-01T09:00:00Z"),
                    track("ann", "Email Opened", "2026-10-01T10:00:00Z")], T0)
    _cache(store, MODEL, T0, ["ann"])
    _ingest(store, [track("old", "Email Opened", "2026-10-01T11:00:00Z"),
                    track("anon-ali", "Email Opened", "2026-10-01T12:00:00Z"),
                    {"type": "alias", "previousId": "anon-ali", "userId": "ali", "timestamp": "2026-10-01T13:00:00Z",
                     "messageId": "alias-ali"}], T0)
    at = datetime(2026, 10, 3, 9)
    new = [page(lead, "/pricing", "2026-10-03T09:00:00Z") for lead in ("ann", "neo", "old", "ali")]
    _ingest(store, new, at)
    assert partial.new_leads(store, ["neo", "old", "ali"], _ids(new)) == {"neo"}
    got, paths = _live(store, MODEL, at, new)
    assert paths == {"partial": 2, "full": 2, "merged": 0}
    assert got["score"].to_dict() == {"ann": 25.0, "neo": 5.0, "old": 15.0, "ali": 15.0}
    want = score_leads(store, MODEL, at, leads=list(got.index), activity=True).set_index("lead_id").loc[got.index]
    for col in want.columns:
        assert got[col].equals(want[col]), col
    # neo's cache row is written like any other: its next page view is an ordinary partial re-score
    assert store.query("SELECT count(*) FROM live_rule_cache WHERE lead_id = 'neo'")[0][0] == 1


def test_first_visits_alone_join_the_full_query_rather_than_a_query_of_their_own(store):
    """No cached lead in the batch, one lead on the full path (an identify): the first visit goes with it
    (one query); its score is the same either way (pricing 5; cy: its e-mail open 10 + pricing 5)."""
    _ingest(store, [track("cy", "Email Opened", "2026-10-01T09:00:00Z")], T0)
    at = datetime(2026, 10, 3, 9)
    new = [page("neo", "/pricing", "2026-10-03T09:00:00Z"), page("cy", "/pricing", "2026-10-03T09:00:00Z"),
           {"type": "identify", "userId": "cy", "timestamp": "2026-10-03T09:00:00Z", "traits": {"title": "VP"},
            "messageId": "cy-id-2"}]
    _ingest(store, new, at)
    got, paths = _live(store, MODEL, at, new)
    assert paths == {"partial": 0, "full": 2, "merged": 0}
    assert got["score"].to_dict() == {"cy": 15.0, "neo": 5.0}


def test_a_first_visit_derives_the_rules_that_give_points_with_no_message(store):
    """``if_never`` inactivity gives points to a lead that never had a matching event: a first page view
    cannot match the e-mail rule, yet it must be derived (-4), not read as a zero cache row."""
    m = model("""
name: never
groups: {web: {axis: engagement}, email: {axis: engagement}}
tiers: [{name: cold}, {name: warm, min: 20}]
rules:
  - {name: pricing, group: web, page: /pricing, points: 5}
  - {name: never_opened, group: email, event: Email Opened, inactivity: {after: 30d, if_never: true}, points: -4}
""")
    at = datetime(2026, 10, 3, 9)
    new = [page("neo", "/pricing", "2026-10-03T09:00:00Z")]
    _ingest(store, new, at)
    got, paths = _live(store, m, at, new)
    assert paths == {"partial": 1, "full": 0, "merged": 0}
    assert got.loc["neo", "score"] == 1.0 and got.loc["neo", "rule:never_opened"] == -4.0   # 5 - 4


def test_touched_rules_follow_each_rules_cheap_match():
    m = load_model(default_model_path())
    names = {r.name: i for i, r in enumerate(m.rules)}
    page_rules = partial.touched(m, [("page", None)])
    assert names["pricing_page"] in page_rules and names["pages_per_session"] in page_rules
    assert names["email_open"] not in page_rules and names["video_top_of_funnel"] not in page_rules
    assert -1 not in page_rules                                   # the SQL stage's Demo Requested flag
    demo = partial.touched(m, [("track", "Demo Requested")])
    assert names["demo_request"] in demo and -1 in demo and names["pricing_page"] not in demo
    cta = partial.touched(m, [("track", "CTA Clicked")])
    assert {names["video_cta_button"], names["video_top_of_funnel"]} <= cta   # video facts count CTA clicks
    # response-time multipliers: the e-mail rules' reference event moves their points
    reply = names["email_reply"]
    since = {mul.response_time.since_event for mul in m.rules[reply].multipliers if mul.response_time}
    assert all(reply in partial.touched(m, [("track", e)]) for e in since if e)


# ----------------------------------------------------------------------------------- differential
END = datetime(2026, 11, 1)


def _replayed(store, lead: str, target: str, at: datetime, tag: str) -> list[dict]:
    """``lead``'s stored engagement messages, replayed for ``target`` from ``at`` on (the demo
    generator's own vocabulary: page views, e-mails, video sessions, CTA clicks, demo requests)."""
    rows = store.query("SELECT type, event, name, properties, ts FROM events WHERE user_id = ? AND type IN "
                       "('track', 'page') ORDER BY ts, message_id", (lead,))
    if not rows:
        return []
    start = rows[0][4]
    out = []
    for k, (type_, event, name, props, ts) in enumerate(rows):
        msg = {"type": type_, "userId": target, "messageId": f"{tag}-{target}-{k}",
               "timestamp": (at + (ts - start)).isoformat() + "Z",
               "properties": json.loads(props) if isinstance(props, str) else (props or {})}
        if type_ == "track":
            msg["event"] = event
        elif name:
            msg["name"] = name
        out.append(msg)
    return out[:60]


def test_partial_re_scores_equal_full_re_scores_on_every_lead_and_column(duckdb_url):
    """A demo population (default model, video rules included) cached as of its end; then batches of
    replayed real activity (a few days later, then 45 days later when many cached rules crossed a decay
    step or window edge), each with first visits of new leads (partial with no cache row: new_leads):
    every re-scored lead's row equals the full re-score's."""
    store = open_store(duckdb_url)
    try:
        load_population(store, DemoConfig(leads=300, seed=5, end=END))
        import_catalog(store, load_catalog(write_catalog(Path(duckdb_url).parent / "videos.yaml")), END)
        m = load_model(default_model_path())
        _cache(store, m, END)
        leads = [r[0] for r in store.query("SELECT lead_id FROM leads ORDER BY lead_id")]
        seen = {"partial": 0, "full": 0, "merged": 0}
        steps = [(END + timedelta(days=3), "replay"),     # all kinds of activity, few cached rules stale
                 (END + timedelta(days=48), "page"),      # one page view: every other rule from the cache,
                 (END + timedelta(days=49), "replay")]    # where 45 days moved many past a decay step
        for step, (at, kind) in enumerate(steps):
            batch = []
            for k, target in enumerate(leads[step::3][:80]):
                if kind == "page":
                    batch.append(page(target, "/pricing", (at - timedelta(hours=1)).isoformat() + "Z"))
                else:
                    source = leads[(k * 7 + 11) % len(leads)]
                    batch += _replayed(store, source, target, at - timedelta(hours=2), f"s{step}")
            firsts = [f"first-{step}-{k}" for k in range(6)]
            for k, first in enumerate(firsts):
                if kind == "page":
                    batch.append(page(first, "/pricing", (at - timedelta(hours=1)).isoformat() + "Z"))
                else:
                    source = leads[(k * 13 + 5) % len(leads)]
                    batch += _replayed(store, source, first, at - timedelta(hours=2), f"f{step}")
            if kind == "replay":
                assert {m_["event"] for m_ in batch if m_["type"] == "track"} >= {"Video Content Playing", "Email Opened"}
            _ingest(store, batch, at)
            ids = _ids(batch)
            assert partial.new_leads(store, firsts + leads[:3], ids) == {f for f in firsts if f in ids}
            got, paths = _live(store, m, at, batch)
            for key in seen:
                seen[key] += paths[key]
            want = score_leads(store, m, at, leads=list(got.index), activity=True).set_index("lead_id")
            got = got.loc[want.index]
            for col in want.columns:
                assert got[col].equals(want[col]), (step, col)
        assert seen["partial"] > 100 and seen["full"] > 10, seen
    finally:
        store.close()


TIMED = model("""
name: timed
groups:
  web: {axis: engagement}
tiers: [{name: cold}, {name: warm, min: 20}]
rules:
  - {name: email_open, group: web, event: Email Opened, points: 10, decay: {steps: [{after: 30d, keep: 0.5}]}}
  - {name: pricing_week, group: web, page: /pricing, points: 5, window: 7d}
  - {name: download, group: web, event: Resource Downloaded, points: 8, decay: {half_life: 10d}}
""")


def test_the_time_scheduler_re_scores_only_the_leads_time_can_move(store):
    """ann's open passes its decay step on Oct 31 09:00, bob's page view leaves its 7-day window on
    Oct 8 10:00, cy's download decays continuously (half-life), dee has no event; eve arrives after
    the cache was written (no cache row)."""
    _ingest(store, [track("ann", "Email Opened", "2026-10-01T09:00:00Z"),
                    page("bob", "/pricing", "2026-10-01T10:00:00Z"),
                    track("cy", "Resource Downloaded", "2026-10-01T11:00:00Z"),
                    {"type": "identify", "userId": "dee", "timestamp": "2026-10-01T12:00:00Z", "traits": {"plan": "x"},
                     "messageId": "dee-1"}], T0)
    _cache(store, TIMED, T0)
    _ingest(store, [track("eve", "Email Opened", "2026-10-02T09:00:00Z")], datetime(2026, 10, 2, 9))
    assert partial.due_leads(store, TIMED, datetime(2026, 10, 5)) == ["cy", "eve"]
    assert partial.due_leads(store, TIMED, datetime(2026, 10, 8, 10)) == ["bob", "cy", "eve"]
    assert partial.due_leads(store, TIMED, datetime(2026, 10, 31, 9)) == ["ann", "bob", "cy", "eve"]
    # after re-scoring the due leads as of Oct 9, bob has no edge left (his only view left the window)
    _cache(store, TIMED, datetime(2026, 10, 9), leads=["bob", "cy", "eve"])
    assert partial.due_leads(store, TIMED, datetime(2026, 10, 10)) == ["cy"]
    # and a model of another version has no cache: everyone is due
    other = model("""
name: timed-2
groups: {web: {axis: engagement}}
tiers: [{name: cold}, {name: warm, min: 20}]
rules:
  - {name: email_open, group: web, event: Email Opened, points: 10}
""")
    assert partial.due_leads(store, other, datetime(2026, 10, 10)) == ["ann", "bob", "cy", "dee", "eve"]


def test_a_message_dated_after_the_instant_bounds_the_cache_only_if_received_by_then(store):
    """ann's open dated Oct 5 was received Oct 2 (stored before its time): her cache row is good until
    Oct 5. bob's page view dated Oct 3 is received after the Oct 2 instant (a later batch's message,
    already in the store when this one is scored): it re-scores him as a message, so it bounds nothing."""
    _ingest(store, [track("ann", "Email Opened", "2026-10-05T00:00:00Z"),
                    track("bob", "Email Opened", "2026-09-30T00:00:00Z")], T0)
    _ingest(store, [page("bob", "/pricing", "2026-10-03T00:00:00Z")], datetime(2026, 10, 3, 1))
    _cache(store, MODEL, T0)
    until = dict(store.query("SELECT lead_id, valid_until FROM live_rule_cache"))
    assert until == {"ann": datetime(2026, 10, 5), "bob": datetime(2026, 10, 30)}   # bob: his open's 30-day step


def test_a_changed_video_catalog_retires_the_cache_of_a_model_with_video_rules(store, tmp_path):
    m = load_model(default_model_path())
    _ingest(store, [page("ann", "/pricing", "2026-10-01T09:00:00Z")], T0)
    _cache(store, m, T0)
    assert partial.cached_leads(store, partial.cache_version(store, m), T0, ["ann"]) == {"ann"}
    import_catalog(store, load_catalog(write_catalog(tmp_path / "videos.yaml")), T0)   # video facts may change
    assert partial.cached_leads(store, partial.cache_version(store, m), T0, ["ann"]) == set()
    assert partial.due_leads(store, m, T0) == ["ann"]
    # a model without video rules does not depend on the catalog
    _cache(store, MODEL, T0)
    import_catalog(store, load_catalog(write_catalog(tmp_path / "videos2.yaml")), T0 + timedelta(hours=1))
    assert partial.cached_leads(store, partial.cache_version(store, MODEL), T0, ["ann"]) == {"ann"}


# ----------------------------------------------------------------------------------- merged re-scores
def _merged(store, m, as_of, result, floor):
    """The live path's merged call for an ingested batch: its rows and kinds; counted up to
    the batch's commit; ``floor``: every commit since is in a batch handed over (as here)."""
    batch = partial.batch_rows(store, result.new_message_ids, result.seqs)
    messages = partial.batch_messages(batch)
    watermark = max(result.seqs)
    frame, state, paths = partial.score_live(store, m, as_of, sorted(messages), messages,
                                             watermark=watermark, merge_floor=floor, batch=batch)
    with store.transaction() as conn:
        partial.save_cache(store, conn, as_of, state, watermark=watermark)
    return frame.set_index("lead_id"), paths


def _cache_all(store, m, as_of):
    """Everyone scored with state at the store's newest commit; returns that watermark."""
    watermark = store.committed_seq
    frame, state, _ = partial.score_live(store, m, as_of, None, watermark=watermark)
    with store.transaction() as conn:
        partial.save_cache(store, conn, as_of, state, watermark=watermark)
    return watermark


MERGE = model("""
name: merge
groups:
  web: {axis: engagement, cap: 60}
  product: {axis: engagement}
tiers: [{name: cold}, {name: warm, min: 20}, {name: hot, min: 60}]
stages:
  - {name: subscriber}
  - {name: lead}
  - {name: SQL, when: {event: [Demo Requested], within: 30d}}
rules:
  - {name: pricing, group: web, page: /pricing, points: 20, decay: {half_life: 10d}}
  - {name: blog, group: web, page: /blog/*, points: 10, additional: 4, max_count: 3, decay: {half_life: 10d}}
  - {name: bounce, group: web, type: page, where: {time_on_page: {lt: 5}}, points: -5, window: 30d}
  - {name: deep, group: web, type: page, where: {time_on_page: {gte: 60}}, points: 3, cap: 7}
  - {name: sessions, group: web, type: page, window: 30d, aggregate: {count: true, bucket: session_id, min: 3}, points: 10}
  - {name: days, group: web, type: page, window: 30d, aggregate: {count_distinct: day, min: 2}, points: 6}
  - {name: demo, group: product, event: Demo Requested, points: 30, additional: 5}
  - {name: idle, group: product, type: page, inactivity: {after: 20d, if_never: true}, points: -4}
""")


def _pg(lead, path, ts, **props):
    msg = page(lead, path, ts)
    msg["properties"].update(props)
    return msg


def test_a_merged_re_score_adds_the_batch_to_the_cached_state_worked_by_hand(duckdb_url):
    """ann, cached Oct 2 00:00 (watermark w0): pricing viewed Oct 1 00:00 (20 × 0.5^(1/10) as of then),
    two blog posts Oct 1 (10 + 4), one session s1 with 2 pages, one day. Oct 5 00:00 batch: a third blog
    post and a pricing view in session s1, a Demo Requested. Merged, by hand as of Oct 5 00:00:
    pricing 20 × 0.5^(4/10) + 20 × 0.5^(0.5/10) (viewed Oct 4 12:00), blog 10 × 0.5^(4/10) + 4 × 0.5^(4/10)
    + 4 × 0.5^(1/10) (the third, Oct 4 00:00: room for one more of max 3, at `additional`), sessions: s1
    now 3 pages → 10, days: Oct 1 and Oct 4 → 6, demo 30 (the first), idle 0 (a page 12 h ago); web
    capped at 60; SQL stage from the demo."""
    store = open_store(duckdb_url)
    try:
        _ingest(store, [_pg("ann", "/pricing", "2026-10-01T00:00:00Z", session_id="s1"),
                        _pg("ann", "/blog/a", "2026-10-01T00:00:00Z", session_id="s1")], T0)
        _ingest(store, [_pg("ann", "/blog/b", "2026-10-01T01:00:00Z", session_id="s2")], T0)
        floor = _cache_all(store, MERGE, T0)
        at = datetime(2026, 10, 5)
        result = store.ingest(normalize_batch([
            _pg("ann", "/blog/c", "2026-10-04T00:00:00Z", session_id="s1"),
            _pg("ann", "/pricing", "2026-10-04T12:00:00Z", session_id="s1"),
            track("ann", "Demo Requested", "2026-10-04T12:00:00Z")], at))
        got, paths = _merged(store, MERGE, at, result, floor)
        assert paths == {"partial": 0, "full": 0, "merged": 1}
        pricing = 20 * 0.5 ** 0.4 + 20 * 0.5 ** 0.05
        blog = 10 * 0.5 ** 0.4 + 4 * 0.5 ** (4 / 10 - 1 / 24 / 10) + 4 * 0.5 ** 0.1
        row = got.loc["ann"]
        assert row["rule:pricing"] == round(pricing, 4) and row["rule:blog"] == round(blog, 4)
        assert (row["rule:sessions"], row["rule:days"], row["rule:demo"], row["rule:idle"]) == (10.0, 6.0, 30.0, 0.0)
        assert row["group:web"] == 60.0 and row["stage"] == "SQL"
        want = score_leads(store, MERGE, at, leads=["ann"], activity=True).set_index("lead_id")
        for col in want.columns:
            assert got[col].equals(want[col]), col
    finally:
        store.close()


def test_a_ranked_rules_new_message_merges_only_after_the_newest_cached_occurrence(duckdb_url):
    """blog (max_count 3, first/additional) ranks its occurrences by time: ann's cache counted /blog/a and
    /blog/b (Oct 1 00:00 and 01:00), bob's /blog/a (Oct 1 00:00). A batch brings ann a post at exactly
    01:00 (it may rank before /blog/b) and bob one at 02:00 (after his): ann takes the partial path,
    bob merges, and both equal a full re-score."""
    store = open_store(duckdb_url)
    try:
        _ingest(store, [_pg("ann", "/blog/a", "2026-10-01T00:00:00Z"), _pg("ann", "/blog/b", "2026-10-01T01:00:00Z"),
                        _pg("bob", "/blog/a", "2026-10-01T00:00:00Z")], T0)
        floor = _cache_all(store, MERGE, T0)
        at = datetime(2026, 10, 2)
        result = store.ingest(normalize_batch([_pg("ann", "/blog/c", "2026-10-01T01:00:00Z"),
                                               _pg("bob", "/blog/c", "2026-10-01T02:00:00Z")], at))
        got, paths = _merged(store, MERGE, at, result, floor)
        assert paths == {"partial": 1, "full": 0, "merged": 1}
        want = score_leads(store, MERGE, at, leads=["ann", "bob"], activity=True).set_index("lead_id")
        for col in want.columns:
            assert got.loc[["ann", "bob"], col].equals(want.loc[["ann", "bob"], col]), col
    finally:
        store.close()


def test_merged_re_scores_equal_full_re_scores_on_every_lead_and_column(duckdb_url):
    """The demo population (default model) cached with its watermark; then batches of replayed page
    views and demo requests (a few days later; again the next day, merged into merged rows; pages dated
    before the cached ones, which a max_count rule cannot take in order; 45 days later, past many
    edges), each with first visits: every re-scored lead's row equals the full re-score's, and most
    leads of the early batches are merged."""
    store = open_store(duckdb_url)
    try:
        load_population(store, DemoConfig(leads=300, seed=7, end=END))
        m = load_model(default_model_path())
        floor = _cache_all(store, m, END)
        leads = [r[0] for r in store.query("SELECT lead_id FROM leads ORDER BY lead_id")]
        seen = {"partial": 0, "full": 0, "merged": 0}
        steps = [(END + timedelta(days=3), "replay"), (END + timedelta(days=4), "replay"),
                 (END + timedelta(days=4, hours=1), "late"), (END + timedelta(days=48), "replay")]
        for step, (at, kind) in enumerate(steps):
            batch = []
            for k, target in enumerate(leads[:150:2] if step < 3 else leads[1::3][:80]):
                if kind == "late":
                    batch.append(_pg(target, "/blog/late", (END - timedelta(days=60)).isoformat() + "Z"))
                    continue
                source = leads[(k * 7 + step) % len(leads)]
                batch += [msg for msg in _replayed(store, source, target, at - timedelta(hours=3), f"m{step}")
                          if msg["type"] == "page" or msg.get("event") == "Demo Requested"][:12]
            for k in range(4):
                batch.append(_pg(f"new-{step}-{k}", "/pricing", (at - timedelta(hours=1)).isoformat() + "Z",
                                 session_id=f"n{k}", time_on_page=3))
            if kind == "late":   # the leads whose cached blog posts are newer cannot take it in order
                blog = [r.name for r in m.rules].index("blog_post") + 1
                behind = {r[0] for r in store.query(f"SELECT lead_id FROM live_rule_cache WHERE last[{blog}] > ?",
                                                    (END - timedelta(days=60),))} & {msg["userId"] for msg in batch}
            result = store.ingest(normalize_batch(batch, at))
            got, paths = _merged(store, m, at, result, floor)
            for key in seen:
                seen[key] += paths[key]
            want = score_leads(store, m, at, leads=list(got.index), activity=True).set_index("lead_id")
            got = got.loc[want.index]
            for col in want.columns:
                assert got[col].equals(want[col]), (step, col, got[col][got[col] != want[col]].head(3).to_dict(),
                                                    want[col][got[col] != want[col]].head(3).to_dict())
            if kind == "late":
                assert len(behind) >= 5 and paths["partial"] + paths["full"] >= len(behind), (len(behind), paths)
        assert seen["merged"] > 100 and seen["partial"] + seen["full"] > 50, seen
    finally:
        store.close()


def test_a_score_counts_messages_up_to_its_watermark_so_a_merge_never_counts_one_twice(duckdb_url):
    """ann views pricing (commit w1), then again (commit w2). A re-score at watermark w1 that runs after
    w2 committed (the live pass of w1 while the writer went on) counts the first view only; merging
    w2's batch then counts the second once: 2 × 20 × 0.5^(age / 10 d), what a full re-score gives."""
    store = open_store(duckdb_url)
    try:
        w1 = store.ingest(normalize_batch([_pg("ann", "/pricing", "2026-10-01T00:00:00Z")], T0)).seqs[0]
        second = store.ingest(normalize_batch([_pg("ann", "/pricing", "2026-10-01T06:00:00Z")], T0))
        frame, state, _ = partial.score_live(store, MERGE, T0, ["ann"], watermark=w1)
        assert frame.set_index("lead_id").loc["ann", "rule:pricing"] == round(20 * 0.5 ** 0.1, 4)
        with store.transaction() as conn:
            partial.save_cache(store, conn, T0, state, watermark=w1)
        at = datetime(2026, 10, 2, 1)
        got, paths = _merged(store, MERGE, at, second, w1)
        assert paths["merged"] == 1
        want = round(20 * 0.5 ** (25 / 240) + 20 * 0.5 ** (19 / 240), 4)
        assert got.loc["ann", "rule:pricing"] == want == score_leads(store, MERGE, at).set_index("lead_id").loc["ann", "rule:pricing"]
    finally:
        store.close()


BROWSER = model("""
name: browser
groups:
  web: {axis: engagement}
  tech: {axis: fit}
tiers: [{name: cold}, {name: warm, min: 20}]
rules:
  - {name: pricing, group: web, page: /pricing, points: 5}
  - {name: chrome, group: tech, trait: {browser: Chrome}, points: 7}
  - {name: senior, group: tech, trait: {seniority: vp}, points: 11}
""")


def test_a_merge_reads_trait_rules_from_the_cache_unless_the_batch_or_an_import_wrote_traits(duckdb_url):
    """ann's cache (pricing 5) is merged three times: a plain page view keeps her trait rules' cached
    values (0); a page view with a Chrome user agent writes her browser trait, so the batch derives
    them (chrome 7); an import that makes her a VP (no message) drops her cache row, so the next page
    view takes the full path (senior 11). Every score equals a full re-score: 10, 22, 38."""
    store = open_store(duckdb_url)
    try:
        _ingest(store, [_pg("ann", "/pricing", "2026-10-01T00:00:00Z")], T0)
        floor = _cache_all(store, BROWSER, T0)
        steps = [({}, None, 10.0, "merged"),
                 ({"userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                "Chrome/120.0 Safari/537.36"}, None, 22.0, "merged"),
                 ({}, {"seniority": "vp"}, 38.0, "full")]
        for k, (context, imported, score, path) in enumerate(steps):
            at = T0 + timedelta(hours=k + 1)
            if imported:
                store.add_leads([("ann", imported, at)])
            msg = _pg("ann", "/pricing", (at - timedelta(minutes=5)).isoformat() + "Z")
            msg["messageId"] = f"ann-{k}"
            if context:
                msg["context"] = context
            got, paths = _merged(store, BROWSER, at, store.ingest(normalize_batch([msg], at)), floor)
            assert paths[path] == 1, (k, paths)
            assert got.loc["ann", "score"] == score == score_leads(store, BROWSER, at).set_index("lead_id").loc["ann", "score"]
    finally:
        store.close()
