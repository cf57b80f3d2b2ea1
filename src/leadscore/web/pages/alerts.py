"""Alerts and deliveries: recent alerts, webhook deliveries and CRM sync with their status; replay
(admin key + CSRF token)."""
from __future__ import annotations

from typing import Optional
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse

from leadscore.service import outbox, queries
from leadscore.service.webhooks import list_endpoints, set_endpoint_enabled
from leadscore.web.app import now, page_errors, viewer_dep, web
from leadscore.web.session import PageError, Viewer, check_csrf, require_admin

router = APIRouter(include_in_schema=False)
STATUSES = ("pending", "delivered", "dead")
CRM_STATUSES = ("pending", "synced", "superseded", "skipped", "dead")


@router.get("/alerts")
def alerts_page(request: Request, viewer: Viewer = Depends(viewer_dep), status: str = "", crm_status: str = "",
                cursor: Optional[str] = None, done: str = ""):
    store = request.app.state.store
    if status and status not in STATUSES:
        raise PageError(422, f"status: one of {', '.join(STATUSES)}")
    if crm_status and crm_status not in CRM_STATUSES:
        raise PageError(422, f"crm_status: one of {', '.join(CRM_STATUSES)}")
    with page_errors():
        alerts = queries.list_alerts(store, limit=50, cursor=cursor or None)
    deliveries = outbox.list_deliveries(store, status=status or None, limit=100)
    crm = outbox.list_crm_sync(store, status=crm_status or None, limit=100)
    return web(request).render(request, "alerts.html", nav="alerts", alerts=alerts, deliveries=deliveries, crm=crm,
                               stats=outbox.outbox_stats(store), endpoints=list_endpoints(store), status=status,
                               crm_status=crm_status, statuses=STATUSES, crm_statuses=CRM_STATUSES, done=done)


async def _admin_form(request: Request, viewer: Viewer) -> dict:
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    require_admin(viewer)
    return {k: str(v) for k, v in form.items()}


def _back(message: str) -> RedirectResponse:
    return RedirectResponse("/alerts?" + urlencode({"done": message}), status_code=303)


@router.post("/alerts/replay")
async def replay(request: Request, viewer: Viewer = Depends(viewer_dep)):
    form = await _admin_form(request, viewer)
    message_id = form.get("message_id") or None
    try:
        n = outbox.replay(request.app.state.store, now=now(request), message_ids=[message_id] if message_id else None,
                          endpoint_id=form.get("endpoint_id") or None, all_dead=not message_id,
                          include_delivered=form.get("resend") == "1")
    except outbox.OutboxError as exc:
        raise PageError(422, str(exc)) from None
    return _back(f"{n} webhook deliver{'y' if n == 1 else 'ies'} queued again")


@router.post("/alerts/replay-crm")
async def replay_crm(request: Request, viewer: Viewer = Depends(viewer_dep)):
    form = await _admin_form(request, viewer)
    lead = form.get("lead_id") or None
    n = outbox.replay_crm(request.app.state.store, now=now(request), target_name=form.get("target") or None,
                          lead_ids=[lead] if lead else None)
    return _back(f"{n} CRM sync item{'' if n == 1 else 's'} queued again")


@router.post("/alerts/endpoint-enable")
async def enable_endpoint(request: Request, viewer: Viewer = Depends(viewer_dep)):
    """Re-enable a webhook endpoint that was disabled (e.g. after a 410): its pending deliveries resume."""
    form = await _admin_form(request, viewer)
    endpoint_id = form.get("endpoint_id") or ""
    try:
        set_endpoint_enabled(request.app.state.store, endpoint_id, True)
    except (KeyError, outbox.OutboxError) as exc:
        raise PageError(404, f"no webhook endpoint {endpoint_id!r}: {exc}") from None
    return _back(f"endpoint {endpoint_id} enabled again")
