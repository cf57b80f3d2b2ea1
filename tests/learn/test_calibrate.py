"""Scorecard scaling with a known answer, and the model file edited in place."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from leadscore.learn.calibrate import RuleWeight, calibrate_frame, fit_points, rewrite_model_text
from leadscore.learn.report import calibration_report
from leadscore.model import parse_model

MODEL = """\
# my model: comments stay
name: tiny
groups:
  fit: {axis: fit}
  act: {axis: engagement}
rules:
  - name: big_company      # fit rule
    group: fit
    trait: {company.employee_count: {gte: 500}}
    points: 10
  - name: pricing
    group: act
    page: /pricing
    points: 5
    additional: 2
    cap: 9
  - name: visited
    group: act
    type: page
tiers:
  - {name: cold}
  - {name: warm, min: 40}
  - {name: hot, min: 100}
"""


def test_points_double_the_odds_per_pdo():
    # log-odds = -2 + ln2·a + 2·ln2·b: with PDO 20, a is worth 20 points and b 40
    rng = np.random.default_rng(1)
    n = 40_000
    X = pd.DataFrame({"a": rng.integers(0, 2, n).astype(float), "b": rng.integers(0, 2, n).astype(float)})
    logit = -2 + math.log(2) * X["a"] + 2 * math.log(2) * X["b"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    w, intercept = fit_points(X, y, pdo=20)
    points = w * 20 / math.log(2)
    assert points == pytest.approx([20, 40], abs=3)
    assert intercept == pytest.approx(-2, abs=0.1)


def test_model_text_is_edited_in_place():
    model = parse_model(MODEL)
    weights = [RuleWeight("big_company", 10, 0.0, 10, 30, 3.0, 0),
               RuleWeight("pricing", 5, 0.0, 5, -10, -2.0, 0),
               RuleWeight("visited", None, 0.0, 0, 7, 1.0, 0)]
    new = rewrite_model_text(MODEL, model, weights, {"warm": 25, "hot": 61.6}, header="# calibrated\n")
    expected = (MODEL.replace("points: 10", "points: 30")
                .replace("points: 5\n    additional: 2\n    cap: 9", "points: -10\n    additional: -4\n    cap: 18")
                .replace("    type: page\n", "    type: page\n")
                .replace("  - name: visited\n", "  - name: visited\n    points: 7\n")
                .replace("min: 40", "min: 25").replace("min: 100", "min: 62"))
    assert new == "# calibrated\n" + expected
    again = parse_model(new)
    assert [r.points for r in again.rules] == [30, -10, 7]


def test_calibrate_frame_on_rule_columns():
    """Leads where 'pricing' fired convert far more; 'big_company' is noise: it ends near 0 points."""
    rng = np.random.default_rng(2)
    n = 3000
    pricing = rng.integers(0, 3, n)             # 0, 1 or 2 visits → 0, 5, 7 points
    big = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(pricing > 0, 0.5, 0.1)).astype(int)
    frame = pd.DataFrame({"lead_id": [f"l{i}" for i in range(n)], "label": y,
                          "rule:big_company": big * 10.0, "hits:big_company": big,
                          "rule:pricing": np.select([pricing == 0, pricing == 1], [0.0, 5.0], 7.0), "hits:pricing": pricing,
                          "rule:visited": 0.0, "hits:visited": 0})
    frame["score"] = frame["rule:big_company"] * 3 + frame["rule:pricing"]   # an original score dominated by noise
    cal, test_rows = calibrate_frame(frame, parse_model(MODEL), MODEL, pdo=20)
    by = {w.rule: w for w in cal.weights}
    assert abs(by["big_company"].new_points) <= 5 and by["pricing"].new_points >= 20
    assert cal.auc_calibrated > cal.auc_original + 0.1
    assert len(test_rows) == 900 and cal.train_leads == 2100
    assert parse_model(cal.new_text).rule("pricing").points == by["pricing"].new_points
    html = calibration_report(cal.to_dict(), "tiny").html()
    assert "<svg" in html and "pricing" in html and f"{cal.auc_calibrated:.3f}" in html
