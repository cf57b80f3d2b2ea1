"""evaluate, calibrate, train, predict and `outcomes import`: thin commands over leadscore.learn."""
from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table

from leadscore.cli.context import console, err_console, pass_ctx
from leadscore.cli.scoring import _model, _parse_map
from leadscore.cli.timeopt import AS_OF

AS_OF_OPT = click.option("--as-of", type=AS_OF, default="now",
                         help="Cut-off: scores and features as of this instant; only outcomes decided after it count (default: now).")
OUTCOME_OPT = click.option("--outcome", default="converted", show_default=True,
                           help="Which outcome is the label (converted, won, sql, …).")


def _fail(exc: Exception, code: int = 1):
    err_console.print(str(exc), style="red", highlight=False, markup=False)
    sys.exit(code)


def _write(report, data: dict, html: str | None, json_path: str | None) -> None:
    from leadscore.learn.report import write
    write(report, data, html, json_path)
    for p in (html, json_path):
        if p:
            console.print(f"wrote {p}", highlight=False)


@click.group()
def outcomes():
    """Conversion outcomes (labels) for learning."""


@outcomes.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--map", "mapping", multiple=True, required=True,
              help="lead_id=Column, outcome=Column, optionally date=Column (repeatable or comma-separated).")
@OUTCOME_OPT
@click.option("--source", help="Name of this import (default csv:FILENAME); re-importing a source replaces it.")
@click.option("--missing", multiple=True, help="A placeholder value to treat as empty (repeatable), e.g. Select.")
@click.option("--encoding", default="utf-8-sig", show_default=True)
@click.option("--delimiter", default=",", show_default=True)
@pass_ctx
def outcomes_import(ctx, file, mapping, outcome, source, missing, encoding, delimiter):
    """Import outcomes from a CSV: yes/no values (1/0, yes/no, true/false, won/lost), optional dates."""
    from leadscore.store.csv_import import CsvImportError, import_outcomes_csv
    parsed: dict[str, str] = {}
    for m in mapping:
        parsed.update(_parse_map(m))
    try:
        res = import_outcomes_csv(ctx.store(), file, parsed, outcome=outcome, source=source, missing=missing,
                                  delimiter=delimiter, encoding=encoding)
    except CsvImportError as exc:
        _fail(exc)
    console.print(f"{Path(file).name}: {res.rows} '{res.outcome}' outcomes stored from {res.source} "
                  f"({res.positives} yes, {res.negatives} no, {res.unlabelled} rows without an outcome skipped)",
                  highlight=False)


@click.command()
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="The champion model (default: the active one).")
@click.option("--challenger", "challenger_path", type=click.Path(exists=True, dir_okay=False),
              help="A second model file to compare on the same leads.")
@AS_OF_OPT
@OUTCOME_OPT
@click.option("--capture", default=0.8, show_default=True, help="Share of conversions the recommended MQL threshold must capture.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default="evaluation.html", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
@pass_ctx
def evaluate(ctx, model_path, challenger_path, as_of, outcome, capture, html_path, json_path):
    """Backtest a points model against outcomes: AUCs, lift, rule lift, thresholds (HTML + JSON)."""
    from leadscore.learn.evaluate import evaluate as run
    from leadscore.learn.report import evaluation_report
    models = [_model(ctx, model_path)] + ([_model(ctx, challenger_path)] if challenger_path else [])
    try:
        ev = run(ctx.store(), models, as_of, outcome, capture=capture)
    except ValueError as exc:
        _fail(exc)
    data = ev.to_dict()
    table = Table(title=f"Backtest as of {as_of:%Y-%m-%d %H:%M}, outcome '{outcome}'", title_justify="left")
    for col in ("model", "leads", "converted", "ROC AUC", "PR AUC", f"MQL threshold ({capture:.0%})", "leads sent"):
        table.add_column(col)
    for m in data["models"]:
        t = m["mql_threshold"]
        table.add_row(m["name"], str(m["leads"]), str(m["converted"]), f"{m['roc_auc'] or 0:.3f}",
                      f"{m['pr_auc'] or 0:.3f}", f"{t.get('threshold')}", f"{t.get('leads')}")
    console.print(table)
    if data["comparison"]:
        c = data["comparison"]
        console.print(f"challenger − champion AUC: {c['diff']:+.3f} (95 % CI {c['ci'][0]:+.3f} to {c['ci'][1]:+.3f})",
                      highlight=False)
    for note in data["notes"]:
        console.print(f"note: {note}", style="yellow", highlight=False)
    _write(evaluation_report(data), data, html_path, json_path)


@click.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The model file whose points to learn.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="Where to write the new model file.")
@AS_OF_OPT
@OUTCOME_OPT
@click.option("--pdo", default=20.0, show_default=True, help="Points that double the odds of converting.")
@click.option("--test-size", default=0.3, show_default=True, help="Share of leads held out to compare AUCs.")
@click.option("--keep-tiers", is_flag=True, help="Leave tier mins as they are (default: set warm/hot from the data).")
@click.option("--split", type=click.Choice(["auto", "time", "random"]), default="auto", show_default=True,
              help="Holdout: time-ordered by lead creation when dates vary (auto), or forced.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write an HTML report.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
@pass_ctx
def calibrate(ctx, model_path, out_path, as_of, outcome, pdo, test_size, keep_tiers, split, html_path, json_path):
    """Learn integer points from outcomes (scorecard scaling) and write a new model file."""
    from leadscore.learn.calibrate import calibrate as run
    from leadscore.model import ModelError, load_model
    try:
        model = load_model(model_path)
    except ModelError as exc:
        _fail(exc, 2)
    try:
        cal = run(ctx.store(), model, Path(model_path).read_text(), as_of, outcome, pdo=pdo, test_size=test_size,
                  set_tiers=not keep_tiers, split=split)
    except ValueError as exc:
        _fail(exc)
    Path(out_path).write_text(cal.new_text)
    table = Table(title=f"Calibrated points ({pdo:g} points double the odds)", title_justify="left")
    for col in ("rule", "old points", "new points", "log-odds", "fired (train)"):
        table.add_column(col, justify="right" if col != "rule" else "left")
    for w in cal.weights:
        table.add_row(w.rule, f"{w.old_points:g}", str(w.new_points), f"{w.weight:+.3f}", str(w.fired))
    console.print(table)
    console.print(f"held-out AUC ({cal.split}): original {cal.auc_original:.3f}, calibrated {cal.auc_calibrated:.3f}"
                  f" (re-scored by the engine: {cal.auc_calibrated_engine:.3f})", highlight=False)
    for note in cal.notes:
        console.print(f"note: {note}", style="yellow", highlight=False)
    console.print(f"wrote {out_path}: diff it against {model_path}, then activate it", highlight=False)
    from leadscore.learn.report import calibration_report
    _write(calibration_report(cal.to_dict(), model.model_version), cal.to_dict(), html_path, json_path)


@click.command()
@click.option("--model", "model_path", type=click.Path(dir_okay=False),
              help="Points model whose rule/group scores join the features (default: the active one).")
@AS_OF_OPT
@OUTCOME_OPT
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="artifacts", show_default=True,
              help="Folder for the versioned artifact (<out>/<version>/model.joblib + metadata.json).")
@click.option("--exclude", multiple=True, help="A feature column to leave out (repeatable), e.g. trait:lead_profile.")
@click.option("--keep-leaky", is_flag=True, help="Keep the columns the leakage screen flags.")
@click.option("--min-per-class", default=50, show_default=True, help="Refuse below this many outcomes of either class.")
@click.option("--folds", default=5, show_default=True)
@click.option("--cv-only", is_flag=True, help="Only cross-validate; save nothing.")
@click.option("--predict/--no-predict", default=True, show_default=True,
              help="Write every lead's probability and reasons to the store (lead_predictions).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write an HTML report.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
@pass_ctx
def train(ctx, model_path, as_of, outcome, out_dir, exclude, keep_leaky, min_per_class, folds, cv_only, predict,
          html_path, json_path):
    """Train a predictive model of conversion (cross-validated, calibrated, leakage-screened)."""
    from leadscore.learn.features import feature_table, lead_dates
    from leadscore.learn.labels import load_labels
    from leadscore.learn.predict import write_predictions
    from leadscore.learn.train import TooFewOutcomes, TrainConfig, train as run
    store = ctx.store()
    model = _model(ctx, model_path)
    labels = load_labels(store, outcome, as_of)
    frame = feature_table(store, model, as_of, labels)
    dates = frame["lead_id"].map(lead_dates(store))
    config = TrainConfig(folds=folds, min_per_class=min_per_class, keep_leaky=keep_leaky, exclude=tuple(exclude))
    with console.status("cross-validating logistic regression and gradient boosting…"):
        try:
            res = run(frame, config, dates=dates, created_at=as_of, target=outcome, cv_only=cv_only)
        except (TooFewOutcomes, ValueError) as exc:
            _fail(exc)
    for w in res.warnings:
        console.print(f"warning: {w}", style="yellow", highlight=False)
    if res.flags:
        t = Table(title="Leakage candidates" + (" (kept)" if keep_leaky else " (excluded; --keep-leaky keeps them)"),
                  title_justify="left")
        for col in ("column", "why", "AUC alone"):
            t.add_column(col)
        for f in res.flags:
            t.add_row(f.column, f.detail, f"{f.auc:.3f}" if f.auc is not None else "–")
        console.print(t)
    t = Table(title=f"Cross-validated ROC AUC ({res.split})", title_justify="left")
    for col in ("candidate", "mean", "std"):
        t.add_column(col)
    for k, v in res.cv.items():
        t.add_row(k + (" ← chosen" if k == res.chosen else ""), f"{v['mean']:.4f}", f"{v['std']:.4f}")
    console.print(t)
    if res.model is not None:
        folder = res.model.save(out_dir)
        console.print(f"saved {folder} (version {res.model.version})", highlight=False)
        if predict:
            n = write_predictions(store, res.model, feature_table(store, model, as_of), as_of)
            console.print(f"wrote probabilities and reasons for {n} leads to lead_predictions", highlight=False)
    from leadscore.learn.report import training_report
    _write(training_report(res.to_dict()), res.to_dict(), html_path, json_path)


@click.command()
@click.option("--artifact", type=click.Path(exists=True), required=True, help="A trained model's folder.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Points model for the engine features (default: active).")
@AS_OF_OPT
@click.option("--top", default=10, show_default=True, help="How many leads to print.")
@pass_ctx
def predict(ctx, artifact, model_path, as_of, top):
    """Score every lead with a trained model; store probabilities and reasons (lead_predictions)."""
    from leadscore.learn.features import feature_table
    from leadscore.learn.predict import write_predictions
    from leadscore.learn.train import load_artifact
    store = ctx.store()
    try:
        pm = load_artifact(artifact)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
    n = write_predictions(store, pm, feature_table(store, _model(ctx, model_path), as_of), as_of)
    rows = store.query("SELECT lead_id, probability, reasons FROM lead_predictions ORDER BY probability DESC, lead_id LIMIT ?", (top,))
    t = Table(title=f"{n} leads scored by {pm.version}", title_justify="left")
    for col in ("lead", "probability", "top reasons"):
        t.add_column(col)
    for lead, p, reasons in rows:
        t.add_row(lead, f"{p:.3f}", ", ".join(f"{r['feature']}={r['value']}" for r in json.loads(reasons or "[]")))
    console.print(t)


commands = [outcomes, evaluate, calibrate, train, predict]
