"""Labels from the outcomes table and from Opportunity events, read after a cut-off; predictions stored."""
from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd

from leadscore.events import normalize_batch
from leadscore.learn.labels import load_labels
from leadscore.learn.predict import write_predictions
from leadscore.learn.train import TrainConfig, train

RECEIVED = datetime(2026, 5, 1)


def _track(user, event, ts):
    return {"type": "track", "userId": user, "event": event, "timestamp": ts, "messageId": f"{user}-{event}-{ts}"}


def test_labels_from_outcomes_and_events_after_the_cut_off(store):
    store.ingest(normalize_batch([
        _track("a", "Page Viewed", "2026-01-01T00:00:00Z"),
        _track("b", "Page Viewed", "2026-01-01T00:00:00Z"),
        _track("c", "Page Viewed", "2026-01-01T00:00:00Z"),
        _track("late", "Page Viewed", "2026-04-01T00:00:00Z"),          # created after the cut-off
        _track("a", "Opportunity Won", "2026-03-10T00:00:00Z"),
        _track("b", "Opportunity Lost", "2026-03-11T00:00:00Z"),
        _track("b", "Opportunity Won", "2026-03-20T00:00:00Z"),         # positive wins, dated by itself
        _track("late", "Opportunity Won", "2026-04-10T00:00:00Z"),
    ], RECEIVED))
    with store.transaction() as conn:
        store._bulk_insert(conn, "outcomes", ("lead_id", "outcome", "value", "ts", "source"), [
            ("c", "converted", 0.0, datetime(2026, 3, 15), "csv:x"),
            ("d", "converted", 1.0, datetime(2026, 2, 1), "csv:x"),     # decided before the cut-off
            ("e", "lost", None, None, "crm"),                           # undated: kept
        ], conflict="plain")
    labels = load_labels(store, "converted", datetime(2026, 3, 1))
    got = {r.lead_id: (r.label, None if pd.isna(r.ts) else r.ts.to_pydatetime()) for r in labels.itertuples()}
    assert got == {"a": (1, datetime(2026, 3, 10)), "b": (1, datetime(2026, 3, 20)),
                   "c": (0, datetime(2026, 3, 15)), "e": (0, None)}
    assert set(load_labels(store, "converted")["lead_id"]) == {"a", "b", "c", "d", "e", "late"}
    assert load_labels(store, "sql").empty


def test_predictions_are_stored_with_reasons(store):
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(size=n)
    frame = pd.DataFrame({"lead_id": [f"l{i}" for i in range(n)], "trait:x": x,
                          "label": (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(int)})
    model = train(frame, TrainConfig(folds=3, min_per_class=20, candidates=("logistic",))).model
    assert write_predictions(store, model, frame, datetime(2026, 3, 1)) == n
    rows = store.query("SELECT lead_id, probability, model_version, reasons FROM lead_predictions ORDER BY probability DESC")
    assert len(rows) == n and rows[0][2] == model.version
    top = frame.set_index("lead_id").loc[rows[0][0]]
    assert top["trait:x"] == frame["trait:x"].max()
    assert json.loads(rows[0][3])[0]["feature"] == "trait:x"
