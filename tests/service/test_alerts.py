"""Alert rules (leadscore.service.alerts.evaluate) on plain values: no store, no clock."""
from datetime import datetime, timedelta

from leadscore.engine import ScoreChange
from leadscore.model import parse_model
from leadscore.service.alerts import BatchEvent, alert_type, condition_holds, evaluate

MODEL = parse_model("""
name: a
version: a-1
groups: {web: {axis: engagement}, persona: {axis: fit}}
tiers: [{name: cold}, {name: warm, min: 40}, {name: hot, min: 80}]
stages:
  - {name: subscriber}
  - {name: lead}
  - {name: MQL, when: {score: {gte: 60}}}
alerts:
  - {name: hot, trigger: became_tier, tier: hot}
  - {name: mql, trigger: entered_stage, stage: MQL}
  - {name: surge, trigger: score_jump, points: 40, within: 1d}
  - {name: intent, trigger: high_intent, event: [Demo Requested, Meeting Booked], fit: {gte: 30}}
rules:
  - {name: pricing, group: web, page: /pricing, points: 30}
""", "a.yaml")
AT = datetime(2026, 4, 1, 12)


def change(lead, score, prev, tier, prev_tier, stage="lead", prev_stage="lead", fit=40.0, cause="event", ref="m1"):
    return ScoreChange(lead, AT, score, fit, score - fit, tier, stage, "A1", prev, prev_tier, prev_stage, cause, ref, {}, {})


def names(records):
    return sorted((r.name, r.lead_id) for r in records)


def test_became_tier_fires_on_entering_from_below_only():
    recs = evaluate(MODEL, [change("up", 90, 70, "hot", "warm"),         # warm → hot: alert
                            change("new", 85, None, "hot", None),        # first scored hot: alert
                            change("stay", 95, 90, "hot", "hot"),        # still hot: none
                            change("down", 50, 90, "warm", "hot")])      # hot → warm: none
    assert [r for r in names(recs) if r[0] == "hot"] == [("hot", "new"), ("hot", "up")]
    up = next(r for r in recs if r.name == "hot" and r.lead_id == "up")
    assert (up.type, up.prev_tier, up.tier, up.cause_ref) == ("lead.became_hot", "warm", "hot", "m1")


def test_entered_stage_only_upwards():
    recs = evaluate(MODEL, [change("a", 60, 50, "warm", "warm", "MQL", "lead"),
                            change("b", 50, 60, "warm", "warm", "lead", "MQL")])
    assert [n for n in names(recs) if n[0] == "mql"] == [("mql", "a")]
    assert alert_type(MODEL.alerts[1]) == "lead.stage_changed"


def test_score_jump_counts_from_the_lowest_score_in_the_window_and_fires_once():
    # 10 → 45 within the day: a rise of 35 < 40, nothing
    assert not [r for r in evaluate(MODEL, [change("a", 45, 10, "warm", "cold")],
                                    window_low={("surge", "a"): 10.0}) if r.name == "surge"]
    # 45 → 55 while the day's low was 10: a rise of 45 ≥ 40, and the previous 45 had not crossed: alert
    recs = [r for r in evaluate(MODEL, [change("a", 55, 45, "warm", "warm")], window_low={("surge", "a"): 10.0})
            if r.name == "surge"]
    assert [(r.lead_id, r.detail["rise"]) for r in recs] == [("a", 45.0)]
    # 55 → 70, low still 10: the line was crossed before (55 - 10 ≥ 40): no second alert
    assert not [r for r in evaluate(MODEL, [change("a", 70, 55, "warm", "warm")], window_low={("surge", "a"): 10.0})
                if r.name == "surge"]
    # no history in the window: counts from the previous score (30 → 75 = 45)
    assert [r.lead_id for r in evaluate(MODEL, [change("b", 75, 30, "warm", "warm")]) if r.name == "surge"] == ["b"]


def test_high_intent_needs_the_event_and_the_fit_whether_or_not_the_score_moved():
    events = [BatchEvent("m7", "a", "Demo Requested", "track", AT), BatchEvent("m8", "b", "Demo Requested", "track", AT),
              BatchEvent("m9", "c", "Page Viewed", "track", AT), BatchEvent("m10", "d", "Meeting Booked", "track", AT)]
    recs = evaluate(MODEL, [change("a", 50, 50.5, "warm", "warm", fit=40.0)], events,
                    current={"b": {"score": 20.0, "fit": 10.0, "tier": "cold", "stage": "lead"},   # fit 10 < 30
                             "d": {"score": 35.0, "fit": 35.0, "tier": "cold", "stage": "lead"}})  # unchanged, fit 35
    intents = [(r.lead_id, r.cause_ref, r.detail["event"]) for r in recs if r.name == "intent"]
    assert intents == [("a", "m7", "Demo Requested"), ("d", "m10", "Meeting Booked")]


def test_alert_ids_are_deterministic():
    a = evaluate(MODEL, [change("up", 90, 70, "hot", "warm")])
    b = evaluate(MODEL, [change("up", 90, 70, "hot", "warm")])
    assert [r.alert_id for r in a] == [r.alert_id for r in b]
    c = evaluate(MODEL, [change("up", 90, 70, "hot", "warm", ref="m2")])
    assert [r.alert_id for r in a] != [r.alert_id for r in c]


def test_fit_conditions_on_numbers():
    cond = MODEL.alerts[3].fit
    assert condition_holds(cond, 30.0) and not condition_holds(cond, 29.9) and not condition_holds(cond, None)
    from leadscore.model.conditions import Condition
    assert condition_holds(Condition.model_validate({"between": [10, 20]}), 15)
    assert not condition_holds(Condition.model_validate({"glob": "1*"}), 15)
    assert condition_holds(None, None)
