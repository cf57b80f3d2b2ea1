"""The Leads page: the ranked, filtered, paged lead list (one call to ``queries.list_leads``)."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query, Request

from leadscore.service import queries
from leadscore.web.app import now, page_errors, viewer_dep, web
from leadscore.web.session import PageError, Viewer

router = APIRouter(include_in_schema=False)

SORT_LABELS = {"score": "Score", "fit": "Fit", "engagement": "Engagement", "updated": "Updated", "lead_id": "Lead"}
PAGE_SIZES = (25, 50, 100, 200)


def _number(value: str | None, field: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        v = float(value)
    except ValueError:
        raise PageError(422, f"{field}: expected a number, got {value!r}") from None
    if v != v:
        raise PageError(422, f"{field}: expected a number")
    return v


def filter_options(model) -> dict:
    grades = [f.grade + e.grade for f in model.grades.fit for e in model.grades.engagement]
    return {"tiers": [t.name for t in model.tiers], "stages": [s.name for s in model.stages], "grades": grades}


@router.get("/leads")
def leads_page(request: Request, viewer: Viewer = Depends(viewer_dep),
               q: str = "", tier: list[str] = Query([]), stage: list[str] = Query([]), grade: list[str] = Query([]),
               account: str = "", min_score: Optional[str] = None, max_score: Optional[str] = None,
               active: Optional[str] = None, sort: str = "score", order: str = "desc",
               cursor: Optional[str] = None, page: int = 1, limit: int = 50):
    w = web(request)
    store = request.app.state.store
    model = w.models.active(store)
    if order not in ("asc", "desc"):
        raise PageError(422, "order: asc or desc")
    if limit not in PAGE_SIZES:
        raise PageError(422, f"limit: one of {', '.join(map(str, PAGE_SIZES))}")
    as_of = now(request)
    with page_errors():
        result = queries.list_leads(
            store, tier=[t for t in tier if t] or None, stage=[s for s in stage if s] or None,
            grade=[g for g in grade if g] or None, account=account.strip() or None,
            min_score=_number(min_score, "min_score"), max_score=_number(max_score, "max_score"),
            active_within_days=_number(active, "active"), q=q.strip() or None, sort=sort, desc=order == "desc",
            limit=limit, cursor=cursor or None, as_of=as_of)
    filters = {"q": q, "tier": tier, "stage": stage, "grade": grade, "account": account,
               "min_score": min_score or "", "max_score": max_score or "", "active": active or ""}
    return w.render(request, "leads.html", nav="leads", result=result, filters=filters, sort=sort, order=order,
                    page=max(page, 1), limit=limit, options=filter_options(model), sort_labels=SORT_LABELS,
                    page_sizes=PAGE_SIZES, model=model, as_of=as_of,
                    filtered=any([q, any(tier), any(stage), any(grade), account, min_score, max_score, active]))
