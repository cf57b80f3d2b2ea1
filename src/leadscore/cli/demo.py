"""`leadscore demo`: a realistic, seeded B2B lead population to try leadscore on."""
from __future__ import annotations

import time
from datetime import datetime

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from leadscore.cli.context import CliContext, console, pass_ctx
from leadscore.cli.timeopt import AS_OF
from leadscore.demo import FORMATS, MAX_LEADS, DemoConfig, load_population, write_population


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("leads · {task.fields[events]:,} events"), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def _options(f):
    f = click.option("--end", type=AS_OF, default="2026-11-01T00:00:00Z", show_default=True,
                     help="The instant the population's year ends (ISO 8601, UTC). The wall clock is never used.")(f)
    f = click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True,
                     help="The same seed gives byte-identical output.")(f)
    f = click.option("--leads", type=click.IntRange(1, MAX_LEADS), default=2000, show_default=True,
                     help="How many leads (1 to 10,000,000).")(f)
    return f


@click.group("demo")
def demo() -> None:
    """A realistic, seeded demo population (personas, accounts, a year of events, hidden intent)."""


@demo.command("generate")
@_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Directory for events.jsonl[.gz], events.parquet or events-typed.parquet, truth.csv and videos.yaml.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl / jsonl.gz: Segment messages; parquet: the event log's columns plus lead_id, properties "
                   "and context as JSON text; parquet-typed: the same log with properties and context as STRUCT "
                   "columns (one field per key, as warehouse exports keep them).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes drawing chunks in parallel (the output is the same).")
def generate(leads: int, seed: int, end: datetime, out_dir: str, fmt: str, workers: int) -> None:
    """Write the population as files: events, the hidden truth (intent, conversion) and the video catalog."""
    config = DemoConfig(leads=leads, seed=seed, end=end)
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("generating", total=leads, events=0)
        written = write_population(config, out_dir, fmt, workers=workers,
                                   progress=lambda done, events: bar.update(task, completed=done, events=events))
    took = time.perf_counter() - started
    console.print(f"{written.leads:,} leads, {written.events:,} events in {took:.1f} s "
                  f"({written.events / max(took, 1e-9):,.0f} events/s)")
    for path in written.files:
        console.print(f"  {path}")


@demo.command("load")
@_options
@click.option("--batch-leads", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="Leads per ingest transaction.")
@pass_ctx
def load(ctx: CliContext, leads: int, seed: int, end: datetime, batch_leads: int) -> None:
    """Generate the population straight into the store given by --db."""
    config = DemoConfig(leads=leads, seed=seed, end=end)
    store = ctx.store()
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("loading", total=leads, events=0)
        done, stored = load_population(store, config, batch_leads=batch_leads,
                                       progress=lambda n, events: bar.update(task, completed=n, events=events))
    took = time.perf_counter() - started
    console.print(f"loaded {done:,} leads, {stored:,} new events into {ctx.db} in {took:.1f} s")


commands = [demo]
