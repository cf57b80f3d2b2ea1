"""Self-contained HTML and JSON reports for evaluate, calibrate and train (plots inline as SVG)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from leadscore.learn import plots

_env = Environment(loader=PackageLoader("leadscore.learn", "templates"), autoescape=select_autoescape(["html"]))


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.{digits}f} %"


def num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def ci(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None else f"{lo * 100:.1f}–{hi * 100:.1f} %"


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    table: Table | None = None
    svg: str = ""
    kpis: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str = ""
    notes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def html(self) -> str:
        return _env.get_template("report.html").render(title=self.title, subtitle=self.subtitle,
                                                       notes=self.notes, sections=self.sections)


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _thin(values: list, keep: int = 400) -> list:
    if len(values) <= keep:
        return values
    idx = np.linspace(0, len(values) - 1, keep).round().astype(int)
    return [values[i] for i in idx]


def to_json(data: dict) -> str:
    """JSON text; ROC/PR curves are thinned to at most 400 points each to keep files small."""
    def walk(o):
        if isinstance(o, dict):
            return {k: (({ck: _thin(cv) for ck, cv in v.items()} if k == "curves" and isinstance(v, dict) else walk(v)))
                    for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        if isinstance(o, float) and math.isnan(o):
            return None
        return o
    return json.dumps(walk(data), default=_jsonable, indent=2)


def write(report: Report, data: dict, html_path: str | Path | None, json_path: str | Path | None) -> None:
    if html_path:
        Path(html_path).write_text(report.html(), encoding="utf-8")
    if json_path:
        Path(json_path).write_text(to_json(data), encoding="utf-8")


def _rate_table(rows: list[dict], first: str, extra: list[tuple[str, str]] = ()) -> Table:
    header = [first, "leads", "converted", "rate", "95 % CI", "lift"] + [h for h, _ in extra]
    body = []
    for r in rows:
        line = [r["group"], r["leads"], r["converted"], pct(r["rate"]), ci(r["ci_low"], r["ci_high"]),
                num(r["lift"], 2)]
        for _, key in extra:
            v = r.get(key)
            line.append(pct(v) if key == "captured" else (num(v, 1) if isinstance(v, float) else v))
        body.append(line)
    return Table(header, body)


def _threshold_line(t: dict, what: str) -> str:
    if t.get("threshold") is None:
        return f"{what}: no conversions to capture."
    return (f"{what}: score ≥ {t['threshold']:g} sends {t['leads']} leads ({pct(t['leads_share'])} of all) and "
            f"captures {pct(t['captured'])} of conversions; they convert at {pct(t['rate'])}"
            + (f" against {pct(t['rate_below'])} below it." if t.get("rate_below") is not None else "."))


def evaluation_report(ev: dict) -> Report:
    """The backtest report from ``Evaluation.to_dict()``."""
    models = ev["models"]
    rep = Report(f"Backtest: {', '.join(m['name'] for m in models)}",
                 f"Scores as of {ev['as_of']}; outcome '{ev['outcome']}' decided after it.", list(ev.get("notes", [])))
    first = models[0]
    rep.sections.append(Section("Summary", kpis=[("leads", str(first["leads"])), ("converted", str(first["converted"])),
                                                 ("base rate", pct(first["base_rate"]))]
                                + [(f"ROC AUC {m['name']}", num(m["roc_auc"])) for m in models]
                                + [(f"PR AUC {m['name']}", num(m["pr_auc"])) for m in models],
                                text=["ROC AUC is the chance a converter outscores a non-converter (0.5 = random); "
                                      "PR AUC (average precision) compares with the base rate."]))
    if ev.get("comparison"):
        c = ev["comparison"]
        lo, hi = c["ci"]
        verdict = ("the challenger orders leads better" if lo is not None and lo > 0 else
                   "the champion orders leads better" if hi is not None and hi < 0 else
                   "the difference is within noise")
        rep.sections.append(Section("Champion vs challenger", text=[
            f"ROC AUC {num(c['auc_a'])} (champion) vs {num(c['auc_b'])} (challenger): difference "
            f"{num(c['diff'])}, paired bootstrap 95 % interval {num(lo)} to {num(hi)}; {verdict}.",
            _threshold_line(c["mql_a"], "Champion MQL threshold"),
            _threshold_line(c["mql_b"], "Challenger MQL threshold")]))
    if any(m.get("curves") for m in models):
        rep.sections.append(Section("ROC and precision–recall", svg=plots.roc_pr(models)))
        rep.sections.append(Section("Lift by decile", svg=plots.lift(models),
                                    table=_rate_table(first["deciles"], "decile", [("score from", "score_min"),
                                                                                  ("to", "score_max"),
                                                                                  ("conversions captured", "captured")])))
    for m in models:
        prefix = f"{m['name']}: " if len(models) > 1 else ""
        rep.sections.append(Section(f"{prefix}Thresholds", text=[
            _threshold_line(m["mql_threshold"], f"Recommended MQL threshold (capture {pct(m['mql_threshold']['share'], 0)})"),
            _threshold_line(m["tier_thresholds"]["hot"], f"Hot tier (capture {pct(m['tier_thresholds']['hot']['share'], 0)})"),
            _threshold_line(m["tier_thresholds"]["warm"], f"Warm tier and above (capture {pct(m['tier_thresholds']['warm']['share'], 0)})"),
        ]))
        if m.get("bands"):
            rep.sections.append(Section(f"{prefix}Conversion by score band", svg=plots.bands(m),
                                        table=_rate_table(m["bands"], "score band")))
        if m.get("by_tier"):
            rep.sections.append(Section(f"{prefix}Conversion by tier", table=_rate_table(m["by_tier"], "tier")))
        if m.get("by_stage"):
            rep.sections.append(Section(f"{prefix}Conversion by stage", table=_rate_table(m["by_stage"], "stage")))
        if "mql_by_engagement" in m:
            rep.sections.append(Section(f"{prefix}MQL → outcome by engagement level",
                                        text=["Leads at MQL or beyond, by quartile of their engagement score."
                                              if m["mql_by_engagement"] else "No lead was an MQL at the cut-off."],
                                        table=_rate_table(m["mql_by_engagement"], "engagement") if m["mql_by_engagement"] else None))
        if m.get("rules"):
            pdo = m.get("points_per_doubling")
            rows = []
            for r in sorted(m["rules"], key=lambda r: (r["suggestion"] == "keep", -(r["lift"] or 0))):
                rows.append([r["rule"], r["group"] or "", num(r["points"], 0) if r["points"] is not None else "",
                             r["fired"], pct(r["fired_rate"]), ci(*r["fired_ci"]), pct(r["not_fired_rate"]),
                             num(r["lift"], 2), num(r["odds_ratio"], 2), num(r["implied_points"], 0),
                             {"cls": f"s-{r['suggestion']}", "text": r["suggestion"]}, r["why"]])
            rep.sections.append(Section(
                f"{prefix}Rules: lift and suggested points",
                text=[f"On this model's scale about {num(pdo, 1)} points double the odds of converting."
                      if pdo else "The score does not rise with conversion, so points cannot be put on its scale."],
                svg=plots.rules(m),
                table=Table(["rule", "group", "points", "fired", "rate fired", "95 % CI", "rate not fired", "lift",
                             "odds ratio", "implied points", "suggestion", "why"], rows)))
    return rep


def calibration_report(cal: dict, model_name: str) -> Report:
    """The `calibrate` report from ``Calibration.to_dict()``."""
    rep = Report(f"Calibrated points: {model_name}",
                 f"{cal['pdo']:g} points double the odds; {cal['split']}.", list(cal.get("notes", [])))
    rep.sections.append(Section("Held-out ROC AUC", kpis=[
        ("current points", num(cal["auc_original"])), ("calibrated points", num(cal["auc_calibrated"])),
        ("calibrated, re-scored by the engine", num(cal["auc_calibrated_engine"]))],
        text=[f"Fitted on {cal['train_leads']} leads, compared on {cal['test_leads']} held out."]))
    rows = [[r["rule"], num(r["old_points"], 0), r["new_points"], num(r["weight"], 3), r["fired"]]
            for r in sorted(cal["rules"], key=lambda r: -abs(r["new_points"]))]
    rep.sections.append(Section("Points per rule", table=Table(["rule", "current", "calibrated", "log-odds", "fired (training)"], rows),
                                svg=plots.importance([(r[0], float(r[2])) for r in rows], "calibrated points")))
    if cal.get("tiers"):
        rep.sections.append(Section("Tier thresholds", text=[f"{k}: score ≥ {v:g}" for k, v in cal["tiers"].items() if v is not None]))
    return rep


def training_report(res: dict) -> Report:
    """The `train` report from ``TrainResult.to_dict()``."""
    meta = res.get("metadata") or {}
    rep = Report(f"Predictive model: {meta.get('version', res['chosen'])}", f"Cross-validation: {res['split']}.",
                 list(res.get("warnings", [])))
    rows = [[k + (" (chosen)" if k == res["chosen"] else ""), num(v["mean"], 4), num(v["std"], 4),
             ", ".join(f"{x:.3f}" for x in v["folds"])] for k, v in res["cv"].items()]
    rep.sections.append(Section("Cross-validated ROC AUC", table=Table(["candidate", "mean", "std", "folds"], rows)))
    if res["leakage"]:
        rep.sections.append(Section("Leakage candidates", text=["Excluded from training unless --keep-leaky."],
                                    table=Table(["column", "check", "why", "AUC alone"],
                                                [[f["column"], f["reason"], f["detail"], num(f["auc"])] for f in res["leakage"]])))
    single = sorted(res["single_column_auc"].items(), key=lambda kv: -kv[1])[:30]
    rep.sections.append(Section("Each column alone (out-of-fold AUC)",
                                svg=plots.importance([(k, v) for k, v in single], "single-column AUC")))
    rep.sections.append(Section("Features used", text=[", ".join(res["features"])]))
    return rep
