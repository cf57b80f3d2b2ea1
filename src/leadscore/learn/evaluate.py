"""`leadscore evaluate`: a backtest of a points model against who converted.

``evaluate_frame`` does the arithmetic on a scored frame (the engine's ``score_leads`` output) joined to
labels; ``evaluate`` scores the store's leads as of a cut-off with the engine and calls it, for one model
or a champion and a challenger on the same leads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from leadscore.learn import metrics
from leadscore.learn.labels import load_labels

STAGE_ORDER = ["subscriber", "lead", "MQL", "SQL", "opportunity", "customer"]
TIER_ORDER = ["cold", "warm", "hot"]
MQL_STAGES = ("MQL", "SQL", "opportunity", "customer")


@dataclass
class RuleInfo:
    name: str
    group: str | None = None
    points: float | None = None


def rules_of(model: Any) -> list[RuleInfo]:
    """The rules of a loaded model (anything with ``.rules`` of objects with name/group/points)."""
    return [RuleInfo(r.name, getattr(r, "group", None), getattr(r, "points", None)) for r in model.rules]


def join_labels(scored: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Scored leads that have a label (inner join on lead_id)."""
    frame = scored.merge(labels[["lead_id", "label"]], on="lead_id", how="inner")
    return frame.reset_index(drop=True)


def _engagement_levels(values: pd.Series, n: int = 4) -> pd.Series:
    """Engagement in quartiles of the leads evaluated (levels named by their ranges)."""
    if values.nunique() <= 1:
        return pd.Series([f"{values.iloc[0]:g}" if len(values) else "-"] * len(values), index=values.index)
    cats = pd.qcut(values.rank(method="first"), q=min(n, values.nunique()), labels=False)
    names = {}
    for q in sorted(cats.unique()):
        sel = values[cats == q]
        names[q] = f"Q{q + 1}: {sel.min():g}–{sel.max():g}"
    return cats.map(names)


def evaluate_frame(frame: pd.DataFrame, rules: list[RuleInfo] | None = None, *, capture: float = 0.8,
                   hot_share: float = 0.5, warm_share: float = 0.85, label: str = "label",
                   score: str = "score", name: str = "model") -> dict:
    """Everything the report shows for one model. ``frame`` has the label and the engine's columns:
    score (required), fit, engagement, tier, stage, ``rule:<name>``, ``hits:<name>`` (optional)."""
    y = frame[label].to_numpy(dtype=int)
    s = frame[score].to_numpy(dtype=float)
    n, k = len(y), int(y.sum())
    out: dict[str, Any] = {
        "name": name, "leads": n, "converted": k, "base_rate": (k / n) if n else None,
        "roc_auc": metrics.roc_auc(y, s), "pr_auc": metrics.pr_auc(y, s),
        "deciles": metrics.deciles(y, s), "bands": metrics.score_bands(y, s),
        "mql_threshold": metrics.threshold_for_capture(y, s, capture),
        "tier_thresholds": metrics.tier_thresholds(y, s, hot_share, warm_share),
        "curves": metrics.curves(y, s) if 0 < k < n else None,
    }
    for axis in ("fit", "engagement"):
        if axis in frame:
            out[f"{axis}_auc"] = metrics.roc_auc(y, frame[axis].to_numpy(dtype=float))
    if "tier" in frame:
        out["by_tier"] = metrics.by_category(y, frame["tier"], TIER_ORDER)
    if "stage" in frame:
        out["by_stage"] = metrics.by_category(y, frame["stage"], STAGE_ORDER)
        mql = frame["stage"].isin(MQL_STAGES).to_numpy()
        if "engagement" in frame and mql.any():
            levels = _engagement_levels(frame.loc[mql, "engagement"].astype(float))
            rows = metrics.by_category(y[mql], levels.to_numpy())
            out["mql_by_engagement"] = sorted(rows, key=lambda r: r["group"])
        else:
            out["mql_by_engagement"] = []
    pdo = metrics.points_per_doubling(y, s)
    out["points_per_doubling"] = pdo
    rule_rows = []
    for rule in rules or []:
        hits, pts = f"hits:{rule.name}", f"rule:{rule.name}"
        if hits in frame:
            fired = frame[hits].to_numpy(dtype=float) > 0
        elif pts in frame:
            fired = frame[pts].to_numpy(dtype=float) != 0
        else:
            continue
        rule_rows.append(metrics.rule_lift_dict(metrics.rule_lift(y, fired, rule.name, rule.points, rule.group, pdo)))
    out["rules"] = rule_rows
    return out


def compare_frames(champion: dict, challenger: dict, y, s_a, s_b) -> dict:
    cmp = metrics.compare_auc(y, s_a, s_b)
    cmp.update({"champion": champion["name"], "challenger": challenger["name"],
                "pr_auc_a": champion["pr_auc"], "pr_auc_b": challenger["pr_auc"],
                "mql_a": champion["mql_threshold"], "mql_b": challenger["mql_threshold"]})
    return cmp


@dataclass
class Evaluation:
    """The JSON-ready result of a backtest: one entry per model, and the comparison when there are two."""
    as_of: str
    outcome: str
    models: list[dict]
    comparison: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"as_of": self.as_of, "outcome": self.outcome, "models": self.models,
                "comparison": self.comparison, "notes": self.notes}


def evaluate(store, models: list[Any], as_of: datetime, outcome: str = "converted", *, capture: float = 0.8,
             hot_share: float = 0.5, warm_share: float = 0.85) -> Evaluation:
    """Score the labelled leads as of ``as_of`` with each model (the first is the champion) and evaluate."""
    from leadscore.engine import score_leads  # the engine computes every score; learn adds no second scorer

    if not models:
        raise ValueError("evaluate needs at least one model")
    labels = load_labels(store, outcome, as_of)
    notes = []
    if labels.empty:
        raise ValueError(f"no '{outcome}' outcomes decided after {as_of:%Y-%m-%d %H:%M}; import outcomes first "
                         f"(leadscore outcomes import FILE.csv --map lead_id=… --map outcome=…)")
    undated = int(labels["ts"].isna().sum())
    if undated:
        notes.append(f"{undated} of {len(labels)} outcomes have no date: they are assumed decided after the cut-off")
    results, frames = [], []
    for i, model in enumerate(models):
        scored = score_leads(store, model, as_of)
        frame = join_labels(scored, labels)
        if frame.empty:
            raise ValueError("none of the labelled leads is in the scored population (do the lead ids match?)")
        name = getattr(model, "model_version", None) or getattr(model, "name", f"model {i + 1}")
        results.append(evaluate_frame(frame, rules_of(model), capture=capture, hot_share=hot_share,
                                      warm_share=warm_share, name=("champion: " if len(models) > 1 and i == 0 else
                                                                   "challenger: " if i else "") + str(name)))
        frames.append(frame)
    missing = len(labels) - len(frames[0])
    if missing:
        notes.append(f"{missing} labelled leads are not in the scored population and were left out")
    comparison = None
    if len(models) > 1:
        both = frames[0][["lead_id", "label", "score"]].merge(frames[1][["lead_id", "score"]], on="lead_id",
                                                              suffixes=("_a", "_b"))
        comparison = compare_frames(results[0], results[1], both["label"], both["score_a"], both["score_b"])
    return Evaluation(as_of.isoformat(), outcome, results, comparison, notes)
