"""`leadscore serve`: the HTTP service (Segment-compatible ingestion, REST API, dashboard)."""
from __future__ import annotations

import click

from leadscore.cli.context import CliContext, console, pass_ctx


@click.command("serve")
@click.option("--db", "db", default=None, help="The store (overrides the global --db): a DuckDB file or postgresql:// URL.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Loopback clients may read without a key; prints a fresh write key.")
@click.option("--ingest-only", is_flag=True,
              help="Serve ingestion and keys only: none of the REST API, live scoring or dashboard installers.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@pass_ctx
def serve(ctx: CliContext, db: str | None, host: str, port: int, demo: bool, ingest_only: bool, log_level: str) -> None:
    """Serve ingestion (/v1/*), the REST API (/api) and the dashboard until interrupted."""
    import uvicorn

    from leadscore.service.app import create_app
    from leadscore.service.settings import Settings

    if db:
        ctx.db = db
    store = ctx.store()
    settings = Settings.from_env(demo=demo)
    app = create_app(store, settings, installers=() if ingest_only else None)
    if demo:
        from datetime import datetime, timezone

        from leadscore.service.auth import create_key
        new = create_key(store, "write", datetime.now(timezone.utc).replace(tzinfo=None), name="demo")
        console.print(f"demo write key (shown once): [bold]{new.token}[/bold]")
    console.print(f"leadscore serving {ctx.db} on http://{host}:{port}  (ingestion: /v1/batch, keys: /api/keys)")
    try:
        # One process, one event loop: the store (DuckDB in particular) belongs to this process, and
        # the group-commit writer thread is what makes ingestion fast, not more workers.
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                    timeout_graceful_shutdown=10)
    finally:
        store.close()


commands = [serve]
