"""`leadscore train`: a predictive model of conversion, as scikit-learn pipelines.

Two candidates, a regularised logistic regression (one-hot categoricals, C chosen by inner CV) and a
histogram gradient boosting model (native categorical splits), are scored by cross-validated ROC AUC
(time-ordered folds when leads have distinct dates, else shuffled stratified folds); the better one is
refit with calibrated probabilities (isotonic, or sigmoid under 1,000 leads). Class imbalance: class
weights balanced when the rarer class is under 30 %, then calibration brings probabilities back.

Guards: too few outcomes refuses (``TooFewOutcomes``) or warns; leakage candidates (see ``leakage``)
are excluded unless ``keep_leaky``.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from leadscore.learn import leakage
from leadscore.learn.features import as_model_input, feature_columns, split_types

MIN_PER_CLASS = 50
BLEND_WEIGHTS = (1.0, 2.0)
WARN_BELOW = 1000


class TooFewOutcomes(ValueError):
    """Not enough labelled leads of each class to learn from."""


@dataclass
class TrainConfig:
    folds: int = 5
    seed: int = 0
    min_per_class: int = MIN_PER_CLASS
    warn_below: int = WARN_BELOW
    keep_leaky: bool = False
    exclude: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ("logistic", "hgb", "blend")
    max_auc: float = 0.9
    threads: int = 1       # OpenMP/BLAS threads: more oversubscribes a shared 2-core machine (10× slower)


def _categorical_pipe_lr() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                     ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10))])


def make_pipeline(kind: str, numeric: list[str], categorical: list[str], balanced: bool, seed: int = 0) -> Pipeline:
    weight = "balanced" if balanced else None
    if kind == "logistic":
        pre = ColumnTransformer([
            ("num", Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                              ("scale", StandardScaler())]), numeric),
            ("cat", _categorical_pipe_lr(), categorical)], sparse_threshold=0)
        clf = LogisticRegressionCV(Cs=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0], cv=3, scoring="roc_auc", max_iter=3000,
                                   class_weight=weight)
        return Pipeline([("pre", pre), ("clf", clf)])
    if kind == "hgb":
        # Ordinal codes for categoricals (missing and unseen values become NaN, which the trees route on
        # their own); at most 250 codes per column so a column fits the 255 bins.
        pre = ColumnTransformer([
            ("num", "passthrough", numeric),
            ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                   encoded_missing_value=np.nan, max_categories=250), categorical)],
            sparse_threshold=0)
        cat_mask = [False] * len(numeric) + [True] * len(categorical)
        # Small trees and a slow learning rate with early stopping: on X Education this beat the defaults
        # (0.909 vs 0.906 CV AUC) at the same cost; see bench/RESULTS.md.
        clf = HistGradientBoostingClassifier(learning_rate=0.03, max_iter=800, max_leaf_nodes=15, min_samples_leaf=30,
                                             l2_regularization=1.0, early_stopping=True, validation_fraction=0.1,
                                             n_iter_no_change=30, categorical_features=cat_mask or None,
                                             class_weight=weight, random_state=seed)
        return Pipeline([("pre", pre), ("clf", clf)])
    if kind == "blend":
        # soft vote, weights fixed in advance (1 : 2 for the trees), not tuned on the folds
        return VotingClassifier([("logistic", make_pipeline("logistic", numeric, categorical, balanced, seed)),
                                 ("hgb", make_pipeline("hgb", numeric, categorical, balanced, seed))],
                                voting="soft", weights=list(BLEND_WEIGHTS))
    raise ValueError(f"unknown candidate {kind!r}: use logistic, hgb or blend")


def splits(y: np.ndarray, dates: pd.Series | None, folds: int, seed: int) -> tuple[list, str]:
    """Time-ordered folds (train on the earlier leads, test on the next) when dates vary, else stratified."""
    if dates is not None and dates.notna().all() and dates.nunique() >= max(folds + 1, len(dates) // 20):
        order = np.argsort(dates.to_numpy(), kind="stable")
        out = []
        for tr, te in TimeSeriesSplit(n_splits=folds).split(order):
            tr_idx, te_idx = order[tr], order[te]
            if 0 < y[te_idx].sum() < len(te_idx) and 0 < y[tr_idx].sum() < len(tr_idx):
                out.append((tr_idx, te_idx))
        if len(out) >= 2:
            return out, f"time-ordered ({len(out)} folds, each tested on later leads than it trained on)"
    return (list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)),
            f"stratified {folds}-fold (shuffled, random_state {seed})")


def cross_validate(pipe: Pipeline, X: pd.DataFrame, y: np.ndarray, folds: list) -> tuple[list[float], np.ndarray]:
    """Per-fold AUCs and the out-of-fold probabilities (NaN for rows no fold tested)."""
    scores, oof = [], np.full(len(y), np.nan)
    for tr, te in folds:
        model = clone(pipe).fit(X.iloc[tr], y[tr])
        oof[te] = model.predict_proba(X.iloc[te])[:, 1]
        scores.append(float(roc_auc_score(y[te], oof[te])))
    return scores, oof


@dataclass
class PredictiveModel:
    """A trained model: calibrated probabilities plus an uncalibrated twin used for per-lead reasons."""
    calibrated: Any
    explainer: Any
    numeric: list[str]
    categorical: list[str]
    reference: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.metadata["version"]

    def _input(self, frame: pd.DataFrame) -> pd.DataFrame:
        return as_model_input(frame, self.numeric, self.categorical)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.calibrated.predict_proba(self._input(frame))[:, 1]

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per lead and feature: how much the feature's value moves the log-odds against a typical lead's
        value (median / most common). Computed by occlusion (re-predicting with one column set to its
        reference) because scikit-learn has no per-row attributions for boosted trees and the shap
        package would pull in numba; it works the same for every candidate. The occluded copies are
        predicted in large batches: one call per batch, not one per column."""
        X = self._input(frame).reset_index(drop=True)
        cols = self.numeric + self.categorical
        base = _logit(self.explainer.predict_proba(X)[:, 1])
        out = np.empty((len(X), len(cols)))
        per_batch = max(1, 250_000 // max(len(X), 1))
        for start in range(0, len(cols), per_batch):
            part = cols[start:start + per_batch]
            copies = []
            for c in part:
                Xc = X.copy()
                Xc[c] = float(self.reference.get(c)) if c in self.numeric else self.reference.get(c)
                copies.append(Xc)
            p = self.explainer.predict_proba(pd.concat(copies, ignore_index=True))[:, 1]
            out[:, start:start + len(part)] = base[:, None] - _logit(p).reshape(len(part), len(X)).T
        return pd.DataFrame(out, columns=cols, index=frame.index)

    def reasons(self, frame: pd.DataFrame, top: int = 3) -> list[list[dict]]:
        """The ``top`` features pushing each lead's probability up (value and log-odds contribution)."""
        contrib = self.contributions(frame)
        values = self._input(frame)[list(contrib.columns)].to_numpy(dtype=object)
        C = contrib.to_numpy()
        order = np.argsort(-C, axis=1)[:, :top]
        names = list(contrib.columns)
        return [[{"feature": names[j], "value": _plain(values[i, j]), "log_odds": round(float(C[i, j]), 4)}
                 for j in order[i] if C[i, j] > 1e-9] for i in range(len(C))]

    def save(self, directory: str | Path) -> Path:
        """``<directory>/<version>/model.joblib`` + ``metadata.json``; returns that folder."""
        folder = Path(directory) / self.version
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, folder / "model.joblib")
        (folder / "metadata.json").write_text(json.dumps(self.metadata, indent=2, default=str))
        return folder


def load_artifact(path: str | Path) -> PredictiveModel:
    """A saved model from its folder (or its model.joblib). Only load artifacts you trust (pickle)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.joblib"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained model here (run leadscore train --out …)")
    model = joblib.load(path)
    if not isinstance(model, PredictiveModel):
        raise ValueError(f"{path} is not a leadscore predictive model")
    return model


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


@dataclass
class TrainResult:
    model: PredictiveModel | None
    cv: dict[str, dict]                   # candidate → {mean, std, folds}
    chosen: str | None
    flags: list[leakage.LeakFlag]
    excluded: list[str]
    single_auc: dict[str, float]
    warnings: list[str]
    split: str
    features: list[str]

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "cv": self.cv, "split": self.split, "features": self.features,
                "excluded": self.excluded, "leakage": [f.to_dict() for f in self.flags],
                "single_column_auc": self.single_auc, "warnings": self.warnings,
                "metadata": self.model.metadata if self.model else None}


def check_outcomes(y: np.ndarray, config: TrainConfig) -> list[str]:
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if min(pos, neg) < config.min_per_class:
        raise TooFewOutcomes(
            f"only {pos} converted and {neg} not converted leads have outcomes; training needs at least "
            f"{config.min_per_class} of each (predictive scoring wants thousands of records). Import more "
            f"outcomes, or keep to the points model and `leadscore evaluate` it.")
    if len(y) < config.warn_below:
        return [f"{len(y)} labelled leads is little for predictive scoring (the playbooks ask for thousands): "
                f"treat the model as a rough guide and compare it with the points model before using it"]
    return []


def train(frame: pd.DataFrame, config: TrainConfig | None = None, dates: pd.Series | None = None,
          created_at: datetime | None = None, target: str = "converted", cv_only: bool = False) -> TrainResult:
    """Screen, cross-validate the candidates, and fit the chosen one (calibrated) on all rows.

    ``frame``: lead_id, label and feature columns (``features.feature_table``). ``created_at`` stamps
    the artifact (time is an input: pass the as-of instant)."""
    config = config or TrainConfig()
    frame = frame.reset_index(drop=True)
    y = frame["label"].to_numpy(dtype=int)
    notes = check_outcomes(y, config)
    unknown = [c for c in config.exclude if c not in frame.columns]
    if unknown:
        raise ValueError(f"--exclude names columns the features do not have: {unknown}; "
                         f"features are: {feature_columns(frame)}")
    columns = [c for c in feature_columns(frame) if c not in config.exclude and frame[c].notna().any()
               and frame[c].nunique(dropna=False) > 1]
    flags, single = leakage.screen(frame, y, columns, max_auc=config.max_auc)
    excluded = list(config.exclude)
    if flags and not config.keep_leaky:
        excluded += [f.column for f in flags]
    elif flags:
        notes.append(f"keeping {len(flags)} leakage candidates as asked (--keep-leaky): "
                     + ", ".join(f.column for f in flags))
    used = [c for c in columns if c not in excluded]
    if not used:
        raise ValueError("no feature columns left after exclusions; nothing to train on")
    numeric, categorical = split_types(frame, used)
    X = as_model_input(frame, numeric, categorical)
    minority = min(y.mean(), 1 - y.mean())
    balanced = minority < 0.3
    folds, split_text = splits(y, dates, config.folds, config.seed)
    cv: dict[str, dict] = {}
    oofs: dict[str, np.ndarray] = {}
    with warnings.catch_warnings(), threadpool_limits(config.threads):
        warnings.simplefilter("ignore", category=UserWarning)   # unknown categories in a fold are expected
        warnings.simplefilter("ignore", category=FutureWarning)  # LogisticRegressionCV's 1.10 transition notices
        for kind in config.candidates:
            if kind == "blend" and {"logistic", "hgb"} <= set(oofs):
                # the soft vote of the two fitted candidates, from their out-of-fold probabilities
                w = np.asarray(BLEND_WEIGHTS) / sum(BLEND_WEIGHTS)
                blend = w[0] * oofs["logistic"] + w[1] * oofs["hgb"]
                scores = [float(roc_auc_score(y[te], blend[te])) for _, te in folds]
            else:
                scores, oofs[kind] = cross_validate(make_pipeline(kind, numeric, categorical, balanced, config.seed),
                                                    X, y, folds)
            cv[kind] = {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "folds": scores}
        chosen = max(cv, key=lambda k: cv[k]["mean"])
        if cv_only:
            return TrainResult(None, cv, chosen, flags, excluded, single, notes, split_text, used)
        pipe = make_pipeline(chosen, numeric, categorical, balanced, config.seed)
        method = "isotonic" if len(y) >= 1000 else "sigmoid"
        calibrated = CalibratedClassifierCV(pipe, method=method, cv=folds if "time" in split_text else config.folds)
        calibrated.fit(X, y)
        explainer = clone(pipe).fit(X, y)
    reference = {c: float(X[c].median()) if X[c].notna().any() else np.nan for c in numeric}
    reference.update({c: (X[c].mode().iloc[0] if X[c].notna().any() else None) for c in categorical})
    stamp = (created_at or datetime(1970, 1, 1)).isoformat()
    digest = hashlib.sha256(json.dumps([target, used, cv, stamp, len(y)], default=str).encode()).hexdigest()[:10]
    metadata = {
        "version": f"{target}-{chosen}-{digest}", "created_at": stamp, "target": target, "chosen": chosen,
        "calibration": method, "class_weight": "balanced" if balanced else None, "cv": cv, "split": split_text,
        "leads": int(len(y)), "converted": int(y.sum()), "numeric": numeric, "categorical": categorical,
        "excluded": excluded, "leakage": [f.to_dict() for f in flags], "warnings": notes,
        "sklearn": sklearn.__version__,
    }
    model = PredictiveModel(calibrated, explainer, numeric, categorical, reference, metadata)
    return TrainResult(model, cv, chosen, flags, excluded, single, notes, split_text, used)
