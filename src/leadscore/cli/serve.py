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
    from leadscore.service.ingest_log import ingest_log_path
    from leadscore.service.settings import Settings

    if db:
        ctx.db = db
    store = ctx.store()
    settings = Settings.from_env(demo=demo)
    front = None
    if settings.ingest_process and ingest_log_path(settings, store) is not None:
        # /v1/* answered by a child process on the public socket (bound here, so a port in use
        # fails now); this process owns the store and serves the rest through it (service/frontend.py)
        from leadscore.service.frontend import IngestProcess
        try:
            front = IngestProcess(host, port, log_level)
        except OSError as exc:
            store.close()
            raise click.ClickException(str(exc)) from None
    app = create_app(store, settings, installers=() if ingest_only else None, ingest_process=front)
    if demo:
        from datetime import datetime, timezone

        from leadscore.service.auth import create_key
        new = create_key(store, "write", datetime.now(timezone.utc).replace(tzinfo=None), name="demo")
        console.print(f"demo write key (shown once): [bold]{new.token}[/bold]")
    shown = front.port if front is not None else port
    console.print(f"leadscore serving {ctx.db} on http://{host}:{shown}  (ingestion: /v1/batch, keys: /api/keys)")
    from leadscore.service.frontend import freeze_heap
    # once everything has started (the last start-up hook): full garbage collections then scan what
    # serving allocates, not every module and class
    app.state.on_start.append(lambda app: freeze_heap())
    try:
        # One process owns the store (DuckDB allows no other) and its writer threads; with the log,
        # the ingestion process in front of it answers /v1/* and passes it everything else.
        if front is None:
            uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                        timeout_graceful_shutdown=10)
        else:
            config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=10,
                                    proxy_headers=False)   # the client comes in X-Leadscore-Client
            uvicorn.Server(config).run(sockets=[front.core_socket])
    finally:
        if front is not None:
            front.stop()   # no-op after the app's shutdown stopped it; else (start-up failed) the sockets
        store.close()
        import gc
        gc.unfreeze()   # let the interpreter's exit finalise them (DuckDB's bindings report frozen ones as leaks)


commands = [serve]
