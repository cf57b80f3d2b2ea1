"""A lead's page: why this score (axis → group → rule → events), what the next tier needs, the score
history with causes, the event timeline, one heatmap strip per video, fit attributes, alerts and
CRM sync status."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request

from leadscore.service import outbox, queries
from leadscore.web import breakdown
from leadscore.web.app import now, page_errors, viewer_dep, web
from leadscore.web.session import PageError, Viewer
from leadscore.web.video_ctas import lead_heatmaps, video_ctas

router = APIRouter(include_in_schema=False)

FIT_FIRST = ("name", "first_name", "last_name", "email", "title", "seniority", "company.name", "company.industry",
             "company.employee_count", "address.country", "browser", "account_id")


def _events_by_id(store, ids: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    ids = list(dict.fromkeys(i for i in ids if i))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = store.query_dicts("SELECT message_id, type, event, name, ts, properties FROM events "
                                 f"WHERE message_id IN ({','.join('?' * len(chunk))})", chunk)
        for r in rows:
            r["properties"] = queries._json(r["properties"]) or {}
            r["label"] = breakdown.describe_event(r)
            out[r["message_id"]] = r
    return out


def _history_points(history: list[dict]) -> list[dict]:
    pts = []
    for h in reversed(history):  # oldest first
        pts.append({**h, "at": datetime.fromisoformat(h["changed_at"])})
    return pts


@router.get("/leads/{lead_id:path}")
def lead_page(lead_id: str, request: Request, viewer: Viewer = Depends(viewer_dep)):
    w = web(request)
    store = request.app.state.store
    model = w.models.active(store)
    as_of = now(request)
    with page_errors():
        detail = queries.lead_detail(store, model, lead_id, as_of, history_limit=200, timeline_limit=150)
    lead = detail["lead"]
    expl = breakdown.build(detail, model)
    occurrence_ids = [o["message_id"] for r in detail["rules"] for o in r.get("occurrences", [])]
    events = _events_by_id(store, occurrence_ids)
    for item in detail["timeline"]:
        item["label"] = breakdown.describe_event(item)
    ctas = video_ctas(store, as_of, lead_id=lead)
    heat = lead_heatmaps(store, lead, as_of, {v["video_id"]: v["duration"] for v in detail["videos"]})
    videos = []
    for v in sorted(detail["videos"], key=lambda v: v.get("last_ts") or "", reverse=True):
        videos.append({**v, "counts": heat.get(v["video_id"], []), "ctas": [c for c in ctas if c["video_id"] == v["video_id"]]})
    traits = detail["traits"]
    fit = [(k, traits[k]) for k in FIT_FIRST if k in traits] + sorted(
        (k, v) for k, v in traits.items() if k not in FIT_FIRST)
    alerts = queries.list_alerts(store, lead=lead, limit=20)["items"]
    deliveries = outbox.list_deliveries(store, lead_id=lead, limit=20)
    crm = outbox.list_crm_sync(store, lead_id=lead, limit=20)
    tiers = [{"name": t.name, "min": t.min} for t in model.tiers]
    if not detail["rules"] and detail["current"] is None and not detail["timeline"]:
        raise PageError(404, f"no lead {lead_id!r}")
    return w.render(request, "lead.html", nav="leads", d=detail, lead=lead, bd=expl, events=events, videos=videos,
                    fit=fit, alerts=alerts, deliveries=deliveries, crm=crm, tiers=tiers, model=model, as_of=as_of,
                    history_points=_history_points(detail["history"]),
                    name=queries.display_name(traits) or traits.get("email") or lead)
