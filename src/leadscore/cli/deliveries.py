"""`leadscore webhooks …`, `leadscore deliveries …` and `leadscore crm …`: endpoints, the outbox, CRM sync."""
from __future__ import annotations

import json
import threading
from datetime import datetime

import click
from rich.table import Table

from leadscore.cli.context import console, err_console, pass_ctx
from leadscore.cli.timeopt import AS_OF
from leadscore.service import outbox
from leadscore.service.crm import CrmSyncWorker, add_crm_target, list_crm_targets, set_crm_target_enabled, token_env_var
from leadscore.service.outbox import OutboxError
from leadscore.service.webhooks import (WebhookWorker, add_endpoint, list_endpoints, remove_endpoint,
                                        set_endpoint_enabled, start_background_delivery)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def _ts(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else ""


def _print_json(rows) -> None:
    click.echo(json.dumps(rows, default=str, indent=2))


# ------------------------------------------------------------------------------------------- webhooks
@click.group("webhooks")
def webhooks() -> None:
    """Outbound webhook endpoints (Standard Webhooks signatures)."""


@webhooks.command("add")
@click.argument("url")
@click.option("--type", "types", multiple=True, help="Event type to send (repeatable), e.g. lead.became_hot; default all.")
@click.option("--secret", help="whsec_… secret; generated when left out.")
@click.option("--description", help="A note for people.")
@click.option("--allow-private", is_flag=True, help="Allow a private/internal address (a trusted internal receiver).")
@click.option("--now", type=AS_OF, default="now", help="Registration time (default: the clock).")
@pass_ctx
def webhooks_add(ctx, url, types, secret, description, allow_private, now) -> None:
    """Register an endpoint; prints its id and signing secret."""
    try:
        ep = add_endpoint(ctx.store(), url, now=now, secret=secret, event_types=list(types) or None,
                          description=description, allow_private=allow_private)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"endpoint [bold]{ep.endpoint_id}[/] → {ep.url}", highlight=False)
    console.print(f"secret   {ep.secret}", highlight=False)


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--show-secrets", is_flag=True)
@pass_ctx
def webhooks_list(ctx, as_json, show_secrets) -> None:
    """Registered endpoints."""
    eps = list_endpoints(ctx.store())
    if as_json:
        _print_json([{**ep.__dict__, "secret": ep.secret if show_secrets else "whsec_…"} for ep in eps])
        return
    table = Table(title="webhook endpoints", title_justify="left")
    for c in ("id", "url", "types", "enabled", "private ok", "note"):
        table.add_column(c)
    for ep in eps:
        table.add_row(ep.endpoint_id, ep.url, ",".join(ep.event_types or ["*"]), "yes" if ep.enabled else "no",
                      "yes" if ep.allow_private else "", ep.disabled_reason or ep.description or "")
    console.print(table)


@webhooks.command("enable")
@click.argument("endpoint_id")
@pass_ctx
def webhooks_enable(ctx, endpoint_id) -> None:
    """Enable an endpoint (its pending deliveries resume)."""
    try:
        set_endpoint_enabled(ctx.store(), endpoint_id, True)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"{endpoint_id} enabled")


@webhooks.command("disable")
@click.argument("endpoint_id")
@click.option("--reason", default=None)
@pass_ctx
def webhooks_disable(ctx, endpoint_id, reason) -> None:
    """Disable an endpoint (pending deliveries wait; new alerts are not queued for it)."""
    try:
        set_endpoint_enabled(ctx.store(), endpoint_id, False, reason)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"{endpoint_id} disabled")


@webhooks.command("remove")
@click.argument("endpoint_id")
@pass_ctx
def webhooks_remove(ctx, endpoint_id) -> None:
    """Delete an endpoint and its deliveries."""
    try:
        dropped = remove_endpoint(ctx.store(), endpoint_id)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"{endpoint_id} removed ({dropped} pending deliveries dropped)")


# ----------------------------------------------------------------------------------------- deliveries
@click.group("deliveries")
def deliveries() -> None:
    """The webhook outbox: status, dead letters, replay, and the delivery worker."""


def _deliveries_table(rows, title) -> Table:
    table = Table(title=title, title_justify="left")
    for c in ("message", "type", "lead", "endpoint", "status", "tries", "last", "error", "next", "delivered"):
        table.add_column(c)
    for r in rows:
        table.add_row(r["message_id"], r["type"], r["lead_id"] or "", r["endpoint_id"], r["status"], str(r["attempts"]),
                      str(r["last_status"] or ""), (r["last_error"] or "")[:60], _ts(r["next_attempt_at"]), _ts(r["delivered_at"]))
    return table


@deliveries.command("list")
@click.option("--status", type=click.Choice(["pending", "delivered", "dead"]))
@click.option("--endpoint", "endpoint_id")
@click.option("--lead", "lead_id")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def deliveries_list(ctx, status, endpoint_id, lead_id, limit, as_json) -> None:
    """Deliveries, newest first, with attempts and the last status/error."""
    rows = outbox.list_deliveries(ctx.store(), status=status, endpoint_id=endpoint_id, lead_id=lead_id, limit=limit)
    if as_json:
        _print_json(rows)
    else:
        console.print(_deliveries_table(rows, "deliveries"))


@deliveries.command("dead")
@click.option("--endpoint", "endpoint_id")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def deliveries_dead(ctx, endpoint_id, limit, as_json) -> None:
    """The dead-letter list: deliveries that used up their retries (or were refused)."""
    rows = outbox.dead_letters(ctx.store(), endpoint_id=endpoint_id, limit=limit)
    if as_json:
        _print_json(rows)
    else:
        console.print(_deliveries_table(rows, "dead letters"))


@deliveries.command("show")
@click.argument("message_id")
@pass_ctx
def deliveries_show(ctx, message_id) -> None:
    """One message: its deliveries and every attempt."""
    rows = outbox.list_deliveries(ctx.store(), message_id=message_id)
    if not rows:
        raise click.ClickException(f"no deliveries for message {message_id}")
    console.print(_deliveries_table(rows, message_id))
    table = Table(title="attempts", title_justify="left")
    for c in ("endpoint", "#", "at", "http", "error"):
        table.add_column(c)
    for a in outbox.delivery_attempts(ctx.store(), message_id):
        table.add_row(a["endpoint_id"], str(a["attempt"]), _ts(a["attempted_at"]), str(a["http_status"] or ""), a["error"] or "")
    console.print(table)


@deliveries.command("replay")
@click.argument("message_ids", nargs=-1)
@click.option("--all-dead", is_flag=True, help="Replay every dead delivery (of --endpoint if given).")
@click.option("--endpoint", "endpoint_id")
@click.option("--resend", is_flag=True, help="Also send again deliveries that were delivered.")
@click.option("--now", type=AS_OF, default="now")
@pass_ctx
def deliveries_replay(ctx, message_ids, all_dead, endpoint_id, resend, now) -> None:
    """Queue deliveries again with the same webhook-id (receivers dedupe on it)."""
    try:
        n = outbox.replay(ctx.store(), now=now, message_ids=list(message_ids) or None, endpoint_id=endpoint_id,
                          all_dead=all_dead, include_delivered=resend)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"{n} deliveries queued again")


@deliveries.command("stats")
@pass_ctx
def deliveries_stats(ctx) -> None:
    """Counts by status for webhooks and CRM sync."""
    _print_json(outbox.outbox_stats(ctx.store()))


@deliveries.command("purge")
@click.option("--before", type=AS_OF, required=True, help="Delete finished items older than this instant.")
@pass_ctx
def deliveries_purge(ctx, before) -> None:
    """Retention: drop delivered/dead webhook deliveries and finished CRM items older than --before."""
    _print_json(outbox.purge(ctx.store(), before=before))


@deliveries.command("run")
@click.option("--loop", is_flag=True, help="Keep running (Ctrl-C to stop); otherwise one pass.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between passes when idle.")
@click.option("--allow-private", is_flag=True, help="Allow private/internal receivers (SSRF guard off).")
@click.option("--timeout", default=15.0, show_default=True, help="Seconds per webhook request.")
@click.option("--no-crm", is_flag=True, help="Webhooks only.")
@click.option("--now", type=AS_OF, default="now", help="The instant of a single pass (default: the clock).")
@pass_ctx
def deliveries_run(ctx, loop, interval, allow_private, timeout, no_crm, now) -> None:
    """Run the delivery worker: webhooks (and CRM sync unless --no-crm)."""
    store = ctx.store()
    if not loop:
        with WebhookWorker(store, allow_private=allow_private, timeout=timeout) as hooks, CrmSyncWorker(store) as crm:
            r = hooks.run_once(now)
            console.print(f"webhooks: {r.attempted} attempted, {r.delivered} delivered, {r.failed} failed, {r.dead} dead"
                          + (f"; disabled {', '.join(r.disabled_endpoints)}" if r.disabled_endpoints else ""))
            if not no_crm:
                c = crm.run_once(now)
                console.print(f"crm: {c.synced} synced, {c.failed} failed, {c.dead} dead, {c.skipped} skipped, "
                              f"{c.superseded} superseded" + (f"; paused {', '.join(c.requests_paused)}" if c.requests_paused else ""))
            return
    stop = threading.Event()
    threads = start_background_delivery(store, stop=stop, allow_private=allow_private, interval=interval,
                                        crm_interval=max(interval, 5.0), crm=not no_crm, timeout=timeout)
    err_console.print("delivery worker running; Ctrl-C to stop")
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()


# ------------------------------------------------------------------------------------------------ crm
@click.group("crm")
def crm() -> None:
    """CRM sync targets (HubSpot, Salesforce) and the sync queue."""


def _options(pairs) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--option")
        k, v = pair.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@crm.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["hubspot", "salesforce"]), required=True)
@click.option("--url", "base_url", help="API base (HubSpot default https://api.hubapi.com; Salesforce instance URL).")
@click.option("--token", help="Stored in the database; prefer the environment variable printed below.")
@click.option("--map", "mapping", help="field=CrmName,… e.g. score=Lead_Score__c,tier=Lead_Tier__c (default: all five).")
@click.option("--option", "options", multiple=True, help="key=value: id_property, email_trait, version, sobject, "
              "external_id_field, id_trait, ca_file, timeout, limit_pause.")
@click.option("--now", type=AS_OF, default="now")
@pass_ctx
def crm_add(ctx, name, kind, base_url, token, mapping, options, now) -> None:
    """Register a CRM to sync scores to."""
    try:
        t = add_crm_target(ctx.store(), name, kind, now=now, base_url=base_url, mapping=mapping, options=_options(options), token=token)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"{t.name} ({t.kind}) → {t.base_url}; mapping {json.dumps(t.mapping.fields)}", highlight=False)
    if not token:
        console.print(f"token: set ${token_env_var(name)} where the worker runs", highlight=False)


@crm.command("list")
@pass_ctx
def crm_list(ctx) -> None:
    """CRM targets and their state."""
    table = Table(title="CRM targets", title_justify="left")
    for c in ("name", "kind", "url", "mapping", "enabled", "paused until", "limits", "last error"):
        table.add_column(c)
    for t in list_crm_targets(ctx.store()):
        table.add_row(t.name, t.kind, t.base_url, json.dumps(t.mapping.fields), "yes" if t.enabled else "no",
                      _ts(t.paused_until), t.limit_info or "", (t.last_error or "")[:60])
    console.print(table)


@crm.command("enable")
@click.argument("name")
@click.option("--off", is_flag=True, help="Disable instead.")
@pass_ctx
def crm_enable(ctx, name, off) -> None:
    """Enable (or --off disable) a target; enabling also clears a pause."""
    try:
        set_crm_target_enabled(ctx.store(), name, not off)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"{name} {'disabled' if off else 'enabled'}")


@crm.command("sync")
@click.option("--target", "only", help="Only this target.")
@click.option("--loop", is_flag=True, help="Keep running (Ctrl-C to stop).")
@click.option("--interval", default=5.0, show_default=True)
@click.option("--now", type=AS_OF, default="now", help="The instant of a single pass (default: the clock).")
@pass_ctx
def crm_sync(ctx, only, loop, interval, now) -> None:
    """Push pending score changes to the CRMs (newest per lead, batched)."""
    with CrmSyncWorker(ctx.store()) as w:
        if loop:
            try:
                w.run_forever(interval=interval)
            except KeyboardInterrupt:
                pass
            return
        c = w.run_once(now, only=only)
    console.print(f"{c.synced} synced, {c.failed} failed (will retry), {c.dead} dead, {c.skipped} skipped, "
                  f"{c.superseded} superseded" + (f"; paused {', '.join(c.requests_paused)}" if c.requests_paused else ""))


@crm.command("status")
@click.option("--status", type=click.Choice(["pending", "synced", "superseded", "skipped", "dead"]))
@click.option("--target")
@click.option("--lead", "lead_id")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def crm_status(ctx, status, target, lead_id, limit, as_json) -> None:
    """The CRM sync queue, newest first."""
    rows = outbox.list_crm_sync(ctx.store(), status=status, target=target, lead_id=lead_id, limit=limit)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="CRM sync", title_justify="left")
    for c in ("seq", "target", "lead", "as of", "status", "tries", "last", "error", "synced"):
        table.add_column(c)
    for r in rows:
        table.add_row(str(r["seq"]), r["target"], r["lead_id"], _ts(r["as_of"]), r["status"], str(r["attempts"]),
                      str(r["last_status"] or ""), (r["last_error"] or "")[:60], _ts(r["synced_at"]))
    console.print(table)


@crm.command("replay")
@click.option("--target")
@click.option("--lead", "lead_ids", multiple=True)
@click.option("--now", type=AS_OF, default="now")
@pass_ctx
def crm_replay(ctx, target, lead_ids, now) -> None:
    """Dead CRM sync items become pending again."""
    n = outbox.replay_crm(ctx.store(), now=now, target_name=target, lead_ids=list(lead_ids) or None)
    console.print(f"{n} CRM sync items queued again")


@crm.command("backfill")
@click.option("--now", type=AS_OF, default="now")
@pass_ctx
def crm_backfill(ctx, now) -> None:
    """Queue every lead's latest stored score (of the active model) for every enabled target."""
    store = ctx.store()
    rows = store.query_dicts(
        "SELECT s.lead_id, s.as_of, s.score, s.fit, s.engagement, s.tier, s.stage, s.grade, s.model_version FROM scores s "
        "JOIN models m ON m.version = s.model_version AND m.active "
        "JOIN (SELECT lead_id, model_version, max(as_of) AS as_of FROM scores GROUP BY lead_id, model_version) x "
        "ON x.lead_id = s.lead_id AND x.model_version = s.model_version AND x.as_of = s.as_of")
    try:
        n = outbox.enqueue_crm_syncs(store, rows, now=now)
    except OutboxError as exc:
        _fail(exc)
    console.print(f"{n} CRM sync items queued ({len(rows)} leads)")


commands = [webhooks, deliveries, crm]
