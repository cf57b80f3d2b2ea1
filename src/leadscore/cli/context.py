"""What every command shares: the store URL given by --db, opened once on first use."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import click
from rich.console import Console

from leadscore.store import Store, open_store


@dataclass
class CliContext:
    db: str
    _store: Store | None = field(default=None, repr=False)

    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.db)
        return self._store


console = Console()
err_console = Console(stderr=True)


def default_db() -> str:
    return os.environ.get("LEADSCORE_DB", "leadscore.duckdb")


pass_ctx = click.make_pass_decorator(CliContext)
