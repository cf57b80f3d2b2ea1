"""`leadscore calibrate`: points learned from outcomes, written back into the model file.

Each rule becomes one feature: the points it gave a lead divided by its reference points (so 1 = fired
once at full value, 2 = twice, 0.5 = decayed by half); a rule worth 0 points counts as fired / not
fired. A regularised logistic regression (L2, strength chosen by cross-validated log-loss, shrinking toward
the current points rescaled rather than toward zero) on the training part of the leads gives each rule a weight in log-odds; scorecard scaling turns weights into points:
``points = weight × PDO / ln 2`` (PDO points double the odds). Every number of a rule (points,
additional, band points, cap) is scaled by the same factor and rounded to an integer, so a rule keeps
its shape and only its size changes. Disqualifying rules are left alone.

The file is edited in place (comments, order and layout stay), so ``git diff`` shows only the numbers.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from leadscore.learn import metrics


@dataclass
class RuleWeight:
    rule: str
    reference: float | None        # the rule's own points per unit of its feature (None: fired or not)
    weight: float                  # log-odds per unit
    old_points: float
    new_points: int
    scale: float                   # factor applied to the rule's numbers
    fired: int                     # training leads where it fired


@dataclass
class Calibration:
    pdo: float
    intercept: float
    weights: list[RuleWeight]
    train_leads: int
    test_leads: int
    split: str
    auc_original: float | None
    auc_calibrated: float | None
    auc_calibrated_engine: float | None = None
    new_text: str = ""
    notes: list[str] = field(default_factory=list)
    tiers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"pdo": self.pdo, "intercept": self.intercept, "train_leads": self.train_leads,
                "test_leads": self.test_leads, "split": self.split, "auc_original": self.auc_original,
                "auc_calibrated": self.auc_calibrated, "auc_calibrated_engine": self.auc_calibrated_engine,
                "tiers": self.tiers, "notes": self.notes,
                "rules": [w.__dict__ for w in self.weights]}


def _reference(rule: Any) -> float | None:
    if getattr(rule, "bands", None):
        ref = max((b.points for b in rule.bands), key=abs)
        return float(ref) if ref else None
    return float(rule.points) if rule.points else (float(rule.additional) if rule.additional else None)


def rule_features(frame: pd.DataFrame, model: Any) -> tuple[pd.DataFrame, dict[str, float | None]]:
    """One column per calibratable rule (see module doc) and each rule's reference points."""
    cols, refs = {}, {}
    for rule in model.rules:
        if rule.disqualify or f"rule:{rule.name}" not in frame:
            continue
        ref = _reference(rule)
        refs[rule.name] = ref
        if ref is None:
            cols[rule.name] = (frame[f"hits:{rule.name}"].to_numpy(dtype=float) > 0).astype(float)
        else:
            cols[rule.name] = frame[f"rule:{rule.name}"].to_numpy(dtype=float) / ref
    return pd.DataFrame(cols, index=frame.index), refs


def holdout(y: np.ndarray, dates: pd.Series | None, test_size: float, seed: int,
            split: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """``auto``: time-ordered when leads have varied dates, else stratified random; or force ``time`` / ``random``."""
    idx = np.arange(len(y))
    if split not in ("auto", "time", "random"):
        raise ValueError(f"split is auto, time or random, not {split!r}")
    if split == "time" and (dates is None or dates.isna().any() or dates.nunique() <= 10):
        raise ValueError("a time-ordered split needs a creation date for every lead, and varied dates")
    if split != "random" and dates is not None and dates.notna().all() and dates.nunique() > 10:
        order = idx[np.argsort(dates.to_numpy(), kind="stable")]
        cut = int(round(len(order) * (1 - test_size)))
        return order[:cut], order[cut:], f"time-ordered: trained on the earliest {cut} leads, tested on the {len(order) - cut} after"
    tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    return tr, te, f"stratified random {100 - round(test_size * 100)}/{round(test_size * 100)} split (random_state {seed})"


def fit_points(X: pd.DataFrame, y: np.ndarray, pdo: float, seed: int = 0,
               prior: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Log-odds weights per feature (L2 logistic regression, C by 5-fold CV log-loss) and the intercept.
    Log-loss, not AUC, picks C: AUC ignores the weights' size, which is exactly what becomes points.

    With ``prior`` (the current points per unit of each feature) the weights shrink toward the current
    points, rescaled, instead of toward zero: the current total enters as one more feature whose
    coefficient is all but unpenalised (scaled to 10× the spread), so thin data gives back the current
    model and plenty of data overrides it. scikit-learn's LogisticRegression has no prior mean or offset;
    this keeps to it rather than a hand-written optimiser."""
    A = X.to_numpy(dtype=float)
    k = None
    if prior is not None and np.any(prior):
        total = A @ prior
        spread = float(np.std(total)) or 1.0
        k = 10.0 / spread
        A = np.column_stack([A, total * k])
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", category=FutureWarning)
        lr = LogisticRegressionCV(Cs=[0.001, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 100], cv=5, scoring="neg_log_loss",
                                  max_iter=5000, random_state=seed).fit(A, y)
    coef = lr.coef_[0]
    if k is not None:
        return coef[:-1] + coef[-1] * k * prior, float(lr.intercept_[0])
    return coef, float(lr.intercept_[0])


def calibrate_frame(frame: pd.DataFrame, model: Any, model_text: str, *, pdo: float = 20.0, test_size: float = 0.3,
                    seed: int = 0, dates: pd.Series | None = None, label: str = "label",
                    hot_share: float = 0.5, warm_share: float = 0.85, set_tiers: bool = True,
                    split: str = "auto", shrink_to_current: bool = True) -> tuple[Calibration, np.ndarray]:
    """Learn points on a training split of ``frame`` (engine scores + label), evaluate on the rest.
    Returns the calibration (with the new model text) and the test rows' indices."""
    frame = frame.reset_index(drop=True)
    y = frame[label].to_numpy(dtype=int)
    if not 0 < y.sum() < len(y):
        raise ValueError("calibrate needs both converted and not converted leads")
    X, refs = rule_features(frame, model)
    if X.shape[1] == 0:
        raise ValueError("the model has no rules to calibrate")
    tr, te, split = holdout(y, dates, test_size, seed, split)
    notes = []
    if min(y[tr].sum(), len(tr) - y[tr].sum()) < 30:
        notes.append(f"only {int(y[tr].sum())} converted / {int(len(tr) - y[tr].sum())} other training leads: points are rough")
    prior = np.array([refs[name] or 0.0 for name in X.columns]) if shrink_to_current else None
    w, intercept = fit_points(X.iloc[tr], y[tr], pdo, seed, prior)
    factor = pdo / math.log(2)
    weights = []
    for (name, ref), wj in zip(refs.items(), w):
        new_unit = wj * factor
        rule = model.rule(name)
        scale = (new_unit / ref) if ref else 1.0
        new_points = int(round(rule.points * scale)) if ref else int(round(new_unit))
        weights.append(RuleWeight(name, ref, float(wj), float(rule.points), new_points, float(scale),
                                  int((X.iloc[tr][name] != 0).sum())))
    # the held-out comparison: the original engine score vs the calibrated integer points
    unit_points = np.array([wt.new_points if not wt.reference else
                            (wt.new_points / wt.old_points * wt.reference if wt.old_points else round(wt.reference * wt.scale))
                            for wt in weights])
    calibrated_score = X.to_numpy() @ unit_points
    auc_orig = metrics.roc_auc(y[te], frame["score"].to_numpy(dtype=float)[te])
    auc_cal = metrics.roc_auc(y[te], calibrated_score[te])
    tiers = {}
    if set_tiers:
        th = metrics.tier_thresholds(y[tr], calibrated_score[tr], hot_share, warm_share)
        tiers = {"warm": th["warm"]["threshold"], "hot": th["hot"]["threshold"]}
        if tiers["warm"] is not None and tiers["hot"] is not None and tiers["hot"] <= tiers["warm"]:
            tiers["hot"] = tiers["warm"] + 1
    if auc_orig is not None and auc_cal is not None and auc_cal < auc_orig:
        notes.append(f"the learned points order the held-out leads worse than the current ones (AUC {auc_cal:.3f} < "
                     f"{auc_orig:.3f}): with {int(y[tr].sum())} converted training leads for {X.shape[1]} rules the data "
                     f"is too thin to beat them; keep the current model")
    cal = Calibration(pdo, intercept, weights, len(tr), len(te), split, auc_orig, auc_cal, notes=notes, tiers=tiers)
    cal.new_text = rewrite_model_text(model_text, model, weights, tiers if set_tiers else {}, header=(
        f"# Points calibrated by `leadscore calibrate` from {model.model_version}: L2 logistic regression on "
        f"{len(tr)} leads, {pdo:g} points double the odds; held-out AUC {_fmt(auc_orig)} → {_fmt(auc_cal)}.\n"))
    return cal, te


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _num_text(v: float) -> str:
    return str(int(round(v))) if abs(v - round(v)) < 1e-9 else f"{v:.4g}"


def rewrite_model_text(text: str, model: Any, weights: list[RuleWeight], tiers: dict[str, float | None],
                       header: str = "") -> str:
    """The model file with new rule numbers (and tier mins), edited in place in the YAML text.

    PyYAML's node tree gives each scalar's character span; replacing spans keeps every comment, key
    order and anchor of the original. A rule without a ``points:`` key gets one inserted under its name."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    edits: list[tuple[int, int, str]] = []
    by_name = {w.rule: w for w in weights}

    def mapping(node) -> dict:
        return {k.value: (k, v) for k, v in node.value} if isinstance(node, yaml.MappingNode) else {}

    top = mapping(root)
    if "rules" in top:
        for item in top["rules"][1].value:
            m = mapping(item)
            if "name" not in m or m["name"][1].value not in by_name:
                continue
            w = by_name[m["name"][1].value]
            if w.reference is None:
                if "points" in m:
                    v = m["points"][1]
                    edits.append((v.start_mark.index, v.end_mark.index, str(w.new_points)))
                elif w.new_points and item.flow_style is False:
                    k = m["name"][0]
                    line_end = text.index("\n", m["name"][1].end_mark.index) if "\n" in text[m["name"][1].end_mark.index:] else len(text)
                    edits.append((line_end, line_end, "\n" + " " * k.start_mark.column + f"points: {w.new_points}"))
                continue
            for key in ("points", "additional", "cap"):
                if key in m and isinstance(m[key][1], yaml.ScalarNode):
                    v = m[key][1]
                    old = float(v.value)
                    new = w.new_points if key == "points" else (abs(old * w.scale) if key == "cap" else old * w.scale)
                    edits.append((v.start_mark.index, v.end_mark.index, _num_text(round(new))))
            if "bands" in m:
                for band in m["bands"][1].value:
                    bm = mapping(band)
                    if "points" in bm:
                        v = bm["points"][1]
                        edits.append((v.start_mark.index, v.end_mark.index, _num_text(round(float(v.value) * w.scale))))
    if tiers and "tiers" in top:
        for item in top["tiers"][1].value:
            m = mapping(item)
            name = m.get("name", (None, None))[1]
            if name is not None and name.value in tiers and tiers[name.value] is not None and "min" in m:
                v = m["min"][1]
                edits.append((v.start_mark.index, v.end_mark.index, _num_text(round(tiers[name.value]))))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return header + text


def calibrate(store: Any, model: Any, model_text: str, as_of: datetime, outcome: str = "converted", *,
              pdo: float = 20.0, test_size: float = 0.3, seed: int = 0, set_tiers: bool = True,
              split: str = "auto") -> Calibration:
    """Score the labelled leads as of ``as_of`` with the engine, calibrate, then re-score the held-out
    leads with the new model file through the engine (caps and all) for its AUC."""
    from leadscore.engine import score_leads
    from leadscore.learn.features import lead_dates
    from leadscore.learn.labels import load_labels
    from leadscore.model import parse_model

    labels = load_labels(store, outcome, as_of)
    if labels.empty:
        raise ValueError(f"no '{outcome}' outcomes decided after {as_of:%Y-%m-%d %H:%M}; import outcomes first")
    frame = score_leads(store, model, as_of).merge(labels[["lead_id", "label"]], on="lead_id", how="inner")
    if frame.empty:
        raise ValueError("none of the labelled leads is in the scored population (do the lead ids match?)")
    dates = frame["lead_id"].map(lead_dates(store))
    cal, te = calibrate_frame(frame, model, model_text, pdo=pdo, test_size=test_size, seed=seed, dates=dates,
                              set_tiers=set_tiers, split=split)
    new_model = parse_model(cal.new_text, "calibrated model")
    test_ids = frame["lead_id"].iloc[te].tolist()
    rescored = score_leads(store, new_model, as_of).merge(frame[["lead_id", "label"]].iloc[te], on="lead_id")
    cal.auc_calibrated_engine = metrics.roc_auc(rescored["label"], rescored["score"])
    if len(rescored) != len(test_ids):
        cal.notes.append(f"{len(test_ids) - len(rescored)} held-out leads were not re-scored")
    return cal
