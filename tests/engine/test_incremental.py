"""Incremental re-scoring (leadscore.engine.incremental): only the leads with new messages or with an
event that crossed a window, decay step or inactivity edge are re-scored, and the result equals a
full re-score on every lead and column."""
from __future__ import annotations

from datetime import datetime

import yaml

from leadscore.demo import DemoConfig, write_population
from leadscore.engine.incremental import LastRun, half_lives_as_steps, rescore_parquet
from leadscore.engine.parquet import score_parquet
from leadscore.model import load_model, parse_model
from tests.engine.helpers import identify, model, page, track
from tests.engine.test_parquet import assert_same_scores, write_log

STEP_MODEL = """
name: steps
groups: {email: {axis: engagement}, web: {axis: engagement}, product: {axis: engagement}}
tiers: [{name: cold}, {name: hot, min: 50}]
stages: [{name: subscriber}, {name: lead, when: {trait: {email: {exists: true}}}}]
rules:
  - {name: open, group: email, event: Email Opened, points: 10, decay: {steps: [{after: 30d, keep: 0.5}]}}
  - {name: recent_pricing, group: web, page: /pricing, points: 20, window: 7d}
  - {name: idle, group: web, type: page, inactivity: {after: 60d}, points: -10}
  - {name: demo, group: product, event: Demo Requested, points: 50}
"""
T1 = datetime(2026, 5, 1)
T2 = datetime(2026, 5, 3)


def test_only_leads_with_new_events_or_crossed_edges_are_rescored(tmp_path):
    msgs = [
        identify("a", "2026-01-01T00:00:00Z", email="a@acme.com"),
        track("a", "Email Opened", "2026-04-02T00:00:00Z"),     # 29 days old at T1, 31 at T2: step crossed
        identify("b", "2026-01-01T00:00:00Z", email="b@acme.com"),
        track("b", "Email Opened", "2026-04-20T00:00:00Z"),     # 11 → 13 days: nothing crossed
        track("b", "Demo Requested", "2026-04-21T00:00:00Z"),
        identify("c", "2026-01-01T00:00:00Z", email="c@acme.com"),
        page("c", "/pricing", "2026-04-25T12:00:00Z"),          # 5.5 → 7.5 days: leaves the 7-day window
        identify("d", "2026-01-01T00:00:00Z", email="d@acme.com"),
        page("d", "/blog/x", "2026-03-03T00:00:00Z"),           # 59 → 61 days: becomes inactive
        identify("e", "2026-01-01T00:00:00Z", email="e@acme.com"),
        track("e", "Demo Requested", "2026-05-02T00:00:00Z"),   # new since T1
        track("f", "Demo Requested", "2026-05-02T08:00:00Z"),   # a lead first seen since T1
        track("b", "Demo Requested", "2026-05-04T00:00:00Z"),   # after T2: not yet
    ]
    path = write_log(tmp_path / "log.parquet", msgs)
    m = model(STEP_MODEL)
    first = score_parquet(m, path, T1)
    assert set(first["lead_id"]) == {"a", "b", "c", "d", "e", "f"}   # f's lead id is in the log already
    result = rescore_parquet(m, path, LastRun(T1, m.model_version, first), T2)
    assert not result.full
    assert sorted(result.rescored) == ["a", "c", "d", "e", "f"]
    full = score_parquet(m, path, T2)
    assert_same_scores(full, result.frame)
    got = result.frame.set_index("lead_id")
    # hand-worked: a's open halves (10 → 5); b keeps 10 + 50; c's pricing leaves the window (20 → 0);
    # d turns idle (-10); e and f requested a demo (50).
    assert [got.loc[x, "score"] for x in "abcdef"] == [5, 60, 0, -10, 50, 50]
    assert list(result.frame["lead_id"]) == list(full["lead_id"])   # same order as a full run


def test_another_model_or_an_earlier_instant_means_a_full_run(tmp_path):
    path = write_log(tmp_path / "log.parquet", [track("a", "Demo Requested", "2026-04-21T00:00:00Z")])
    m = model(STEP_MODEL)
    first = score_parquet(m, path, T1)
    other = rescore_parquet(m, path, LastRun(T1, "other-version", first), T2)
    assert other.full and "other-version" in other.reason and other.rescored == ["a"]
    earlier = rescore_parquet(m, path, LastRun(T2, m.model_version, first), T1)
    assert earlier.full and "before" in earlier.reason


def _stepped_default():
    """The default model with each half-life decay written as halving steps (incremental-friendly)."""
    raw = half_lives_as_steps(yaml.safe_load(open("models/default.yaml")))
    raw["name"] = "stepped"
    return parse_model(yaml.safe_dump(raw), "stepped.yaml")


def test_incremental_equals_full_on_a_generated_population(tmp_path):
    write_population(DemoConfig(300, seed=5), tmp_path, "parquet")
    path = tmp_path / "events.parquet"
    t1, t2 = datetime(2026, 10, 10), datetime(2026, 10, 12, 6)
    rescored = {}
    for m in (_stepped_default(), load_model("models/default.yaml")):
        first = score_parquet(m, path, t1)
        result = rescore_parquet(m, path, LastRun(t1, m.model_version, first), t2)
        assert not result.full
        assert_same_scores(score_parquet(m, path, t2), result.frame)
        rescored[m.name] = len(result.rescored)
    # With decay steps only the leads near an edge are re-scored; half-lives touch every web visitor.
    assert 0 < rescored["stepped"] < 300 * 0.5 <= rescored["default"], rescored


ACCOUNT_MODEL = """
name: accounts
groups: {company: {axis: fit}, web: {axis: engagement}}
tiers: [{name: cold}, {name: hot, min: 50}]
rules:
  - {name: saas, group: company, trait: {account.industry: SaaS}, points: 25}
  - {name: pricing, group: web, page: /pricing, points: 20}
"""


def test_a_group_call_rescores_every_member_of_the_account(tmp_path):
    """b's new group call sets the account's industry: a, who sent nothing new, is re-scored too."""
    group = lambda uid, at, mid, **traits: {"type": "group", "userId": uid, "groupId": "acc1", "timestamp": at,
                                           "traits": traits, "messageId": mid}
    msgs = [
        group("a", "2026-01-01T00:00:00Z", "g1", name="Acme"),
        page("a", "/pricing", "2026-01-02T00:00:00Z"),
        group("b", "2026-01-03T00:00:00Z", "g2", name="Acme"),
        page("c", "/pricing", "2026-01-04T00:00:00Z"),                 # not a member: not re-scored
        group("b", "2026-03-01T00:00:00Z", "g3", industry="SaaS"),      # after t1
    ]
    path = write_log(tmp_path / "log.parquet", msgs)
    m = model(ACCOUNT_MODEL)
    t1, t2 = datetime(2026, 2, 1), datetime(2026, 4, 1)
    result = rescore_parquet(m, path, LastRun(t1, m.model_version, score_parquet(m, path, t1)), t2)
    assert sorted(result.rescored) == ["a", "b"]
    scores = result.frame.set_index("lead_id")["score"].to_dict()
    assert scores == {"a": 45.0, "b": 25.0, "c": 20.0}     # a: SaaS 25 + pricing 20; b: SaaS 25; c: pricing 20
    assert_same_scores(score_parquet(m, path, t2), result.frame)


def test_merge_places_fresh_rows_exactly_where_a_full_sort_would():
    """merge_scores inserts the re-scored rows by binary search into the ordered last frame: the same
    frame as concatenating and sorting by (score desc, lead_id), on 300 random cases with ties."""
    import random

    import pandas as pd

    from leadscore.engine.incremental import merge_scores
    rng = random.Random(1)
    for _ in range(300):
        ids = [f"l{i:03d}" for i in rng.sample(range(200), rng.randint(0, 60))]
        last = pd.DataFrame({"lead_id": ids, "score": [float(rng.choice([0, 5, 10, 10, 37.5])) for _ in ids],
                             "x": range(len(ids))})
        last = last.sort_values(["score", "lead_id"], ascending=[False, True]).reset_index(drop=True)
        redo = rng.sample(ids, rng.randint(0, len(ids))) + [f"n{i}" for i in range(rng.randint(0, 5))]
        fresh = pd.DataFrame({"lead_id": redo, "score": [float(rng.choice([0, 5, 10, 20])) for _ in redo], "x": -1})
        kept = last[~last["lead_id"].isin(set(redo))]
        expected = pd.concat([kept, fresh], ignore_index=True).sort_values(
            ["score", "lead_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(merge_scores(last, fresh, redo), expected, check_dtype=False)
    unordered = pd.DataFrame({"lead_id": ["b", "a"], "score": [1.0, 2.0], "x": [0, 1]})   # falls back to a sort
    assert list(merge_scores(unordered, unordered.iloc[:0], [])["lead_id"]) == ["a", "b"]
