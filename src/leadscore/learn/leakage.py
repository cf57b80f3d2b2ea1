"""Leakage screen: columns that describe the outcome rather than predict it, flagged before training.

Four checks, each a reason a person can verify:
- **name**: the column is named like something sales fills in after contact (status, tags, quality,
  score, index, rating, owner, reason, won/lost…); engine columns (score, rule:, group:) are exempt;
- **alone**: the column on its own orders converters almost perfectly (out-of-fold AUC ≥ ``max_auc``);
- **filled for one class**: whether the column is filled differs by ≥ ``fill_gap`` between converters
  and the rest (a field sales completes for the leads they worked);
- **identifier**: a text or integer column unique to (almost) every lead (ids, emails, running numbers).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from leadscore.learn.features import ENGINE_COLUMNS, ENGINE_PREFIXES

SALES_NAMES = re.compile(
    r"(^|[^a-z])(status|stage|tags?|quality|score|index|rating|grade|rank|owner|assigned|disposition|reason|"
    r"outcome|result|won|lost|closed|converted|conversion|deal|opportunity|sql|qualified)([^a-z]|$)", re.I)


@dataclass
class LeakFlag:
    column: str
    reason: str          # name | alone | filled_for_one_class | identifier
    detail: str
    auc: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _engine_column(name: str) -> bool:
    return name in ENGINE_COLUMNS or name.startswith(ENGINE_PREFIXES)


def _bare(name: str) -> str:
    return name.split(":", 1)[1] if name.startswith("trait:") else name


def single_column_auc(x: pd.Series, y: np.ndarray, folds: int = 5, seed: int = 0) -> float | None:
    """Out-of-fold AUC of one column by itself: each value (numbers in up to 20 quantile bins, missing as
    its own value) is replaced by the conversion rate of that value in the other folds. Cheap and
    model-free, and it sees non-monotone effects a raw-value AUC would miss."""
    y = np.asarray(y, dtype=int)
    if not 0 < y.sum() < len(y):
        return None
    if pd.api.types.is_numeric_dtype(x):
        v = pd.to_numeric(x, errors="coerce")
        if v.nunique() > 20:
            v = pd.qcut(v, 20, duplicates="drop").astype(str)
        keys = v.astype(str).where(v.notna(), "(missing)")
    else:
        keys = x.astype("object").where(x.notna(), "(missing)").astype(str)
    keys = keys.to_numpy()
    prior = y.mean()
    oof = np.empty(len(y), dtype=float)
    n_splits = min(folds, int(min(y.sum(), len(y) - y.sum())))
    if n_splits < 2:
        return None
    for train, test in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(keys, y):
        stats = pd.DataFrame({"k": keys[train], "y": y[train]}).groupby("k")["y"].agg(["sum", "count"])
        rate = (stats["sum"] + prior * 5) / (stats["count"] + 5)   # shrunk toward the base rate
        oof[test] = pd.Series(keys[test]).map(rate).fillna(prior).to_numpy()
    return float(roc_auc_score(y, oof))


def _is_identifier(x: pd.Series) -> bool:
    v = x.dropna()
    if len(v) < 50 or v.nunique() < 0.95 * len(x):
        return False
    if pd.api.types.is_numeric_dtype(v):
        return bool(np.all(np.mod(v.astype(float), 1) == 0))
    return True


def screen(frame: pd.DataFrame, y, columns: list[str], max_auc: float = 0.9, fill_gap: float = 0.5) -> tuple[list[LeakFlag], dict[str, float]]:
    """Flags (one per column at most, the strongest reason) and every column's single-column AUC."""
    y = np.asarray(y, dtype=int)
    flags: list[LeakFlag] = []
    aucs: dict[str, float] = {}
    pos = y == 1
    for c in columns:
        x = frame[c]
        auc = single_column_auc(x, y)
        if auc is not None:
            aucs[c] = auc
        if _is_identifier(x):
            flags.append(LeakFlag(c, "identifier", f"unique for {x.nunique()} of {len(x)} leads: an id, not a feature", auc))
        elif auc is not None and auc >= max_auc:
            flags.append(LeakFlag(c, "alone", f"on its own reaches AUC {auc:.3f} (≥ {max_auc}): it almost is the outcome", auc))
        elif not _engine_column(c) and SALES_NAMES.search(_bare(c).replace("_", " ")):
            m = SALES_NAMES.search(_bare(c).replace("_", " "))
            flags.append(LeakFlag(c, "name", f"named like a field sales fills in after contact ('{m.group(2)}')", auc))
        else:
            filled = x.notna().to_numpy()
            if pos.any() and (~pos).any():
                gap = filled[pos].mean() - filled[~pos].mean()
                if abs(gap) >= fill_gap:
                    flags.append(LeakFlag(c, "filled_for_one_class",
                                          f"filled for {filled[pos].mean():.0%} of converters but {filled[~pos].mean():.0%} of the rest", auc))
    return flags, aucs
