"""Leakage screen, training guards, artifacts and reasons, on small generated tables with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.learn.leakage import screen
from leadscore.learn.report import to_json, training_report
from leadscore.learn.train import TooFewOutcomes, TrainConfig, load_artifact, train


def _frame(n=600, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(float)
    industry = rng.choice(["saas", "retail", "bank"], n)
    logit = -1.5 + 0.6 * visits + np.where(industry == "saas", 1.0, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    status = np.where(y == 1, rng.choice(["Closed won", "Will revert"], n), rng.choice(["Ringing", "Lost"], n))
    status[rng.random(n) < 0.03] = "Ringing"
    return pd.DataFrame({
        "lead_id": [f"l{i}" for i in range(n)], "label": y,
        "trait:visits": visits, "trait:industry": industry,
        "trait:sales_status": status,                                   # the outcome in disguise
        "trait:lead_quality": np.where(rng.random(n) < 0.5, "High", "Low"),   # named like sales data
        "trait:lead_number": np.arange(100000, 100000 + n, dtype=float),      # an identifier
        "trait:followed_up": np.where((y == 1) & (rng.random(n) < 0.9), "yes", None),  # filled for converters
        "score": visits * 10,                                           # an engine column: never flagged by name
    })


def test_screen_flags_each_kind_of_leak_once():
    f = _frame()
    cols = [c for c in f.columns if c not in ("lead_id", "label")]
    flags, aucs = screen(f, f["label"], cols)
    reasons = {fl.column: fl.reason for fl in flags}
    assert reasons == {"trait:sales_status": "alone", "trait:lead_quality": "name",
                       "trait:lead_number": "identifier", "trait:followed_up": "alone"} or reasons == {
        "trait:sales_status": "alone", "trait:lead_quality": "name", "trait:lead_number": "identifier",
        "trait:followed_up": "filled_for_one_class"}
    assert aucs["trait:sales_status"] > 0.9 and 0.6 < aucs["trait:visits"] < 0.9


def test_train_excludes_leaks_unless_kept_and_saves_a_versioned_artifact(tmp_path):
    f = _frame()
    res = train(f, TrainConfig(folds=3, min_per_class=20))
    assert set(res.excluded) == {"trait:sales_status", "trait:lead_quality", "trait:lead_number", "trait:followed_up"}
    assert set(res.features) == {"trait:visits", "trait:industry", "score"}
    honest = max(v["mean"] for v in res.cv.values())
    assert 0.7 < honest < 0.95
    leaky = train(f, TrainConfig(folds=3, min_per_class=20, keep_leaky=True), cv_only=True)
    assert max(v["mean"] for v in leaky.cv.values()) > 0.97
    html = training_report(res.to_dict()).html()
    assert "Leakage candidates" in html and "trait:sales_status" in html and "<svg" in html
    assert '"chosen"' in to_json(res.to_dict())
    folder = res.model.save(tmp_path)
    again = load_artifact(folder)
    assert again.version == res.model.version and folder.name == res.model.version
    np.testing.assert_allclose(again.predict_proba(f.head(20)), res.model.predict_proba(f.head(20)))
    # the lead with the most visits: visits is its strongest reason
    top = f.sort_values("trait:visits").tail(1)
    assert res.model.reasons(top)[0][0]["feature"] in ("trait:visits", "score")


def test_too_few_outcomes_is_refused_with_a_clear_message():
    f = _frame(n=80)
    with pytest.raises(TooFewOutcomes, match=r"only \d+ converted and \d+ not converted leads have outcomes"):
        train(f, TrainConfig())


def test_unknown_exclude_is_an_error():
    with pytest.raises(ValueError, match="--exclude names columns the features do not have"):
        train(_frame(), TrainConfig(min_per_class=20, exclude=("trait:nope",)))
