"""engine.current.refresh_scores: the exact rows a re-score writes (lead_scores with its groups/rules JSON,
score_history) and the ScoreChanges it returns, on DuckDB and PostgreSQL.

The score frames are given by hand (refresh_scores takes one), so every value below is worked out here.
Each test runs twice per backend: with numeric group/rule columns (DuckDB writes those with set-based
SQL, building the JSON text in SQL) and with the same values as Python objects (the row-by-row writer);
both must give the same rows, and on DuckDB the same JSON text, byte for byte.
"""
from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from leadscore.engine import refresh_scores
from leadscore.model import parse_model

MODEL = """\
name: cur
version: cur-1
groups:
  web: {axis: engagement}
  persona: {axis: fit}
rules:
  - {name: pricing, group: web, page: /pricing, points: 30}
  - {name: demo, group: web, event: Demo Requested, points: 50}
  - {name: vp, group: persona, trait: {seniority: vp}, points: 40}
"""
M1 = parse_model(MODEL, "cur.yaml")
M2 = parse_model(MODEL.replace("version: cur-1", "version: cur-2"), "cur2.yaml")

T0, T1, T2, T3 = (datetime(2026, 4, 1, 10), datetime(2026, 4, 1, 11), datetime(2026, 4, 1, 12), datetime(2026, 4, 1, 13))
LAST_ANN = datetime(2026, 4, 1, 9)
LAST_CY = datetime(2026, 3, 30, 12, 0, 0, 123456)
NAN = float("nan")

# lead, score, fit, engagement, tier, stage, grade, disqualified, probability, last_activity,
# group:web, group:persona, rule:pricing, rule:demo, rule:vp
ROWS = [
    ("ann", 70.0, 40.0, 30.0, "warm", "lead", "A1", False, NAN, LAST_ANN, 30.0, 40.0, 30.0, 0.0, 40.0),
    ("bob", 12.3456, 0.0, 12.3456, "cold", "subscriber", "D4", False, 0.25, None, 12.3456, -0.0, 12.3456, 0.0, -0.0),
    ("cy", 0.1 + 0.2, 0.0, 0.1 + 0.2, "cold", "subscriber", "D4", True, 1.0, LAST_CY, 0.1 + 0.2, 1e16, 1e-05,
     123456789.125, 0.0),
]
# json.dumps of each lead's groups and rules (a zero rule is left out; -0.0 is zero too)
GROUPS = {"ann": '{"web": 30.0, "persona": 40.0}', "bob": '{"web": 12.3456, "persona": -0.0}',
          "cy": '{"web": 0.30000000000000004, "persona": 1e+16}'}
RULES = {"ann": '{"pricing": 30.0, "vp": 40.0}', "bob": '{"pricing": 12.3456}',
         "cy": '{"pricing": 1e-05, "demo": 123456789.125}'}


def frame(rows, kind: str) -> pd.DataFrame:
    names = ["lead_id", "score", "fit", "engagement", "tier", "stage", "grade", "disqualified", "probability",
             "last_activity", "group:web", "group:persona", "rule:pricing", "rule:demo", "rule:vp"]
    f = pd.DataFrame([list(r) for r in rows], columns=names)
    f["last_activity"] = pd.to_datetime(f["last_activity"]).astype("datetime64[us]")
    f["disqualified"] = f["disqualified"].astype(bool)
    for rule in ("pricing", "demo", "vp"):
        f[f"hits:{rule}"] = (f[f"rule:{rule}"] != 0).astype("int64")
    if kind == "objects":   # the same values as Python objects: the row-by-row writer
        for c in ("group:web", "group:persona", "rule:pricing", "rule:demo", "rule:vp"):
            f[c] = pd.Series([float(x) for x in f[c]], dtype=object)
    return f


def scores(store) -> list[tuple]:
    rows = store.query("SELECT lead_id, model_version, as_of, score, fit, engagement, tier, stage, grade, disqualified, "
                       "probability, groups, rules, updated_at, last_activity_at FROM lead_scores ORDER BY lead_id")
    return [tuple(r) for r in rows]


def history(store) -> list[tuple]:
    return [tuple(r) for r in store.query(
        "SELECT lead_id, changed_at, model_version, score, fit, engagement, tier, stage, prev_score, prev_tier, prev_stage, "
        "cause, cause_ref FROM score_history ORDER BY changed_at, lead_id")]


def as_json(value):
    return json.loads(value) if isinstance(value, str) else value   # DuckDB: the text; PostgreSQL: JSONB, a dict


def check_json(store, rows, leads):
    """groups/rules of the given lead_scores rows: the exact json.dumps text on DuckDB, equal values on both."""
    for r in rows:
        if r[0] not in leads:
            continue
        if store.dialect.name == "duckdb":
            assert (r[11], r[12]) == (GROUPS[r[0]], RULES[r[0]])
        assert as_json(r[11]) == json.loads(GROUPS[r[0]]) and as_json(r[12]) == json.loads(RULES[r[0]])


def change_tuples(changes):
    return [(c.lead_id, c.at, c.score, c.fit, c.engagement, c.tier, c.stage, c.grade, c.prev_score, c.prev_tier,
             c.prev_stage, c.cause, c.cause_ref, c.groups, c.rules) for c in changes]


@pytest.mark.parametrize("kind", ["numbers", "objects"])
def test_refresh_writes_exact_rows_and_history(store, kind):
    f1 = frame(ROWS, kind)
    first = refresh_scores(store, M1, T0, leads=["ann", "bob", "cy"], cause="event", cause_ref="m1", frame=f1)
    assert change_tuples(first) == [
        ("ann", T0, 70.0, 40.0, 30.0, "warm", "lead", "A1", None, None, None, "event", "m1",
         {"web": 30.0, "persona": 40.0}, {"pricing": 30.0, "vp": 40.0}),
        ("bob", T0, 12.3456, 0.0, 12.3456, "cold", "subscriber", "D4", None, None, None, "event", "m1",
         {"web": 12.3456, "persona": -0.0}, {"pricing": 12.3456}),
        ("cy", T0, 0.30000000000000004, 0.0, 0.30000000000000004, "cold", "subscriber", "D4", None, None, None, "event",
         "m1", {"web": 0.30000000000000004, "persona": 1e16}, {"pricing": 1e-05, "demo": 123456789.125}),
    ]
    assert all(type(v) is float for c in first for v in [*c.groups.values(), *c.rules.values()])
    rows = scores(store)
    assert [r[:11] + r[13:] for r in rows] == [
        ("ann", "cur-1", T0, 70.0, 40.0, 30.0, "warm", "lead", "A1", False, None, T0, LAST_ANN),
        ("bob", "cur-1", T0, 12.3456, 0.0, 12.3456, "cold", "subscriber", "D4", False, 0.25, T0, None),
        ("cy", "cur-1", T0, 0.30000000000000004, 0.0, 0.30000000000000004, "cold", "subscriber", "D4", True, 1.0, T0, LAST_CY),
    ]
    check_json(store, rows, {"ann", "bob", "cy"})
    assert history(store) == [
        ("ann", T0, "cur-1", 70.0, 40.0, 30.0, "warm", "lead", None, None, None, "event", "m1"),
        ("bob", T0, "cur-1", 12.3456, 0.0, 12.3456, "cold", "subscriber", None, None, None, "event", "m1"),
        ("cy", T0, "cur-1", 0.30000000000000004, 0.0, 0.30000000000000004, "cold", "subscriber", None, None, None, "event", "m1"),
    ]

    # The same scores again, targeted: nothing changed, but every lead records the new as-of.
    assert refresh_scores(store, M1, T1, leads=["ann", "bob", "cy"], cause="event", cause_ref="m2", frame=f1) == []
    assert [(r[0], r[2], r[13]) for r in scores(store)] == [("ann", T1, T1), ("bob", T1, T1), ("cy", T1, T1)]
    assert len(history(store)) == 3

    # A whole-population re-score: ann's tier moves (same score), bob's score moves, cy only has a newer
    # last activity (its row is written, no history).
    later = [list(r) for r in ROWS]
    later[0][4] = "hot"
    later[1][1] = later[1][3] = later[1][10] = later[1][12] = 20.0
    later[2][9] = datetime(2026, 4, 1, 9, 30)
    f2 = frame([tuple(r) for r in later], kind)
    third = refresh_scores(store, M1, T2, cause="time", frame=f2)
    assert change_tuples(third) == [
        ("ann", T2, 70.0, 40.0, 30.0, "hot", "lead", "A1", 70.0, "warm", "lead", "time", None,
         {"web": 30.0, "persona": 40.0}, {"pricing": 30.0, "vp": 40.0}),
        ("bob", T2, 20.0, 0.0, 20.0, "cold", "subscriber", "D4", 12.3456, "cold", "subscriber", "time", None,
         {"web": 20.0, "persona": -0.0}, {"pricing": 20.0}),
    ]
    rows = scores(store)
    assert [(r[0], r[2], r[3], r[6], r[14]) for r in rows] == [
        ("ann", T2, 70.0, "hot", LAST_ANN), ("bob", T2, 20.0, "cold", None), ("cy", T2, 0.30000000000000004, "cold",
                                                                              datetime(2026, 4, 1, 9, 30))]
    if store.dialect.name == "duckdb":
        assert [(r[11], r[12]) for r in rows[:2]] == [(GROUPS["ann"], RULES["ann"]),
                                                      ('{"web": 20.0, "persona": -0.0}', '{"pricing": 20.0}')]
    check_json(store, rows, {"ann", "cy"})
    assert history(store)[3:] == [
        ("ann", T2, "cur-1", 70.0, 40.0, 30.0, "hot", "lead", 70.0, "warm", "lead", "time", None),
        ("bob", T2, "cur-1", 20.0, 0.0, 20.0, "cold", "subscriber", 12.3456, "cold", "subscriber", "time", None),
    ]

    # The same scores from a new model version: every row is rewritten with it, no score changed.
    assert refresh_scores(store, M2, T3, cause="model", cause_ref="cur-2", frame=f2) == []
    assert [(r[0], r[1], r[2]) for r in scores(store)] == [("ann", "cur-2", T3), ("bob", "cur-2", T3), ("cy", "cur-2", T3)]
    assert len(history(store)) == 5
    # and again: a whole-population re-score writes nothing when nothing moved
    assert refresh_scores(store, M2, datetime(2026, 4, 2), cause="time", frame=f2) == []
    assert {r[2] for r in scores(store)} == {T3}


def test_numbers_and_objects_write_the_same_text(tmp_path):
    """DuckDB: the set-based writer and the row loop store identical lead_scores and history, byte for byte."""
    from leadscore.store import open_store

    out = {}
    for kind in ("numbers", "objects"):
        store = open_store(str(tmp_path / f"{kind}.duckdb"))
        try:
            rng = np.random.default_rng(11)
            rows = []
            for i in range(300):
                vals = [float(x) for x in np.round(rng.normal(0, 50, 5), int(rng.integers(0, 6)))]
                vals = [v if rng.random() > 0.3 else 0.0 for v in vals]
                rows.append((f"l{i:03d}", sum(vals), vals[1], sum(vals) - vals[1], ["cold", "warm", "hot"][i % 3], "lead",
                             "B2", bool(i % 7 == 0), NAN if i % 2 else i / 300, None if i % 5 == 0 else LAST_CY,
                             *vals))
            refresh_scores(store, M1, T0, leads=[r[0] for r in rows], cause="event", cause_ref="x", frame=frame(rows, kind))
            moved = [(r[0], r[1] + (1.0 if i % 4 == 0 else 0.0), *r[2:]) for i, r in enumerate(rows)]
            refresh_scores(store, M1, T1, cause="time", frame=frame(moved, kind))
            out[kind] = (scores(store), history(store))
        finally:
            store.close()
    assert out["numbers"] == out["objects"]
    assert len(out["numbers"][1]) == 300 + 75


def test_model_version_follows_the_models_text():
    """Without a declared version it is name@<first 10 hex of sha256(text)>; the hash is cached by text,
    so an edited model (or one whose text is replaced) gets a new version."""
    import hashlib

    text = MODEL.replace("version: cur-1\n", "")
    first = parse_model(text, "a.yaml")
    assert first.model_version == "cur@" + hashlib.sha256(text.encode()).hexdigest()[:10]
    assert parse_model(text, "again.yaml").model_version == first.model_version
    edited = text.replace("points: 30", "points: 35")
    assert parse_model(edited, "b.yaml").model_version == "cur@" + hashlib.sha256(edited.encode()).hexdigest()[:10]
    first.source_text = edited   # a model is mutable: the version follows its current text
    assert first.model_version == "cur@" + hashlib.sha256(edited.encode()).hexdigest()[:10]
    assert M1.model_version == "cur-1"
