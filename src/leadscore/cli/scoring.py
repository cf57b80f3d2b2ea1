"""validate, ingest, score, explain, export: thin commands over leadscore.model/engine/store."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from leadscore.cli.context import console, err_console, pass_ctx
from leadscore.cli.timeopt import AS_OF
from leadscore.engine import explain_lead, save_scores, score_leads
from leadscore.engine.explain import UnknownLead
from leadscore.engine.export import write_sheet
from leadscore.engine.models_registry import resolve_model, save_model
from leadscore.model import ModelError, load_model

TIER_STYLE = {"hot": "bold red", "warm": "yellow", "cold": "cyan"}
MODEL_OPT = click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
                         help="Model file (default: the store's active model, else models/default.yaml).")


def _model(ctx, path, store_optional: bool = False):
    """``store_optional`` (scoring an event log): the store's active model only when the store exists;
    a log is scored without creating one."""
    try:
        if store_optional and not path and "://" not in ctx.db and not Path(ctx.db).exists():
            return resolve_model(None, None)
        return resolve_model(ctx.store(), path)
    except ModelError as exc:
        err_console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        sys.exit(2)


@click.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
def validate(model_file):
    """Check a model file; print every error with file, line and field."""
    try:
        model = load_model(model_file)
    except ModelError as exc:
        for issue in exc.issues:
            err_console.print(str(issue), highlight=False, markup=False)
        err_console.print(f"{len(exc.issues)} error(s)", style="red")
        sys.exit(1)
    console.print(f"{model_file}: ok — model {model.model_version}, {len(model.rules)} rules in "
                  f"{len(model.groups)} groups", highlight=False)


def _parse_map(text: str) -> dict[str, str]:
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise click.BadParameter(f"expected key=Column pairs separated by commas, got {part!r}", param_hint="--map")
        key, col = part.split("=", 1)
        mapping[key.strip()] = col.strip()
    return mapping


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--skip-invalid", is_flag=True, help="Store the valid lines; write the rejects with their reasons to a file.")
@click.option("--rejects", type=click.Path(dir_okay=False), help="Where rejects go (default FILE.rejects.jsonl).")
@click.option("--map", "mapping", default="", help="CSV: trait=Column pairs, e.g. email=Email,title='Job Title'.")
@click.option("--id-column", help="CSV: the column holding the lead id.")
@click.option("--all-columns", is_flag=True, help="CSV: import every unmapped column as a trait too.")
@click.option("--missing", multiple=True, help="CSV: a placeholder value to treat as empty (repeatable).")
@click.option("--exclude", multiple=True, help="CSV with --all-columns: a column not to import (repeatable), e.g. the outcome.")
@pass_ctx
def ingest(ctx, file, skip_invalid, rejects, mapping, id_column, all_columns, missing, exclude):
    """Load events (JSON Lines, .jsonl[.gz]) or leads (a CRM export .csv with --map)."""
    store = ctx.store()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    path = Path(file)
    if path.suffix.lower() == ".csv":
        from leadscore.store.csv_import import CsvImportError, import_leads_csv
        if not id_column:
            raise click.UsageError("a CSV import needs --id-column (the column holding the lead id)")
        try:
            res = import_leads_csv(store, path, _parse_map(mapping), id_column, now, all_columns=all_columns,
                                   missing=missing, exclude=exclude)
        except CsvImportError as exc:
            err_console.print(str(exc), style="red", highlight=False)
            sys.exit(1)
        console.print(f"{path.name}: {res.rows} leads imported with traits {', '.join(sorted(res.traits))}", highlight=False)
        return
    from leadscore.ingest.jsonl import EventFileError, ingest_jsonl
    size = path.stat().st_size
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(f"ingesting {path.name}", total=size)
        try:
            res = ingest_jsonl(store, path, now, skip_invalid=skip_invalid, rejects_path=rejects,
                               progress=lambda n: bar.advance(task, n))
        except EventFileError as exc:
            bar.stop()
            err_console.print(str(exc), highlight=False, markup=False)
            err_console.print(f"{path.name}: {len(exc.errors)} error(s); nothing was stored "
                              f"(use --skip-invalid to store the valid lines)", style="red")
            sys.exit(1)
    console.print(f"{path.name}: {res.lines} lines, {res.stored} events stored, {res.duplicates} duplicates, "
                  f"{res.rejected} rejected, {len(res.leads)} leads touched", highlight=False)


def top_reasons(row, model, n=3) -> str:
    fired = [(row[f"rule:{r.name}"], r.name) for r in model.rules if row[f"rule:{r.name}"] != 0]
    fired.sort(key=lambda x: -abs(x[0]))
    return ", ".join(f"{name} {pts:+.1f}".replace(".0", "") for pts, name in fired[:n])


def leads_table(frame, model, top: int, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, kw in (("#", {"justify": "right"}), ("lead", {}), ("score", {"justify": "right"}),
                    ("fit", {"justify": "right"}), ("engagement", {"justify": "right"}), ("tier", {}),
                    ("stage", {}), ("grade", {}), ("top reasons", {"overflow": "fold"})):
        table.add_column(col, **kw)
    for k, row in enumerate(frame.head(top).to_dict("records"), start=1):
        table.add_row(str(k), row["lead_id"], f"{row['score']:.1f}", f"{row['fit']:.1f}", f"{row['engagement']:.1f}",
                      f"[{TIER_STYLE.get(row['tier'], '')}]{row['tier']}[/]", row["stage"], row["grade"],
                      top_reasons(row, model))
    return table


@click.command()
@MODEL_OPT
@click.option("--as-of", type=AS_OF, default="now", help="Score as of this instant (default: now).")
@click.option("--top", default=20, show_default=True, help="How many leads to print.")
@click.option("--save/--no-save", default=True, show_default=True, help="Store the scores with model version and as-of.")
@click.option("--engine", type=click.Choice(["sql", "spark"]), default="sql", show_default=True,
              help="sql: the store's own database; spark: PySpark over a Parquet event log (see --events).")
@click.option("--events", "events_path", type=click.Path(),
              help="Score this Parquet event log (file or folder) instead of the store: with DuckDB "
                   "(sql, nothing is stored) or Spark.")
@click.option("--out", type=click.Path(dir_okay=False), help="With --events: write the scores to this Parquet path.")
@click.option("--memory-limit", default=None, help="With --events on sql: DuckDB's memory limit (e.g. 3GB); "
                                                   "beyond it work spills to --spill.")
@click.option("--spill", type=click.Path(file_okay=False), default=None,
              help="With --events on sql: the folder for spilled work and the staged rows.")
@click.option("--partitions", type=click.IntRange(1, 4096), default=None,
              help="With --events on sql: score the leads in this many hash partitions (default: a log "
                   "clustered by lead in lead ranges, else partitions from the log's size and the memory limit).")
@click.option("--state", "state_dir", type=click.Path(file_okay=False), default=None,
              help="With --events on sql: keep the run's state in this folder; the next run reads only the "
                   "log's new files and re-scores only the leads that changed (the first run is a full one); "
                   "the top leads shown and --out (every lead) come from the state's whole table.")
@click.option("--show-sql", is_flag=True, help="Print the compiled SQL and stop.")
@click.option("--dry-run", is_flag=True, help="Score without saving and show how many leads change tier against the last saved run.")
@pass_ctx
def score(ctx, model_path, as_of, top, save, engine, events_path, out, memory_limit, spill, partitions,
          state_dir, show_sql, dry_run):
    """Score every lead as of an instant and print the top leads with their reasons."""
    model = _model(ctx, model_path, store_optional=bool(events_path))
    if state_dir and (engine != "sql" or not events_path):
        raise click.UsageError("--state goes with --events (a Parquet event log scored with DuckDB)")
    if engine == "sql" and events_path:
        _score_log(model, events_path, as_of, top, out, memory_limit, spill, partitions, state_dir)
        return
    if engine == "spark":
        from leadscore.engine.spark import score_parquet_with_spark
        if not events_path:
            raise click.UsageError("--engine spark needs --events PATH (the Parquet event log)")
        frame = score_parquet_with_spark(model, events_path, as_of, out=out)
        console.print(leads_table(frame, model, top, f"{len(frame)} leads scored with Spark as of {as_of:%Y-%m-%d %H:%M} UTC"))
        return
    store = ctx.store()
    if show_sql:
        from leadscore.engine import compile_model
        click.echo(compile_model(model, store.dialect, as_of).sql)
        return
    with console.status(f"scoring as of {as_of.isoformat()} with {model.model_version}"):
        frame = score_leads(store, model, as_of)
    if dry_run:
        _tier_changes(store, frame)
    elif save:
        save_model(store, model, as_of)
        save_scores(store, model, as_of, frame, datetime.now(timezone.utc).replace(tzinfo=None))
    console.print(leads_table(frame, model, top, f"{len(frame)} leads scored as of {as_of:%Y-%m-%d %H:%M} UTC "
                                                 f"with model {model.model_version}"))
    counts = frame["tier"].value_counts()
    console.print("  ".join(f"[{TIER_STYLE.get(t, '')}]{t}[/]: {counts.get(t.name if hasattr(t, 'name') else t, 0)}"
                            for t in [t.name for t in model.tiers][::-1]))


def _score_log(model, events_path, as_of, top, out, memory_limit, spill, partitions, state_dir=None) -> None:
    """DuckDB over a Parquet event log, the store untouched (engine.parquet.score_parquet); with a
    state folder, incrementally from the last run's state (engine.state.score_with_state). An
    incremental run returns only the re-scored leads' rows; what it prints (the top leads) and writes
    (--out: every lead) is the state's whole table, as a full run would give them: the top leads read,
    --out written by DuckDB from the state file (StateRun.write). Without a state, --out is written by
    DuckDB from the result it holds (engine.parquet.write_scores), and only the top leads come back to
    Python."""
    from leadscore.engine.parquet import EventLogError, score_parquet, write_scores
    from leadscore.engine.state import score_with_state
    shown = None        # the top leads, when the run gives them
    try:
        with console.status(f"scoring {events_path} as of {as_of.isoformat()} with {model.model_version}"):
            if state_dir:
                run = score_with_state(model, events_path, state_dir, as_of, memory_limit=memory_limit,
                                       temp_dir=spill, partitions=partitions)
                frame, leads = None, run.leads
            elif out:
                leads, shown = score_parquet(model, events_path, as_of, memory_limit=memory_limit, temp_dir=spill,
                                             partitions=partitions, finish=write_scores(model, out, top))
            else:
                frame = score_parquet(model, events_path, as_of, memory_limit=memory_limit, temp_dir=spill,
                                      partitions=partitions)
                leads = len(frame)
    except EventLogError as exc:
        raise click.ClickException(str(exc)) from None
    if state_dir:
        files = f"{len(run.new_files)} new file(s), {run.new_rows:,} messages"
        if run.full:
            console.print(f"full run ({run.reason}): {files} read, {run.leads:,} leads scored; "
                          f"state written to {state_dir}", highlight=False)
        else:
            why = "; ".join(f"{k}: {v:,}" for k, v in sorted(run.why.items()))
            console.print(f"incremental run: {files} read, {run.rescored:,} of {run.leads:,} leads re-scored"
                          + (f" ({why})" if why else " (nothing changed)") + f"; state in {state_dir} updated",
                          highlight=False)
    if out and state_dir:
        run.write(out)                  # every lead (an incremental run: written by DuckDB from the state)
    if out:
        console.print(f"{leads} scores written to {out}", highlight=False)
    if shown is None:
        shown = frame.head(top) if frame is not None else run.top(top)
    console.print(leads_table(shown, model, top, f"{leads} leads of {events_path} scored as of "
                                                 f"{as_of:%Y-%m-%d %H:%M} UTC with model {model.model_version}"))


def _tier_changes(store, frame) -> None:
    rows = store.query("SELECT s.lead_id, s.tier FROM scores s JOIN (SELECT model_version, max(as_of) AS as_of FROM scores "
                       "WHERE model_version IN (SELECT version FROM models WHERE active) GROUP BY model_version) l "
                       "ON l.model_version = s.model_version AND l.as_of = s.as_of")
    before = dict(rows)
    if not before:
        console.print("dry run: no saved scores of the active model to compare with")
        return
    changed = {}
    for lead, tier in zip(frame["lead_id"], frame["tier"]):
        old = before.get(lead)
        if old != tier:
            changed[(old, tier)] = changed.get((old, tier), 0) + 1
    table = Table(title=f"dry run: {sum(changed.values())} of {len(frame)} leads would change tier")
    table.add_column("from")
    table.add_column("to")
    table.add_column("leads", justify="right")
    for (a, b), n in sorted(changed.items(), key=lambda kv: -kv[1]):
        table.add_row(str(a), str(b), str(n))
    console.print(table)


@click.command()
@click.argument("lead")
@MODEL_OPT
@click.option("--as-of", type=AS_OF, default="now")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def explain(ctx, lead, model_path, as_of, as_json):
    """Why a lead has its score: axes, groups, every rule with its events, and the next tier."""
    model = _model(ctx, model_path)
    try:
        out = explain_lead(ctx.store(), model, lead, as_of)
    except UnknownLead as exc:
        err_console.print(str(exc.args[0]), style="red")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    console.print(f"[bold]{lead}[/] as of {out['as_of']} — score [bold]{out['score']:g}[/] "
                  f"(fit {out['fit']:g}, engagement {out['engagement']:g}), "
                  f"[{TIER_STYLE.get(out['tier'], '')}]{out['tier']}[/], {out['stage']}, grade {out['grade']}"
                  + (" [red]DISQUALIFIED[/]" if out["disqualified"] else ""))
    groups = Table(title="groups", title_justify="left")
    groups.add_column("group")
    groups.add_column("axis")
    groups.add_column("points", justify="right")
    for g, pts in out["groups"].items():
        if pts:
            groups.add_row(g, model.groups[g].axis, f"{pts:g}")
    console.print(groups)
    rules = Table(title="rules that fired", title_justify="left")
    for c in ("rule", "group", "points", "hits", "events"):
        rules.add_column(c, overflow="fold")
    for r in out["rules"]:
        evs = ", ".join(f"{o['message_id']}@{(o['ts'] or '')[:16]} {o['points']:+g}" for o in r["occurrences"][:6] if o["message_id"])
        if "traits" in r:
            evs = ", ".join(f"{k} = {v!r}" for k, v in r["traits"].items() if v is not None)
        more = f" (+{len(r['occurrences']) - 6} more)" if len(r["occurrences"]) > 6 else ""
        rules.add_row(r["rule"], r["group"], f"{r['points']:+g}", str(r["hits"]), evs + more)
    console.print(rules)
    nxt = out["next_tier"]
    if nxt:
        ideas = "; ".join(f"{s['rule']} (+{s['points']:g})" for s in nxt["suggestions"])
        console.print(f"next tier: [bold]{nxt['tier']}[/] at {nxt['at']:g}, {nxt['missing']:g} points to go. Could come from: {ideas}")
    else:
        console.print("already in the top tier")


@click.command()
@MODEL_OPT
@click.option("--as-of", type=AS_OF, default="now")
@click.option("--out", "outs", multiple=True, default=["lead-scores.csv", "lead-scores.xlsx"], show_default=True,
              help="Output file(s): .csv and/or .xlsx (repeatable).")
@pass_ctx
def export(ctx, model_path, as_of, outs):
    """Write the lead-scoring sheet: a row per lead, a column per group and rule, totals, tier, stage."""
    model = _model(ctx, model_path)
    frame = score_leads(ctx.store(), model, as_of)
    for out in outs:
        write_sheet(frame, out)
        console.print(f"wrote {out} ({len(frame)} leads, {len(model.rules)} rules)")


commands = [validate, ingest, score, explain, export]
