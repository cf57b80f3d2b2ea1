"""Conversion labels: one 0/1 per lead from the ``outcomes`` table and from ``Opportunity Won/Lost`` events.

Labels are read *after a cut-off*: a lead whose outcome was decided at or before ``as_of`` is left out,
because its score as of that instant could already reflect the decision (sales touched it). Outcomes
without a date are kept (the caller chose the cut-off knowing that). Leads created after the cut-off
are left out too: they had nothing to be scored on yet.

How rows become a label for the outcome ``target``:
- ``outcomes`` rows whose ``outcome`` is ``target``: value > 0 (or NULL) → 1, value 0 → 0;
- for ``won`` and ``converted`` also rows named ``won`` (→ 1) / ``lost`` (→ 0) and ``Opportunity Won`` /
  ``Opportunity Lost`` track events;
- a lead with both a positive and a negative label is positive (it did convert), dated by its first positive.
"""
from __future__ import annotations

from datetime import datetime

import pandas as pd

from leadscore.store import Store

WON_LIKE = ("won", "converted")


def load_labels(store: Store, target: str = "converted", as_of: datetime | None = None) -> pd.DataFrame:
    """DataFrame ``lead_id, label (0/1 int), ts`` (ts of the decision, NaT when unknown), one row per lead."""
    names = [target] + (["won", "lost"] if target in WON_LIKE else [])
    marks = ",".join("?" * len(names))
    rows = store.query(
        f"SELECT COALESCE(i.lead_id, o.lead_id) AS lead_id, o.outcome, o.value, o.ts "
        f"FROM outcomes o LEFT JOIN identities i ON i.alias_id = o.lead_id WHERE o.outcome IN ({marks})", names)
    records = []
    for lead_id, outcome, value, ts in rows:
        if outcome == target:
            label = 1 if value is None or value > 0 else 0
        else:
            label = 1 if outcome == "won" else 0
        records.append((lead_id, label, ts))
    if target in WON_LIKE:
        for lead_id, event, ts in store.query(
                "SELECT lead_id, event, ts FROM resolved_events WHERE type = 'track' "
                "AND event IN ('Opportunity Won', 'Opportunity Lost') AND lead_id IS NOT NULL"):
            records.append((lead_id, 1 if event == "Opportunity Won" else 0, ts))
    frame = pd.DataFrame(records, columns=["lead_id", "label", "ts"])
    if frame.empty:
        return frame.astype({"lead_id": "object", "label": "int64", "ts": "datetime64[us]"})
    frame["ts"] = pd.to_datetime(frame["ts"])
    # positive wins; among equal labels the earliest decision
    frame = frame.sort_values(["lead_id", "label", "ts"], ascending=[True, False, True], na_position="last")
    frame = frame.drop_duplicates("lead_id", keep="first").reset_index(drop=True)
    if as_of is not None:
        frame = frame[frame["ts"].isna() | (frame["ts"] > pd.Timestamp(as_of))]
        # a lead that did not exist yet at the cut-off has nothing to be scored on
        created = dict(store.query("SELECT lead_id, created_at FROM leads"))
        born = frame["lead_id"].map(created)
        frame = frame[born.isna() | (pd.to_datetime(born) <= pd.Timestamp(as_of))].reset_index(drop=True)
    frame["label"] = frame["label"].astype("int64")
    return frame
