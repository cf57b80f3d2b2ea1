"""The read models (leadscore.service.queries) on DuckDB and PostgreSQL, numbers worked by hand.

Tiny model: a pricing page view = 30 engagement points, a demo request = 50, seniority vp = 40 fit.
Tiers: cold < 40 <= warm < 80 <= hot."""
from datetime import datetime

import pytest

from leadscore.engine import refresh_scores
from leadscore.service import queries
from tests.engine.helpers import identify, load, model, page, track

AS_OF = datetime(2026, 4, 10)
MODEL = """
name: tiny
version: tiny-1
groups:
  web: {axis: engagement}
  persona: {axis: fit}
tiers: [{name: cold}, {name: warm, min: 40}, {name: hot, min: 80}]
rules:
  - {name: pricing, group: web, page: /pricing, points: 30}
  - {name: demo, group: web, event: Demo Requested, points: 50}
  - {name: vp, group: persona, trait: {seniority: vp}, points: 40}
"""


def seed(store):
    load(store, [
        identify("ann", email="ann@acme.io", first_name="Ann", last_name="Lee", seniority="vp",
                 company={"name": "Acme"}),
        page("ann", "/pricing", "2026-04-01T10:00:00Z"),
        track("ann", "Demo Requested", "2026-04-02T10:00:00Z"),
        identify("bob", email="bob@acme.io", name="Bob Stone"),
        page("bob", "/pricing", "2026-04-03T10:00:00Z"),
        identify("cy", email="cy@other.org", name="Cy", seniority="vp"),
        page("dee", "/", "2026-02-01T00:00:00Z"),
        {"type": "group", "userId": "ann", "groupId": "acc1", "traits": {"name": "Acme Inc"},
         "timestamp": "2026-01-02T00:00:00Z", "messageId": "g1"},
        {"type": "group", "userId": "bob", "groupId": "acc1", "timestamp": "2026-01-02T00:00:00Z", "messageId": "g2"},
    ])
    m = model(MODEL)
    refresh_scores(store, m, AS_OF, cause="model", cause_ref="tiny-1")
    return m


def test_list_leads_ranks_filters_and_pages(store):
    seed(store)
    page1 = queries.list_leads(store, as_of=AS_OF, limit=2)
    # ann 30 + 50 + 40 = 120 (hot), cy 40 (warm), bob 30 (cold), dee 0 (cold)
    assert [(r["lead_id"], r["score"], r["tier"]) for r in page1["items"]] == [("ann", 120.0, "hot"), ("cy", 40.0, "warm")]
    assert page1["total"] == 4
    ann = page1["items"][0]
    assert (ann["email"], ann["name"], ann["company"], ann["account"]) == ("ann@acme.io", "Ann Lee", "Acme", "acc1")
    assert ann["last_activity"] == "2026-04-02T10:00:00"
    assert ann["trend"] == [120.0]
    page2 = queries.list_leads(store, as_of=AS_OF, limit=2, cursor=page1["next_cursor"])
    assert [r["lead_id"] for r in page2["items"]] == ["bob", "dee"]
    assert page2["next_cursor"] is None
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=AS_OF, tier="cold", sort="lead_id", desc=False)["items"]] == ["bob", "dee"]
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=AS_OF, account="acc1")["items"]] == ["ann", "bob"]
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=AS_OF, q="STONE")["items"]] == ["bob"]
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=AS_OF, min_score=30, max_score=40)["items"]] == ["cy", "bob"]
    # active in the 10 days before April 10: ann (Apr 2) and bob (Apr 3); dee's visit is in February
    assert [r["lead_id"] for r in queries.list_leads(store, as_of=AS_OF, active_within_days=10)["items"]] == ["ann", "bob"]
    with pytest.raises(queries.QueryError) as err:
        queries.list_leads(store, as_of=AS_OF, sort="colour")
    assert err.value.field == "sort"
    with pytest.raises(queries.QueryError) as err:
        queries.list_leads(store, as_of=AS_OF, cursor="garbage!")
    assert err.value.field == "cursor"


def test_lead_detail_history_timeline(store):
    m = seed(store)
    d = queries.lead_detail(store, m, "ann", AS_OF)
    assert d["score"] == 120.0 and d["fit"] == 40.0 and d["engagement"] == 80.0
    assert {r["rule"]: r["points"] for r in d["rules"]} == {"pricing": 30.0, "demo": 50.0, "vp": 40.0}
    assert d["traits"]["email"] == "ann@acme.io"
    assert d["account"]["account_id"] == "acc1"
    assert [(h["cause"], h["score"], h["prev_score"]) for h in d["history"]] == [("model", 120.0, None)]
    assert [e["event"] for e in d["timeline"][:2]] == ["Demo Requested", "page"]
    with pytest.raises(queries.NotFound):
        queries.lead_detail(store, m, "nobody", AS_OF)


def test_accounts_roll_up_top_engagement_plus_max_fit(store):
    m = seed(store)
    accounts = queries.list_accounts(store, model=m)
    # acc1: engagement ann 80 + bob 30 = 110, fit max(40, 0) = 40 → 150
    assert [(a["account_id"], a["score"], a["engagement"], a["fit"], a["leads"], a["hot_leads"], a["name"])
            for a in accounts["items"]] == [("acc1", 150.0, 110.0, 40.0, 2, 1, "Acme Inc")]
    one = queries.account_detail(store, "acc1", AS_OF, rollup=queries.AccountRollup(top_n=1), model=m)
    assert one["score"] == 120.0  # top 1: ann 80 + fit 40
    assert [(lead["lead_id"], lead["counted"]) for lead in one["lead_items"]] == [("ann", True), ("bob", False)]


def test_model_summary_and_tier_whatif(store):
    m = seed(store)
    s = queries.model_summary(store, m)
    assert s["distribution"]["tier"] == {"cold": 2, "hot": 1, "warm": 1}
    assert [r["name"] for r in s["rules"]] == ["pricing", "demo", "vp"]
    w = queries.tier_whatif(store, {"warm": 30, "hot": 130}, model=m)
    # scores 120, 40, 30, 0: warm from 30 → ann, cy, bob warm; hot from 130 → nobody
    assert w["proposed"] == {"cold": 1, "warm": 3, "hot": 0}
    assert w["changed"] == 2  # ann hot→warm, bob cold→warm
    with pytest.raises(queries.QueryError) as err:
        queries.tier_whatif(store, {"lukewarm": 10}, model=m)
    assert err.value.field == "thresholds.lukewarm"
