"""How well a score orders leads by who converted: AUCs, lift tables, rule lift and thresholds.

Pure functions over arrays (labels ``y`` 0/1 and scores ``s``), no store and no engine, so a notebook
or a test can call them on any numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest, fisher_exact
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve, precision_recall_curve


def _arrays(y, s) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=int)
    s = np.asarray(s, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    return y, s


def roc_auc(y, s) -> float | None:
    """ROC AUC, or None when only one class is present (no ordering to judge)."""
    y, s = _arrays(y, s)
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def pr_auc(y, s) -> float | None:
    """Average precision (the area under the precision-recall curve)."""
    y, s = _arrays(y, s)
    return float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else None


def curves(y, s) -> dict:
    y, s = _arrays(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    prec, rec, _ = precision_recall_curve(y, s)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "precision": prec.tolist(), "recall": rec.tolist()}


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a conversion rate k/n (scipy's binomtest)."""
    if n == 0:
        return (None, None)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def _rate_row(label: str, y: np.ndarray, base: float, **extra) -> dict:
    n, k = len(y), int(y.sum())
    lo, hi = wilson(k, n)
    rate = k / n if n else None
    return {"group": label, "leads": n, "converted": k, "rate": rate, "ci_low": lo, "ci_high": hi,
            "lift": (rate / base) if (rate is not None and base) else None, **extra}


def deciles(y, s, n_bins: int = 10) -> list[dict]:
    """Leads ranked by score, cut into ``n_bins`` equal groups (1 = the highest scores), with each
    group's conversion, lift over the base rate and the cumulative share of conversions captured."""
    y, s = _arrays(y, s)
    if len(y) == 0:
        return []
    order = np.argsort(-s, kind="stable")
    groups = np.array_split(order, min(n_bins, len(y)))
    base, total = y.mean(), max(int(y.sum()), 1)
    out, cum = [], 0
    for i, idx in enumerate(groups, start=1):
        cum += int(y[idx].sum())
        out.append(_rate_row(str(i), y[idx], base, score_min=float(s[idx].min()), score_max=float(s[idx].max()),
                             captured=cum / total))
    return out


def score_bands(y, s, edges: list[float] | None = None, n_bands: int = 8) -> list[dict]:
    """Conversion by score band ``[lo, hi)``; edges default to round numbers spanning the scores."""
    y, s = _arrays(y, s)
    if len(y) == 0:
        return []
    if edges is None:
        lo, hi = float(np.floor(s.min())), float(np.ceil(s.max()))
        if hi <= lo:
            hi = lo + 1
        step = (hi - lo) / n_bands
        mag = 10 ** math.floor(math.log10(step)) if step > 0 else 1
        step = math.ceil(step / mag) * mag
        start = math.floor(lo / step) * step
        edges = [start + i * step for i in range(n_bands + 2) if start + (i - 1) * step <= hi]
    base = y.mean()
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        last = b == edges[-1]
        mask = (s >= a) & ((s <= b) if last else (s < b))
        if mask.any():
            out.append(_rate_row(f"{a:g}–{b:g}", y[mask], base, lo=a, hi=b))
    return out


def by_category(y, values, order: list[str] | None = None) -> list[dict]:
    """Conversion per value of a categorical column (tier, stage, …)."""
    y = np.asarray(y, dtype=int)
    values = pd.Series(values).astype("object").where(pd.notna(values), "(none)").to_numpy()
    base = y.mean() if len(y) else 0
    keys = list(order or []) + sorted({str(v) for v in values} - set(order or []))
    return [_rate_row(k, y[values == k], base) for k in keys if (values == k).any()]


def threshold_for_capture(y, s, share: float) -> dict:
    """The highest threshold t such that leads scoring ≥ t hold at least ``share`` of all conversions:
    the fewest leads sent to sales for that share."""
    y, s = _arrays(y, s)
    total = int(y.sum())
    if total == 0:
        return {"share": share, "threshold": None}
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    cum = np.cumsum(ys)
    k = int(np.searchsorted(cum, math.ceil(share * total)))  # first index reaching the share
    t = ss[k]
    sent = s >= t   # ties at t are all sent
    captured = int(y[sent].sum())
    return {"share": share, "threshold": float(t), "leads": int(sent.sum()), "leads_share": float(sent.mean()),
            "captured": captured / total, "rate": captured / int(sent.sum()),
            "rate_below": (float(y[~sent].mean()) if (~sent).any() else None)}


def tier_thresholds(y, s, hot_share: float = 0.5, warm_share: float = 0.85) -> dict:
    """Tier cut-offs by conversions captured: hot holds ``hot_share`` of them in the fewest leads,
    hot + warm hold ``warm_share``; the rest is cold."""
    return {"hot": threshold_for_capture(y, s, hot_share), "warm": threshold_for_capture(y, s, warm_share)}


def points_per_doubling(y, s) -> float | None:
    """How many score points double the odds of converting, from a one-feature logistic fit of the
    label on the score: the scale that turns a rule's odds ratio into points on this model's scale."""
    y, s = _arrays(y, s)
    if not 0 < y.sum() < len(y) or np.std(s) == 0:
        return None
    slope = LogisticRegression(C=1e6, max_iter=1000).fit(s.reshape(-1, 1), y).coef_[0, 0]
    return float(math.log(2) / slope) if slope > 0 else None


@dataclass
class RuleLift:
    rule: str
    group: str | None
    points: float | None
    fired: int
    fired_converted: int
    fired_rate: float | None
    fired_ci: tuple[float | None, float | None]
    not_fired: int
    not_fired_rate: float | None
    not_fired_ci: tuple[float | None, float | None]
    lift: float | None
    odds_ratio: float | None
    p_value: float | None
    implied_points: float | None
    suggestion: str
    why: str


def rule_lift(y, fired, rule: str, points: float | None, group: str | None = None,
              pdo: float | None = None, min_fired: int = 30, alpha: float = 0.05) -> RuleLift:
    """Conversion where the rule fired vs. where it did not, with Wilson intervals, Fisher's exact test,
    and a suggestion: keep, raise, lower or drop the rule's points.

    The implied points are the rule's own (marginal) odds ratio put on the model's scale (``pdo`` =
    points that double the odds); a rule whose effect is not significant is dropped, one pulling the
    wrong way is lowered (or dropped), one worth 1.5× more / less than it gives is raised / lowered.
    Marginal effects overlap (two rules firing for the same leads both get the credit); `calibrate`
    fits them jointly."""
    y = np.asarray(y, dtype=int)
    f = np.asarray(fired, dtype=bool)
    n1, n0 = int(f.sum()), int((~f).sum())
    k1, k0 = int(y[f].sum()), int(y[~f].sum())
    r1 = k1 / n1 if n1 else None
    r0 = k0 / n0 if n0 else None
    base = y.mean() if len(y) else None
    lift = r1 / base if (r1 is not None and base) else None
    odds = p = implied = None
    if n1 and n0:
        # Haldane–Anscombe correction keeps the odds ratio finite when a cell is empty
        odds = ((k1 + .5) / (n1 - k1 + .5)) / ((k0 + .5) / (n0 - k0 + .5))
        p = float(fisher_exact([[k1, n1 - k1], [k0, n0 - k0]])[1])
        if pdo:
            implied = pdo * math.log2(odds)
    pts = points or 0.0
    if n1 < min_fired:
        suggestion, why = "keep", f"fired for {n1} leads only (< {min_fired}): too few to judge"
    elif n0 == 0:
        suggestion, why = "drop", "fires for every lead: it cannot separate anyone"
    elif p is not None and p >= alpha:
        suggestion, why = ("drop" if pts else "keep"), f"no measurable effect (Fisher p = {p:.2g})"
    elif odds is not None and (odds > 1) != (pts > 0) and pts != 0:
        suggestion = "lower"
        why = (f"converts {'above' if odds > 1 else 'below'} the rest (odds ×{odds:.2f}) but gives {pts:g} points")
    elif implied is not None and pts and abs(implied) > 1.5 * abs(pts):
        suggestion, why = "raise", f"worth about {implied:.0f} points on this model's scale, gives {pts:g}"
    elif implied is not None and pts and abs(implied) < abs(pts) / 1.5:
        suggestion, why = "lower", f"worth about {implied:.0f} points on this model's scale, gives {pts:g}"
    elif not pts and implied is not None:
        suggestion, why = "raise", f"gives no points but converts at odds ×{odds:.2f} (about {implied:.0f} points)"
    else:
        suggestion, why = "keep", "its points match its effect"
    return RuleLift(rule, group, points, n1, k1, r1, wilson(k1, n1), n0, r0, wilson(k0, n0), lift, odds, p,
                    implied, suggestion, why)


def rule_lift_dict(r: RuleLift) -> dict:
    return asdict(r)


def compare_auc(y, s_a, s_b, n_boot: int = 500, seed: int = 0) -> dict:
    """Champion (a) vs challenger (b) on the same leads: each AUC and a paired bootstrap 95 % interval of
    the difference b − a (resampling leads, both scores kept together)."""
    y, a = _arrays(y, s_a)
    _, b = _arrays(y, s_b)
    auc_a, auc_b = roc_auc(y, a), roc_auc(y, b)
    if auc_a is None:
        return {"auc_a": None, "auc_b": None, "diff": None, "ci": (None, None)}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        yy = y[idx]
        if 0 < yy.sum() < len(yy):
            diffs.append(roc_auc_score(yy, b[idx]) - roc_auc_score(yy, a[idx]))
    lo, hi = (np.percentile(diffs, [2.5, 97.5]) if diffs else (None, None))
    return {"auc_a": auc_a, "auc_b": auc_b, "diff": auc_b - auc_a,
            "ci": (float(lo) if lo is not None else None, float(hi) if hi is not None else None),
            "p_b_better": float(np.mean(np.asarray(diffs) > 0)) if diffs else None}
