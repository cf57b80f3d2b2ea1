"""Keeping every lead's current score: re-score some or all leads as of an instant, write what
changed to lead_scores, and append each change (score, tier or stage) to score_history with its cause.

The service calls this after each ingested batch (cause 'event'), on a schedule (cause 'time': decay
steps, window edges and inactivity move scores without any event) and on model activation ('model').
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from leadscore.engine.score import score_leads, to_naive_utc
from leadscore.model.schema import Model
from leadscore.store import Store

_COLS = ("lead_id", "model_version", "as_of", "score", "fit", "engagement", "tier", "stage", "grade",
         "disqualified", "probability", "groups", "rules", "updated_at", "last_activity_at")


@dataclass
class ScoreChange:
    lead_id: str
    at: datetime
    score: float
    fit: float
    engagement: float
    tier: str
    stage: str
    grade: str
    prev_score: float | None
    prev_tier: str | None
    prev_stage: str | None
    cause: str
    cause_ref: str | None
    groups: dict
    rules: dict

    @property
    def tier_changed(self) -> bool:
        return self.prev_tier != self.tier

    @property
    def stage_changed(self) -> bool:
        return self.prev_stage != self.stage


def _previous(store: Store, conn, leads: list[str] | None) -> dict[str, tuple]:
    sql = "SELECT lead_id, score, tier, stage, model_version, last_activity_at FROM lead_scores"
    if leads is None:
        return {r[0]: r[1:] for r in store._fetchall(conn, sql)}
    return {r[0]: r[1:] for r in store._fetch_in(conn, sql + " WHERE lead_id IN {ids}", leads)}


def refresh_scores(store: Store, model: Model, as_of: datetime, leads: list[str] | None = None,
                   cause: str = "event", cause_ref: str | None = None,
                   frame: pd.DataFrame | None = None) -> list[ScoreChange]:
    """Re-score ``leads`` (all when None) as of ``as_of``; store and return the changes."""
    as_of = to_naive_utc(as_of)
    if leads is not None and not leads:
        return []
    if frame is None:
        frame = score_leads(store, model, as_of, leads=leads, activity=True)
    version = model.model_version
    groups = [c for c in frame.columns if c.startswith("group:")]
    rules = [c for c in frame.columns if c.startswith("rule:")]
    changes: list[ScoreChange] = []
    upserts, history = [], []
    with store._lock, store.transaction() as conn:
        prev = _previous(store, conn, list(frame["lead_id"]) if leads is not None else None)
        # Columns as Python lists once (a records dict per lead cost ~1 ms per 100 columns).
        col = {c: frame[c].tolist() for c in ("lead_id", "score", "fit", "engagement", "tier", "stage", "grade",
                                              "disqualified", "probability")}
        gcols = [(c[6:], frame[c].tolist()) for c in groups]
        rcols = [(c[5:], frame[c].tolist()) for c in rules]
        lasts = [None if pd.isna(x) else pd.Timestamp(x).to_pydatetime() for x in frame["last_activity"]] \
            if "last_activity" in frame.columns else [None] * len(frame)
        for k, lead in enumerate(col["lead_id"]):
            score, tier, stage, last = col["score"][k], col["tier"][k], col["stage"][k], lasts[k]
            old = prev.get(lead)
            same = old is not None and abs(old[0] - score) < 1e-9 and old[1] == tier \
                and old[2] == stage and old[3] == version and old[4] == last
            if same and leads is None:
                continue  # a whole-population re-score writes only what changed
            # (a targeted re-score also records the new as-of of an unchanged lead: its events are scored)
            g = {name: values[k] for name, values in gcols}
            r = {name: values[k] for name, values in rcols if values[k] != 0}
            prob = col["probability"][k]
            prob = None if prob is None or prob != prob else float(prob)
            fit, engagement, grade = col["fit"][k], col["engagement"][k], col["grade"][k]
            upserts.append((lead, version, as_of, score, fit, engagement, tier, stage, grade,
                            bool(col["disqualified"][k]), prob, json.dumps(g), json.dumps(r), as_of, last))
            if old is None or abs(old[0] - score) >= 1e-9 or old[1] != tier or old[2] != stage:
                ch = ScoreChange(lead, as_of, score, fit, engagement, tier, stage, grade,
                                 old[0] if old else None, old[1] if old else None,
                                 old[2] if old else None, cause, cause_ref, g, r)
                changes.append(ch)
                history.append((ch.lead_id, as_of, version, ch.score, ch.fit, ch.engagement, ch.tier, ch.stage,
                                ch.prev_score, ch.prev_tier, ch.prev_stage, cause, cause_ref))
        for start in range(0, len(upserts), 50_000):
            part = upserts[start:start + 50_000]
            store._fetch_in(conn, "DELETE FROM lead_scores WHERE lead_id IN {ids} RETURNING lead_id", [u[0] for u in part])
            store._bulk_insert(conn, "lead_scores", _COLS, part, conflict="plain")
        for start in range(0, len(history), 50_000):
            store._bulk_insert(conn, "score_history", ("lead_id", "changed_at", "model_version", "score", "fit", "engagement",
                                                       "tier", "stage", "prev_score", "prev_tier", "prev_stage",
                                                       "cause", "cause_ref"), history[start:start + 50_000], conflict="plain")
    return changes
