"""The `leadscore` command. Each module of this package that defines ``commands`` (a list of
click commands or groups) is registered here, so a new surface never edits this file."""
from __future__ import annotations

import importlib
import pkgutil

import click

import leadscore.cli as _pkg
from leadscore.cli.context import CliContext, default_db


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", default=default_db, show_default="leadscore.duckdb or $LEADSCORE_DB",
              help="The store: a DuckDB file path or a postgresql:// URL.")
@click.version_option(package_name="leadscore")
@click.pass_context
def main(ctx: click.Context, db: str) -> None:
    """leadscore: explainable lead scoring on fit and engagement."""
    ctx.obj = CliContext(db=db)


def _register() -> None:
    for info in pkgutil.iter_modules(_pkg.__path__):
        if info.name in ("main", "context"):
            continue
        module = importlib.import_module(f"leadscore.cli.{info.name}")
        for command in getattr(module, "commands", []):
            main.add_command(command)


_register()
