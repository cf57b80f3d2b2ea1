"""Videos: the catalog with its analytics (``leadscore.video.analytics``), and one video's engagement
graph and per-viewer heatmap rows ordered by score (``queries.video_detail``, what /api/videos/{id}
returns, so the page and the API cannot disagree)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from leadscore.service import queries
from leadscore.video.analytics import video_stats
from leadscore.web.app import now, page_errors, viewer_dep, web
from leadscore.web.session import Viewer
from leadscore.web.video_ctas import video_ctas

router = APIRouter(include_in_schema=False)
STAGE_ORDER = {"top": 0, "middle": 1, "bottom": 2, "retention": 3}
MAX_VIEWER_ROWS = 200
ALL_VIEWERS = 1_000_000


@router.get("/videos")
def videos_page(request: Request, viewer: Viewer = Depends(viewer_dep), order: str = "funnel"):
    store = request.app.state.store
    stats = video_stats(store, now(request))
    rows = stats["videos"]
    if order == "funnel":
        rows.sort(key=lambda r: (STAGE_ORDER.get(r["stage"] or "", 9), r["rank"]))
    return web(request).render(request, "videos.html", nav="videos", videos=rows, by_stage=stats["by_stage"],
                               order=order)


@router.get("/videos/{video_id:path}")
def video_page(video_id: str, request: Request, viewer: Viewer = Depends(viewer_dep)):
    store = request.app.state.store
    as_of = now(request)
    with page_errors():
        detail = queries.video_detail(store, video_id, as_of, viewer_limit=ALL_VIEWERS)
    rows = detail["heatmaps"]
    ids = [r["lead_id"] for r in rows]
    scores = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for lead, score, tier in store.query(
                f"SELECT lead_id, score, tier FROM lead_scores WHERE lead_id IN ({','.join('?' * len(chunk))})", chunk):
            scores[lead] = (float(score), tier)
    for r in rows:
        r["score"], r["tier"] = scores.get(r["lead_id"], (None, None))
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["lead_id"]))
    shown = rows[:MAX_VIEWER_ROWS]
    names = queries.traits_of(store, [r["lead_id"] for r in shown], queries.DISPLAY_TRAITS)
    ctas = video_ctas(store, as_of, video_id=video_id)
    for r in shown:
        t = names.get(r["lead_id"], {})
        r["name"] = queries.display_name(t) or t.get("email")
        r["ctas"] = [c for c in ctas if c["lead_id"] == r["lead_id"]]
    graph = detail["graph"]
    retention = [g["share"] for g in graph]
    rewatches = [g["plays"] - g["viewers"] for g in graph]
    return web(request).render(request, "video.html", nav="videos", d=detail, viewers=shown, total_viewers=len(rows),
                               retention=retention, rewatches=rewatches, ctas=ctas)
