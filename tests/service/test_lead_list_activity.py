"""The lead list's last activity, active-within filter, traits of aliases and the trait-search path
(leadscore.service.queries) on DuckDB and PostgreSQL, with hand-worked rows.

The tiny model of test_api_queries: a pricing page view = 30 engagement points, a demo request = 50.
  ann: anonymous pricing view (anon-a, Apr 1), identified as ann with anon-a on Apr 2, demo request Apr 2
       → 80 (hot); anon-a's own traits (name, title, Mar 30) are ann's too.
  bob: pricing view Apr 8 → 30 (cold).
  cy:  home page Mar 1 → 0 (cold).
Live scores are made as of Apr 10."""
from datetime import datetime

import pytest

from leadscore.engine import refresh_scores
from leadscore.service import queries
from tests.engine.helpers import identify, load, model, page, track
from tests.service.test_api_queries import MODEL

SCORED = datetime(2026, 4, 10)


def seed(store):
    load(store, [
        {"type": "identify", "anonymousId": "anon-a", "timestamp": "2026-03-30T09:00:00Z", "messageId": "a0",
         "traits": {"name": "Anonymous Ann", "title": "CTO"}},
        {"type": "page", "anonymousId": "anon-a", "timestamp": "2026-04-01T10:00:00Z", "messageId": "a1",
         "properties": {"path": "/pricing"}},
        {"type": "identify", "userId": "ann", "anonymousId": "anon-a", "timestamp": "2026-04-02T09:00:00Z",
         "messageId": "a2", "traits": {"email": "ann@acme.io"}},
        track("ann", "Demo Requested", "2026-04-02T10:00:00Z"),
        page("bob", "/pricing", "2026-04-08T10:00:00Z"),
        page("cy", "/", "2026-03-01T10:00:00Z"),
    ])
    m = model(MODEL)
    refresh_scores(store, m, SCORED, cause="model", cause_ref="tiny-1")
    return m


def rows(result):
    return [(r["lead_id"], r["score"], r["last_activity"]) for r in result["items"]]


def test_last_activity_and_active_within_come_from_the_live_scores(store):
    seed(store)
    assert rows(queries.list_leads(store, as_of=SCORED)) == [
        ("ann", 80.0, "2026-04-02T10:00:00"), ("bob", 30.0, "2026-04-08T10:00:00"), ("cy", 0.0, "2026-03-01T10:00:00")]
    # since Apr 5: bob (Apr 8); since Mar 31: ann (Apr 1, Apr 2) too; cy's visit is older
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=SCORED, active_within_days=5)["items"]] == ["bob"]
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=SCORED, active_within_days=10)["items"]] == ["ann", "bob"]
    # the window is (as_of - days, as_of]: bob's visit exactly 2 days before Apr 10 10:00 is out
    assert queries.list_leads(store, as_of=datetime(2026, 4, 10, 10), active_within_days=2)["total"] == 0
    assert queries.list_leads(store, as_of=datetime(2026, 4, 10, 10), active_within_days=2.0001)["total"] == 1
    # the time stored with the live score is what the list shows: an event not yet scored shows once re-scored
    load(store, [page("cy", "/", "2026-04-09T08:00:00Z")])
    assert rows(queries.list_leads(store, as_of=SCORED, q="cy")) == [("cy", 0.0, "2026-03-01T10:00:00")]
    refresh_scores(store, model(MODEL), SCORED, leads=["cy"], cause="event")
    assert rows(queries.list_leads(store, as_of=SCORED, q="cy")) == [("cy", 0.0, "2026-04-09T08:00:00")]
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=SCORED, active_within_days=5)["items"]] == ["bob", "cy"]


def test_a_list_as_of_before_the_live_scores_reads_the_event_log(store):
    seed(store)
    before = datetime(2026, 4, 5)   # the live scores were made as of Apr 10: bob's Apr 8 visit is in their future
    assert rows(queries.list_leads(store, as_of=before)) == [
        ("ann", 80.0, "2026-04-02T10:00:00"), ("bob", 30.0, None), ("cy", 0.0, "2026-03-01T10:00:00")]
    # active in the 10 days before Apr 5: ann only (bob's visit is after Apr 5, cy's before Mar 26)
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=before, active_within_days=10)["items"]] == ["ann"]
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=before, active_within_days=40)["items"]] == ["ann", "cy"]


def test_traits_of_merge_the_aliases_and_filter_keys(store):
    seed(store)
    assert queries.traits_of(store, ["ann", "bob"]) == {
        "ann": {"name": "Anonymous Ann", "title": "CTO", "email": "ann@acme.io"}, "bob": {}}
    assert queries.traits_of(store, ["ann"], ["email", "title", "company.name"]) == {
        "ann": {"email": "ann@acme.io", "title": "CTO"}}
    ann = queries.list_leads(store, as_of=SCORED, limit=1)["items"][0]
    assert (ann["name"], ann["email"], ann["title"]) == ("Anonymous Ann", "ann@acme.io", "CTO")


def test_search_pages_with_the_total_on_every_page(store):
    seed(store)
    # case-insensitive, through the alias's traits
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=SCORED, q="ANONYMOUS")["items"]] == ["ann"]
    # "o": ann by her alias's name and her e-mail, bob by his id; cy has neither
    first = queries.list_leads(store, as_of=SCORED, q="o", limit=1)
    assert (rows(first), first["total"]) == ([("ann", 80.0, "2026-04-02T10:00:00")], 2)
    second = queries.list_leads(store, as_of=SCORED, q="o", limit=1, cursor=first["next_cursor"])
    assert (rows(second), second["total"], second["next_cursor"]) == ([("bob", 30.0, "2026-04-08T10:00:00")], 2, None)
    past = queries.list_leads(store, as_of=SCORED, q="o", limit=1, cursor=queries.encode_cursor([-1.0, "a"]))
    assert (past["items"], past["total"]) == ([], 2)
    # search with the other filters: a trait search and a score range, by fit ascending
    both = queries.list_leads(store, as_of=SCORED, q="o", max_score=50, sort="fit", desc=False)
    assert (rows(both), both["total"]) == ([("bob", 30.0, "2026-04-08T10:00:00")], 1)
    with pytest.raises(queries.QueryError) as err:
        queries.list_leads(store, as_of=SCORED, active_within_days=-1)
    assert err.value.field == "active_within_days"
