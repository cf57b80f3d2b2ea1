"""The training table: one row per labelled lead, features as of a cut-off.

The rule, group and axis columns come from the engine (``score_leads``: the same numbers the points model
shows); traits are read as they were known at the cut-off (a trait stamped after it is left out). When the
engine offers ``feature_frame`` (traits + rules + video aggregates in one pass) it is used instead.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from leadscore.store import Store

ENGINE_COLUMNS = ("score", "fit", "engagement")
ENGINE_PREFIXES = ("rule:", "group:", "hits:")
NOT_FEATURES = ("lead_id", "label", "ts", "tier", "stage", "grade", "disqualified", "probability")


def trait_frame(store: Store, as_of: datetime | None = None, keys: list[str] | None = None) -> pd.DataFrame:
    """Traits pivoted to one column per key (``trait:<key>``): numbers where every value of the key is a
    number, text otherwise. Only values stamped at or before ``as_of`` are read."""
    sql = ("SELECT COALESCE(i.lead_id, t.lead_id) AS lead_id, t.key, t.value, t.num, t.ts, t.message_id "
           "FROM lead_traits t LEFT JOIN identities i ON i.alias_id = t.lead_id")
    params: list[Any] = []
    if as_of is not None:
        sql += " WHERE t.ts <= ?"
        params.append(as_of)
    long = store.query_arrow(sql, params).to_pandas()
    if keys is not None:
        long = long[long["key"].isin(keys)]
    if long.empty:
        return pd.DataFrame({"lead_id": pd.Series(dtype="object")})
    # several ids merged into one lead: the newest value per key wins, as in resolved_traits
    long = long.sort_values(["ts", "message_id"]).drop_duplicates(["lead_id", "key"], keep="last")
    out = pd.DataFrame({"lead_id": long["lead_id"].unique()})
    for key, part in long.groupby("key", sort=True):
        numeric = part["value"].notna().sum() == part["num"].notna().sum()
        col = part.set_index("lead_id")["num" if numeric else "value"]
        out[f"trait:{key}"] = out["lead_id"].map(col)
        if numeric:
            out[f"trait:{key}"] = out[f"trait:{key}"].astype(float)
    return out


def feature_table(store: Store, model: Any, as_of: datetime, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """lead_id + engine columns (score, fit, engagement, rule:/group:/hits:) + trait:<key> columns (+ label)."""
    import leadscore.engine as engine

    if hasattr(engine, "feature_frame"):
        frame = engine.feature_frame(store, model, as_of)
    else:
        scored = engine.score_leads(store, model, as_of) if model is not None else None
        traits = trait_frame(store, as_of)
        frame = traits if scored is None else scored.merge(traits, on="lead_id", how="left")
    if labels is not None:
        frame = frame.merge(labels[["lead_id", "label"]], on="lead_id", how="inner")
    return frame.reset_index(drop=True)


def lead_dates(store: Store) -> dict[str, Any]:
    """lead_id → when the lead appeared (``leads.created_at``), for time-ordered splits."""
    return dict(store.query("SELECT lead_id, created_at FROM leads"))


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in NOT_FEATURES]


def split_types(frame: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns; booleans count as numbers."""
    numeric, categorical = [], []
    for c in columns:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            numeric.append(c)
        else:
            categorical.append(c)
    return numeric, categorical


def as_model_input(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The columns a pipeline sees: floats and object strings (None for missing)."""
    out = pd.DataFrame(index=frame.index)
    for c in numeric:
        out[c] = pd.to_numeric(frame[c], errors="coerce").astype(float) if c in frame else np.nan
    for c in categorical:
        s = frame[c] if c in frame else pd.Series([None] * len(frame), index=frame.index)
        out[c] = s.astype("object").where(s.notna(), None).map(lambda v: v if v is None else str(v))
    return out
