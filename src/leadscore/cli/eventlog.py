"""`leadscore log`: Parquet event logs (the input of batch and Spark scoring)."""
from __future__ import annotations

import sys

import click

from leadscore.cli.context import console, err_console


@click.group("log")
def log() -> None:
    """Parquet event logs: the input of `leadscore score --engine spark` and the batch engine."""


@log.command("typed")
@click.argument("source", type=click.Path(exists=True))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--memory-limit", default="3GB", show_default=True,
              help="DuckDB's memory limit for the conversion (it spills to --temp-dir beyond it).")
@click.option("--temp-dir", type=click.Path(file_okay=False), default=None,
              help="Where DuckDB spills (default: its own, .tmp in the working directory).")
def typed(source: str, target: str, memory_limit: str, temp_dir: str | None) -> None:
    """Convert a Parquet log whose properties/context are JSON text (SOURCE: a file or a folder) into
    TARGET, one Parquet file with them as STRUCT columns: one field per key, nested for objects, typed
    from every message (strings, integers, doubles, booleans; a key with mixed types or arrays is kept
    as its text). The engine reads a typed log by field, without parsing JSON, with the same scores."""
    from leadscore.engine.parquet import EventLogError, open_duckdb
    from leadscore.engine.typed_log import TypedLogError, convert_to_typed, struct_sql
    try:
        res = convert_to_typed(source, target, conn=open_duckdb(memory_limit, None, temp_dir))
    except (EventLogError, TypedLogError) as exc:
        err_console.print(str(exc), style="red", highlight=False, markup=False)
        sys.exit(1)
    console.print(f"{res.rows:,} messages written to {res.path} in {res.seconds:.1f} s", highlight=False)
    for column, structure in res.structures.items():
        kept = struct_sql(structure) if structure is not None else "JSON text (no message has a key)"
        console.print(f"  {column}: {kept}", highlight=False, markup=False, soft_wrap=True)


commands = [log]
