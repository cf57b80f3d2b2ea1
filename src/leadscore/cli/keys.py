"""`leadscore keys`: create, list and revoke API keys (admin, read, write)."""
from __future__ import annotations

from datetime import datetime, timezone

import click
from rich.table import Table

from leadscore.cli.context import CliContext, console, err_console, pass_ctx


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@click.group("keys")
def keys() -> None:
    """API keys of the HTTP service. Only a hash is stored: a token is shown once, at creation.

    On the embedded DuckDB store the file is locked by a running `leadscore serve`; manage keys
    then through the admin API (POST/GET/DELETE /api/keys) or stop the server first.
    """


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "read", "write"]))
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option("--rate-limit", type=float, default=None, help="Requests per second (default by role).")
@click.option("--burst", type=float, default=None, help="Token-bucket size (default: the rate limit, or by role).")
@click.option("--quiet", "-q", is_flag=True, help="Print the token only (for scripts).")
@pass_ctx
def create(ctx: CliContext, role: str, name: str, rate_limit: float | None, burst: float | None, quiet: bool) -> None:
    """Create a key and print its token (shown once)."""
    from leadscore.service.auth import KeyError_, create_key

    try:
        new = create_key(ctx.store(), role, _now(), name=name, rate_limit=rate_limit, burst=burst)
    except KeyError_ as exc:
        raise click.BadParameter(str(exc)) from None
    if quiet:
        click.echo(new.token)
        return
    console.print(f"created {new.key.role} key {new.key.key_id} ({new.key.name})")
    console.print("token (shown once, store it now):")
    click.echo(new.token)


@keys.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key (for scripts).")
@pass_ctx
def list_(ctx: CliContext, show_all: bool, as_json: bool) -> None:
    """List keys (id, role, name, token prefix, limits; never the secret)."""
    import json

    from leadscore.service.auth import list_keys

    found = list_keys(ctx.store(), include_revoked=show_all)
    if as_json:
        for k in found:
            click.echo(json.dumps(k.public()))
        return
    table = Table("key id", "role", "name", "prefix", "rate/s", "burst", "created", "revoked", box=None)
    for col in table.columns:
        col.no_wrap = True
    for k in found:
        table.add_row(k.key_id, k.role, k.name, k.prefix + "…", _num(k.rate_limit), _num(k.burst),
                      f"{k.created_at:%Y-%m-%d}", f"{k.revoked_at:%Y-%m-%d}" if k.revoked_at else "")
    console.print(table)


@keys.command("revoke")
@click.argument("key_id")
@pass_ctx
def revoke(ctx: CliContext, key_id: str) -> None:
    """Revoke a key: a running server refuses it within a second."""
    from leadscore.service.auth import KeyError_, revoke_key

    try:
        key = revoke_key(ctx.store(), key_id, _now())
    except KeyError_ as exc:
        err_console.print(f"error: {exc}")
        raise SystemExit(1) from None
    console.print(f"revoked {key.role} key {key.key_id} ({key.name}) at {key.revoked_at:%Y-%m-%d %H:%M:%S}")


def _num(value: float | None) -> str:
    return "default" if value is None else f"{value:g}"


commands = [keys]
