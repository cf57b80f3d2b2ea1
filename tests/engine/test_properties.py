"""Property tests (hypothesis): caps are never exceeded, and a duplicated messageId or a reordered
delivery never changes a score. DuckDB only: each example builds a fresh store file."""
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings, strategies as st

from leadscore.engine import score_leads
from leadscore.events import normalize_batch
from leadscore.store import open_store
from tests.engine.helpers import model

CAPPED = model("""
name: capped
axes: {engagement: {cap: 70}, fit: {cap: 30}}
groups:
  web: {axis: engagement, cap: 40}
  email: {axis: engagement, cap: 25}
  persona: {axis: fit, cap: 20}
  company: {axis: fit}
rules:
  - {name: pricing, group: web, page: /pricing*, points: 20}
  - {name: blog, group: web, page: /blog/*, points: 10, additional: 4, decay: {half_life: 10d}}
  - {name: open, group: email, event: Email Opened, points: 5, additional: 2, per: email_id,
     decay: {steps: [{after: 7d, keep: 0.5}]}}
  - {name: click, group: email, event: Email Link Clicked, points: 15, cap: 20}
  - {name: bounce, group: web, type: page, where: {time_on_page: {lt: 5}}, points: -5}
  - {name: exec, group: persona, trait: {seniority: vp}, points: 30}
  - {name: big, group: company, trait: {size: {gte: 100}}, points: 25}
""")
AS_OF = datetime(2026, 4, 10)

event = st.one_of(
    st.tuples(st.just("page"), st.sampled_from(["/pricing", "/blog/a", "/blog/b", "/", "/careers"]),
              st.integers(0, 120)),
    st.tuples(st.just("Email Opened"), st.sampled_from(["e1", "e2", "e3"]), st.integers(0, 120)),
    st.tuples(st.just("Email Link Clicked"), st.sampled_from(["e1", "e2"]), st.integers(0, 120)),
)
lead_events = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), event, st.integers(0, 60 * 24 * 40)),
                       min_size=1, max_size=40)


def _messages(items):
    out = []
    for n, (lead, (kind, value, secs), minutes) in enumerate(items):
        ts = (AS_OF - timedelta(minutes=minutes)).isoformat() + "Z"
        if kind == "page":
            out.append({"type": "page", "userId": lead, "timestamp": ts, "messageId": f"m{n}",
                        "properties": {"path": value, "time_on_page": secs}})
        else:
            out.append({"type": "track", "userId": lead, "event": kind, "timestamp": ts, "messageId": f"m{n}",
                        "properties": {"email_id": value}})
    for lead, size in (("a", 500), ("b", 50), ("c", 1000)):
        out.append({"type": "identify", "userId": lead, "timestamp": "2026-01-01T00:00:00Z",
                    "messageId": f"id-{lead}", "traits": {"seniority": "vp", "size": size}})
    return out


def _score(tmp_path, name, batches):
    store = open_store(str(tmp_path / f"{name}.duckdb"))
    try:
        for batch in batches:
            store.ingest(normalize_batch(batch, datetime(2026, 4, 10)))
        return score_leads(store, CAPPED, AS_OF).set_index("lead_id").sort_index()
    finally:
        store.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=lead_events)
def test_caps_are_never_exceeded(tmp_path_factory, items):
    s = _score(tmp_path_factory.mktemp("caps"), "s", [_messages(items)])
    assert (s["group:web"] <= 40).all() and (s["group:email"] <= 25).all() and (s["group:persona"] <= 20).all()
    assert (s["rule:click"].abs() <= 20).all()
    assert (s["engagement"] <= 70).all() and (s["fit"] <= 30).all()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=lead_events, data=st.data())
def test_duplicates_and_order_never_change_a_score(tmp_path_factory, items, data):
    msgs = _messages(items)
    dupes = data.draw(st.lists(st.sampled_from(msgs), max_size=10))
    shuffled = data.draw(st.permutations(msgs + dupes))
    split = data.draw(st.integers(0, len(shuffled)))
    tmp = tmp_path_factory.mktemp("dup")
    once = _score(tmp, "once", [msgs])
    again = _score(tmp, "again", [shuffled[:split], shuffled[split:], dupes])
    assert once.equals(again)


def _live(tmp_path, name, batches):
    """Ingest batch by batch, re-scoring the touched leads after each (as the service does)."""
    from leadscore.engine import refresh_scores
    store = open_store(str(tmp_path / f"{name}.duckdb"))
    try:
        for batch in batches:
            res = store.ingest(normalize_batch(batch, datetime(2026, 4, 10)))
            refresh_scores(store, CAPPED, AS_OF, leads=sorted(res.leads_touched), cause="event")
        current = store.query("SELECT lead_id, round(score, 6), tier, stage FROM lead_scores ORDER BY lead_id")
        last = store.query("SELECT lead_id, round(score, 6), tier, stage FROM score_history h WHERE changed_at = "
                           "(SELECT max(changed_at) FROM score_history g WHERE g.lead_id = h.lead_id) "
                           "AND NOT EXISTS (SELECT 1 FROM score_history g WHERE g.lead_id = h.lead_id "
                           "AND g.changed_at = h.changed_at AND g.rowid > h.rowid) ORDER BY lead_id")
        return current, last
    finally:
        store.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=lead_events, data=st.data())
def test_live_scores_and_history_end_state_ignore_order_and_duplicates(tmp_path_factory, items, data):
    msgs = _messages(items)
    shuffled = data.draw(st.permutations(msgs + data.draw(st.lists(st.sampled_from(msgs), max_size=8))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=3)))
    batches = [shuffled[a:b] for a, b in zip([0] + cuts, cuts + [len(shuffled)])]
    tmp = tmp_path_factory.mktemp("live")
    ordered_current, ordered_last = _live(tmp, "ordered", [msgs])
    current, last = _live(tmp, "shuffled", batches)
    assert current == ordered_current
    assert last == current  # the newest history entry of each lead is its current score
