"""`leadscore demo run` (what `make demo` calls): load the demo population into the store, import its
video catalog, score everyone, print the top leads with their reasons and serve the dashboard."""
from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from leadscore.cli.context import CliContext, console, pass_ctx
from leadscore.cli.demo import demo
from leadscore.cli.scoring import leads_table
from leadscore.cli.timeopt import AS_OF


@demo.command("run")
@click.option("--leads", type=click.IntRange(1, 1_000_000), default=2000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True)
@click.option("--end", type=AS_OF, default="2026-11-01T00:00:00Z", show_default=True,
              help="The instant the demo year ends; the population is scored as of this instant.")
@click.option("--top", default=15, show_default=True)
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the dashboard afterwards.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@pass_ctx
def run(ctx: CliContext, leads: int, seed: int, end: datetime, top: int, serve: bool, host: str, port: int) -> None:
    """The whole demo: population → store → scores → top leads → dashboard."""
    from leadscore.demo import DemoConfig, load_population
    from leadscore.demo.catalog import write_catalog
    from leadscore.engine import refresh_scores
    from leadscore.engine.models_registry import resolve_model, save_model
    from leadscore.video.catalog import import_catalog, load_catalog

    store = ctx.store()
    have = store.query("SELECT count(*) FROM population")[0][0]
    if have >= leads:
        console.print(f"{ctx.db} already holds {have:,} leads: scoring them")
    else:
        started = time.perf_counter()
        with console.status(f"loading {leads:,} demo leads into {ctx.db}"):
            done, stored = load_population(store, DemoConfig(leads=leads, seed=seed, end=end))
        console.print(f"loaded {done:,} leads and {stored:,} events in {time.perf_counter() - started:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            videos = load_catalog(write_catalog(Path(tmp) / "videos.yaml"))
        import_catalog(store, videos, end)
    model = resolve_model(store, None)
    save_model(store, model, end, activate=True)
    started = time.perf_counter()
    with console.status(f"scoring as of {end:%Y-%m-%d} with {model.model_version}"):
        refresh_scores(store, model, end, cause="model", cause_ref=model.model_version)
        from leadscore.engine import score_leads
        frame = score_leads(store, model, end)
    console.print(leads_table(frame, model, top, f"top {top} of {len(frame):,} leads as of {end:%Y-%m-%d} "
                                                 f"(scored in {time.perf_counter() - started:.1f} s)"))
    counts = frame["tier"].value_counts().to_dict()
    console.print("tiers: " + ", ".join(f"{t.name} {counts.get(t.name, 0):,}" for t in reversed(model.tiers)) +
                  " · stages: " + ", ".join(f"{k} {v:,}" for k, v in frame["stage"].value_counts().items()))
    console.print(f"explain one: [bold].venv/bin/leadscore --db {ctx.db} explain {frame.iloc[0]['lead_id']} "
                  f"--as-of {end:%Y-%m-%d}[/bold]")
    if serve:
        ctx_obj = click.get_current_context()
        from leadscore.cli.serve import serve as serve_cmd
        ctx_obj.invoke(serve_cmd, db=None, host=host, port=port, demo=True, ingest_only=False, log_level="warning")


commands: list = []
