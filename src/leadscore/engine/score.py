"""Scoring a population as of an instant, on the store's own database."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from leadscore.engine.compile import Sources, _safe, compile_model
from leadscore.model.schema import Model
from leadscore.store import Store


def to_naive_utc(as_of: datetime) -> datetime:
    if as_of.tzinfo is not None:
        from datetime import timezone
        as_of = as_of.astimezone(timezone.utc).replace(tzinfo=None)
    return as_of


def _frame(model: Model, table) -> pd.DataFrame:
    raw = table.to_pandas() if hasattr(table, "to_pandas") else pd.DataFrame(table)
    raw.columns = [c.lower() for c in raw.columns]
    out = pd.DataFrame({
        "lead_id": raw["lead_id"].astype(str),
        "score": raw["score"].astype(float),
        "fit": raw["fit"].astype(float),
        "engagement": raw["engagement"].astype(float),
        "tier": raw["tier"].astype(str),
        "stage": raw["stage"].astype(str),
        "grade": raw["grade"].astype(str),
        "disqualified": raw["disqualified"].astype(bool),
        "probability": pd.to_numeric(raw["probability"], errors="coerce"),
    })
    if "last_activity" in raw.columns:
        out["last_activity"] = pd.to_datetime(raw["last_activity"])
    extra = {}
    for g in model.groups:
        extra[f"group:{g}"] = raw[f"g_{_safe(g)}"].astype(float)
    for i, rule in enumerate(model.rules):
        extra[f"rule:{rule.name}"] = raw[f"r{i}"].astype(float)
        extra[f"hits:{rule.name}"] = raw[f"h{i}"].astype(int)
    return pd.concat([out, pd.DataFrame(extra)], axis=1).reset_index(drop=True)


def lead_scope(store: Store, leads: list[str]) -> list[str]:
    """The leads and every id that resolves to one of them (their anonymous and aliased ids)."""
    ids = list(dict.fromkeys(leads))
    with store.transaction() as conn:
        aliases = store._fetch_in(conn, "SELECT alias_id FROM identities WHERE lead_id IN {ids}", ids) if ids else []
    return ids + [a for (a,) in aliases]


def score_leads(store: Store, model: Model, as_of: datetime, leads: list[str] | None = None,
                sources: Sources | None = None, activity: bool = False) -> pd.DataFrame:
    """One row per lead: lead_id, score, fit, engagement, tier, stage, grade, disqualified,
    probability, ``group:<name>``, ``rule:<name>`` (points) and ``hits:<name>`` (times fired);
    with ``activity``, also ``last_activity`` (the lead's newest message at or before ``as_of``).
    With ``leads``, only those leads' messages and traits are read (see ``compile.scoped_sources``)."""
    as_of = to_naive_utc(as_of)
    scope = lead_scope(store, leads) if leads is not None and sources is None else None
    compiled = compile_model(model, store.dialect, as_of, leads=leads, sources=sources, scope=scope, activity=activity)
    frame = _frame(model, store.query_analytic(compiled.sql))
    if not compiled.uses_probability and sources is None and len(frame):
        # The predictive model's probability is shown beside the points score even when no stage reads it.
        probs = dict(store.query("SELECT lead_id, probability FROM lead_predictions"))
        if probs:
            frame["probability"] = frame["lead_id"].map(probs).astype(float)
    return frame


@dataclass
class RunResult:
    model_version: str
    as_of: datetime
    leads: int
    frame: pd.DataFrame


def save_scores(store: Store, model: Model, as_of: datetime, frame: pd.DataFrame, computed_at: datetime) -> int:
    """Store scores with their model version and as-of instant (replacing that pair's earlier run)."""
    version = model.model_version
    rules = [c for c in frame.columns if c.startswith("rule:")]
    groups = [c for c in frame.columns if c.startswith("group:")]
    rows = []
    for rec in frame.to_dict("records"):
        rows.append((rec["lead_id"], version, as_of, rec["score"], rec["fit"], rec["engagement"], rec["tier"],
                     rec["stage"], rec["grade"], bool(rec["disqualified"]),
                     json.dumps({g[6:]: rec[g] for g in groups}),
                     json.dumps({r[5:]: rec[r] for r in rules if rec[r] != 0}), computed_at))
    cols = ("lead_id", "model_version", "as_of", "score", "fit", "engagement", "tier", "stage", "grade",
            "disqualified", "groups", "rules", "computed_at")
    with store._lock, store.transaction() as conn:
        store._execute(conn, "DELETE FROM scores WHERE model_version = ? AND as_of = ?", (version, as_of))
        for start in range(0, len(rows), 50_000):
            store._bulk_insert(conn, "scores", cols, rows[start:start + 50_000], conflict="plain")
    return len(rows)


def score_and_save(store: Store, model: Model, as_of: datetime, computed_at: datetime | None = None) -> RunResult:
    as_of = to_naive_utc(as_of)
    frame = score_leads(store, model, as_of)
    save_scores(store, model, as_of, frame, computed_at or as_of)
    return RunResult(model.model_version, as_of, len(frame), frame)
