"""Writing a trained model's probabilities and reasons into ``lead_predictions``, where the engine reads them
(a stage condition such as ``probability: {gte: 0.4}``) beside the points score."""
from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
from threadpoolctl import threadpool_limits

from leadscore.learn.train import PredictiveModel
from leadscore.store import Store


def write_predictions(store: Store, model: PredictiveModel, frame: pd.DataFrame, as_of: datetime,
                      computed_at: datetime | None = None, top: int = 3) -> int:
    """Replace every lead's row with this model's probability and top reasons; returns leads written."""
    if frame.empty:
        return 0
    with threadpool_limits(1):
        probs = model.predict_proba(frame)
        reasons = model.reasons(frame, top=top)
    rows = [(lead, float(p), model.version, as_of, json.dumps(r), computed_at or as_of)
            for lead, p, r in zip(frame["lead_id"], probs, reasons)]
    with store._lock, store.transaction() as conn:
        store._execute(conn, "DELETE FROM lead_predictions")
        for start in range(0, len(rows), 50_000):
            store._bulk_insert(conn, "lead_predictions", ("lead_id", "probability", "model_version", "as_of", "reasons",
                                                          "computed_at"), rows[start:start + 50_000], conflict="plain")
    return len(rows)
