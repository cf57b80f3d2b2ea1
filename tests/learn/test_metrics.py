"""Metrics on a ten-lead history worked by hand.

scores 90 80 70 60 50 40 30 20 10 0
label   1  1  0  1  0  0  0  0  1 0     (4 converted)
"""
import math

import pandas as pd
import pytest

from leadscore.learn import metrics
from leadscore.learn.evaluate import RuleInfo, evaluate_frame
from leadscore.learn.report import evaluation_report, to_json

Y = [1, 1, 0, 1, 0, 0, 0, 0, 1, 0]
S = [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]


def test_auc_counts_ordered_pairs():
    # converters at 90, 80, 60, 10 outrank 6 + 6 + 5 + 1 = 18 of the 4 × 6 = 24 pairs
    assert metrics.roc_auc(Y, S) == pytest.approx(18 / 24)
    assert metrics.roc_auc([1, 1], [3, 4]) is None


def test_threshold_sends_fewest_leads_for_the_share():
    t = metrics.threshold_for_capture(Y, S, 0.75)   # 3 of 4 conversions: the top four leads (90..60)
    assert (t["threshold"], t["leads"], t["captured"], t["rate"]) == (60.0, 4, 0.75, 0.75)
    assert t["rate_below"] == pytest.approx(1 / 6)
    assert metrics.threshold_for_capture(Y, S, 1.0)["threshold"] == 10.0


def test_deciles_and_bands():
    d = metrics.deciles(Y, S, n_bins=5)            # pairs of leads: (90,80) (70,60) (50,40) (30,20) (10,0)
    assert [r["converted"] for r in d] == [2, 1, 0, 0, 1]
    assert [r["captured"] for r in d] == [0.5, 0.75, 0.75, 0.75, 1.0]
    assert d[0]["lift"] == pytest.approx(1.0 / 0.4)
    b = metrics.score_bands(Y, S, edges=[0, 50, 100])
    assert [(r["group"], r["leads"], r["converted"]) for r in b] == [("0–50", 5, 1), ("50–100", 5, 3)]


def test_wilson_interval():
    lo, hi = metrics.wilson(3, 4)
    # (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n) with p = .75, n = 4, z = 1.96
    z = 1.959964
    c = (0.75 + z * z / 8) / (1 + z * z / 4)
    h = z * math.sqrt(0.75 * 0.25 / 4 + z * z / 64) / (1 + z * z / 4)
    assert (lo, hi) == (pytest.approx(c - h, abs=1e-6), pytest.approx(c + h, abs=1e-6))


def test_rule_lift_suggests_raise_when_worth_more_than_it_gives():
    fired = [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]       # 3 of 3 fired converted; 1 of 7 others did
    r = metrics.rule_lift(Y, fired, "demo", points=10, pdo=10, min_fired=1)
    assert (r.fired, r.fired_converted, r.not_fired, r.not_fired_rate) == (3, 3, 7, pytest.approx(1 / 7))
    assert r.p_value == pytest.approx(4 / 120)     # hypergeometric: only k=3 is as extreme
    assert r.odds_ratio == pytest.approx((3.5 / 0.5) / (1.5 / 6.5))
    assert r.implied_points == pytest.approx(10 * math.log2(r.odds_ratio))
    assert r.suggestion == "raise"
    noise = metrics.rule_lift(Y, [1, 0, 1, 0, 1, 0, 1, 0, 1, 0], "noise", points=5, pdo=10, min_fired=1)
    assert noise.suggestion == "drop"
    few = metrics.rule_lift(Y, fired, "demo", points=10, pdo=10)   # default: 30 firings needed
    assert few.suggestion == "keep" and "too few" in few.why


def test_evaluate_frame_and_reports():
    frame = pd.DataFrame({"lead_id": [f"l{i}" for i in range(10)], "label": Y, "score": S,
                          "fit": S, "engagement": [5, 4, 3, 2, 1, 0, 0, 0, 0, 0],
                          "tier": ["hot", "hot", "warm", "warm", "warm", "cold", "cold", "cold", "cold", "cold"],
                          "stage": ["MQL", "MQL", "MQL", "lead", "lead", "lead", "lead", "lead", "lead", "subscriber"],
                          "hits:demo": [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]})
    ev = evaluate_frame(frame, [RuleInfo("demo", "behaviour", 10)], capture=0.75)
    assert ev["roc_auc"] == pytest.approx(0.75) and ev["mql_threshold"]["threshold"] == 60.0
    assert [(r["group"], r["leads"], r["converted"]) for r in ev["by_tier"]] == [("cold", 5, 1), ("warm", 3, 1), ("hot", 2, 2)]
    assert [(r["leads"], r["converted"]) for r in ev["mql_by_engagement"]] == [(1, 0), (1, 1), (1, 1)]
    assert ev["rules"][0]["rule"] == "demo"
    html = evaluation_report({"as_of": "2026-01-01T00:00:00", "outcome": "converted", "models": [ev],
                              "comparison": None, "notes": []}).html()
    assert "<svg" in html and "Recommended MQL threshold" in html and "http" not in html.split("<svg")[0]
    assert '"roc_auc": 0.75' in to_json(ev)
