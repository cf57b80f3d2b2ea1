"""The REST API under /api: leads, accounts, videos, alerts and live status (read keys); models,
deliveries, webhooks and privacy (admin keys, in ``leadscore.service.api_admin``).

``install(app)`` adds the routers; every answer is JSON described by a pydantic model
(``leadscore.service.api_schemas``), errors are ``{"code", "message", "errors"?: [{"loc", "message"}]}``
with ``loc`` naming the field. The data comes from ``leadscore.service.queries`` (also used by the
dashboard). The wall clock is read here, at the surface: ``as_of`` defaults to now.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request

from leadscore.service import queries
from leadscore.service.api_schemas import (
    ERROR_RESPONSES, NOT_FOUND, AccountDetail, AccountPage, AlertPage, LeadDetail, LeadPage, LiveStats, HistoryRow,
    ModelSummary, Order, SortAccount, SortLead, TimelineEvent, VideoDetail, VideoStats, WhatIfRequest, WhatIfResult,
)
from leadscore.service.auth import require
from leadscore.service.errors import ApiError, unavailable
from leadscore.store import StoreUnavailable

MAX_ID = 500  # longest lead/account/video id accepted in a path


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_of_or_now(as_of: datetime | None) -> datetime:
    if as_of is None:
        return now_utc()
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(timezone.utc).replace(tzinfo=None)
    return as_of


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", f"{field}: {message}", errors=[{"loc": field, "message": message}])


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {ident!r}")


def call(fn, *args, **kwargs):
    """Run a read model, turning its errors into API errors."""
    try:
        return fn(*args, **kwargs)
    except queries.QueryError as exc:
        raise invalid(exc.field, exc.message) from None
    except StoreUnavailable as exc:
        raise unavailable(f"the store is unavailable: {exc}", 1) from None


def active_model(request: Request):
    live = getattr(request.app.state, "live", None)
    try:
        if live is not None:
            return live.model()
        from leadscore.engine.models_registry import resolve_model
        return resolve_model(request.app.state.store, None)
    except LookupError as exc:
        raise ApiError(409, "no_model", str(exc)) from None


def rollup(top_n: int, fit: str) -> queries.AccountRollup:
    return queries.AccountRollup(top_n=top_n, fit=fit)


def _check_id(value: str, field: str) -> str:
    if len(value) > MAX_ID:
        raise invalid(field, f"longer than {MAX_ID} characters")
    return value


async def no_nul(request: Request) -> None:
    """Refuse NUL characters in path and query parameters (PostgreSQL text cannot hold them; refusing
    them on both stores keeps them alike)."""
    for name, value in list(request.path_params.items()) + list(request.query_params.multi_items()):
        if isinstance(value, str) and "\x00" in value:
            raise invalid(name, "contains a NUL character")


# ------------------------------------------------------------------------------------------ read
def build_read_router() -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(require("read")), Depends(no_nul)], responses=ERROR_RESPONSES)

    @router.get("/leads", response_model=LeadPage, tags=["leads"], summary="Leads ranked and filtered, cursor-paged")
    def leads(request: Request,
              tier: list[str] | None = Query(None, max_length=20, description="one or more tiers"),
              stage: list[str] | None = Query(None, max_length=20),
              grade: list[str] | None = Query(None, max_length=20),
              account: str | None = Query(None, max_length=MAX_ID, description="account (group) id"),
              min_score: float | None = Query(None, ge=-1e12, le=1e12),
              max_score: float | None = Query(None, ge=-1e12, le=1e12),
              active_within_days: float | None = Query(None, ge=0, le=36500),
              q: str | None = Query(None, max_length=200, description="search lead id, e-mail, name, company"),
              updated_since: datetime | None = Query(None, description="score changed at or after"),
              sort: SortLead = "score", order: Order = "desc",
              limit: int = Query(50, ge=1, le=1000), cursor: str | None = Query(None, max_length=2000),
              as_of: datetime | None = Query(None, description="default: now")) -> dict:
        return call(queries.list_leads, request.app.state.store, tier=tier, stage=stage, grade=grade, account=account,
                    min_score=min_score, max_score=max_score, active_within_days=active_within_days, q=q,
                    updated_since=updated_since, sort=sort, desc=order == "desc", limit=limit, cursor=cursor,
                    as_of=as_of_or_now(as_of))

    @router.get("/leads/{lead_id}", response_model=LeadDetail, tags=["leads"], responses=NOT_FOUND,
                summary="One lead: its explanation (as `leadscore explain --json`), traits, history and timeline")
    def lead(lead_id: str, request: Request, as_of: datetime | None = None,
             history: int = Query(50, ge=0, le=1000), timeline: int = Query(100, ge=0, le=1000)) -> dict:
        _check_id(lead_id, "lead_id")
        model = active_model(request)
        try:
            return call(queries.lead_detail, request.app.state.store, model, lead_id, as_of_or_now(as_of),
                        history_limit=history, timeline_limit=timeline)
        except queries.NotFound:
            raise not_found("lead", lead_id) from None

    @router.get("/leads/{lead_id}/history", response_model=list[HistoryRow], tags=["leads"], responses=NOT_FOUND,
                summary="The lead's score changes with their causes (event, time, model), newest first")
    def history(lead_id: str, request: Request, limit: int = Query(100, ge=1, le=1000),
                before: datetime | None = None) -> list[dict]:
        store = request.app.state.store
        lead = call(queries.resolve_lead, store, _check_id(lead_id, "lead_id"))
        if not call(queries.lead_exists, store, lead):
            raise not_found("lead", lead_id)
        return call(queries.lead_history, store, lead, limit=limit, before=before)

    @router.get("/leads/{lead_id}/timeline", response_model=list[TimelineEvent], tags=["leads"], responses=NOT_FOUND,
                summary="The lead's events (anonymous activity included), newest first")
    def timeline(lead_id: str, request: Request, limit: int = Query(100, ge=1, le=1000),
                 before: datetime | None = None, as_of: datetime | None = None) -> list[dict]:
        store = request.app.state.store
        lead = call(queries.resolve_lead, store, _check_id(lead_id, "lead_id"))
        if not call(queries.lead_exists, store, lead):
            raise not_found("lead", lead_id)
        return call(queries.lead_timeline, store, lead, as_of_or_now(as_of), limit=limit, before=before)

    @router.get("/accounts", response_model=AccountPage, tags=["accounts"],
                summary="Accounts ranked by their rolled-up score (sum of the top N engagement scores + fit)")
    def accounts(request: Request, q: str | None = Query(None, max_length=200),
                 min_score: float | None = Query(None, ge=-1e12, le=1e12), sort: SortAccount = "score",
                 order: Order = "desc", limit: int = Query(50, ge=1, le=1000),
                 cursor: str | None = Query(None, max_length=2000),
                 top_n: int = Query(3, ge=1, le=100, description="leads whose engagement is summed"),
                 fit: str = Query("max", pattern="^(max|avg)$", description="how lead fit rolls up")) -> dict:
        model = active_model(request)
        return call(queries.list_accounts, request.app.state.store, rollup=rollup(top_n, fit), model=model, q=q,
                    min_score=min_score, sort=sort, desc=order == "desc", limit=limit, cursor=cursor)

    @router.get("/accounts/{account_id}", response_model=AccountDetail, tags=["accounts"], responses=NOT_FOUND,
                summary="One account: rollup, traits and its leads")
    def account(account_id: str, request: Request, as_of: datetime | None = None,
                top_n: int = Query(3, ge=1, le=100), fit: str = Query("max", pattern="^(max|avg)$"),
                leads: int = Query(200, ge=1, le=1000)) -> dict:
        _check_id(account_id, "account_id")
        model = active_model(request)
        try:
            return call(queries.account_detail, request.app.state.store, account_id, as_of_or_now(as_of),
                        rollup=rollup(top_n, fit), model=model, lead_limit=leads)
        except queries.NotFound:
            raise not_found("account", account_id) from None

    @router.get("/videos", response_model=list[VideoStats], tags=["videos"],
                summary="Every video: viewers, share watched, completion rates, CTA clicks")
    def videos(request: Request, as_of: datetime | None = None) -> list[dict]:
        return call(queries.video_stats, request.app.state.store, as_of_or_now(as_of))

    @router.get("/videos/{video_id}", response_model=VideoDetail, tags=["videos"], responses=NOT_FOUND,
                summary="One video: stats, engagement graph per second and per-viewer heatmap rows")
    def video(video_id: str, request: Request, as_of: datetime | None = None,
              viewers: int = Query(200, ge=0, le=5000, description="heatmap rows returned")) -> dict:
        _check_id(video_id, "video_id")
        try:
            return call(queries.video_detail, request.app.state.store, video_id, as_of_or_now(as_of), viewer_limit=viewers)
        except queries.NotFound:
            raise not_found("video", video_id) from None

    @router.get("/alerts", response_model=AlertPage, tags=["alerts"], summary="Recent alerts, newest first")
    def alerts(request: Request, lead: str | None = Query(None, max_length=MAX_ID),
               name: str | None = Query(None, max_length=200), since: datetime | None = None,
               limit: int = Query(50, ge=1, le=1000), cursor: str | None = Query(None, max_length=2000)) -> dict:
        return call(queries.list_alerts, request.app.state.store, lead=lead, name=name, since=since, limit=limit,
                    cursor=cursor)

    @router.get("/model", response_model=ModelSummary, tags=["models"],
                summary="The active model: rules, tiers, stages, alerts and the score distribution")
    def model_summary(request: Request) -> dict:
        model = active_model(request)
        return {**call(queries.model_summary, request.app.state.store, model), "active": True}

    @router.post("/tiers/whatif", response_model=WhatIfResult, tags=["models"],
                 summary="How many leads each tier would hold under other thresholds (nothing is changed)")
    def whatif(body: WhatIfRequest, request: Request) -> dict:
        return call(queries.tier_whatif, request.app.state.store, body.thresholds, model=active_model(request))

    @router.get("/live", response_model=LiveStats, tags=["service"],
                summary="Live scoring: counters, score freshness percentiles, activation progress")
    def live(request: Request) -> dict:
        scorer = getattr(request.app.state, "live", None)
        if scorer is None:
            raise ApiError(404, "not_found", "live scoring is not installed in this service")
        return scorer.stats()

    return router


def install(app: FastAPI) -> None:
    from leadscore.service import api_admin

    app.include_router(build_read_router())
    app.include_router(api_admin.build_admin_router())
