"""Admin routes of the REST API: model versions (upload, activate, dry-run), deliveries and replay,
webhook endpoints, live re-scores, and privacy (erase, export). Listing models and deliveries needs a
read key; everything that changes something needs an admin key."""
from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from leadscore.engine.models_registry import get_model, list_models, save_model
from leadscore.model import ModelError, parse_model
from leadscore.service import api_privacy, outbox, queries, webhooks
from leadscore.service.api import _check_id, as_of_or_now, call, invalid, no_nul, not_found, now_utc
from leadscore.service.api_schemas import (
    ERROR_RESPONSES, NOT_FOUND, Activation, Delivery, DryRunRequest, DryRunResult, ErrorBody, Erased, LeadExport,
    ModelSaved, ModelSummary, ModelUpload, ModelVersion, RescoreRequest, RescoreResult, ReplayRequest, ReplayResult,
    WebhookCreated, WebhookIn, WebhookOut,
)
from leadscore.service.auth import require
from leadscore.service.errors import ApiError, unavailable

MAX_MODEL_BYTES = 1_000_000
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ModelUpload.model_json_schema()},
    "application/yaml": {"schema": {"type": "string", "description": "the model file itself"}},
}}}
MODEL_ERRORS = {422: {"model": ErrorBody, "description": "the model file is invalid: one entry per problem, "
                                                        "`loc` = file:line:field"}}


def model_error(exc: ModelError) -> ApiError:
    errors = [{"loc": f"{i.file}:{i.line}:{i.field}", "message": i.message} for i in exc.issues]
    return ApiError(422, "invalid_model", "; ".join(str(i) for i in exc.issues[:20]), errors=errors)


def _iso(v: Any) -> str | None:
    return v.isoformat() if hasattr(v, "isoformat") else (None if v is None else str(v))


async def _upload(request: Request) -> ModelUpload:
    from pydantic import ValidationError
    try:
        return await _read_upload(request)
    except ValidationError as exc:
        errs = [{"loc": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in exc.errors()]
        raise ApiError(422, "invalid_request", "; ".join(f"{e['loc']}: {e['message']}" for e in errs), errors=errs) from None


async def _read_upload(request: Request) -> ModelUpload:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if len(raw) > MAX_MODEL_BYTES * 2:
        raise ApiError(413, "request_too_large", f"a model upload is at most {MAX_MODEL_BYTES} bytes")
    if ctype in _YAML_TYPES:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("body", "the model file is not UTF-8 text") from None
        activate = request.query_params.get("activate", "false").lower() in ("1", "true", "yes")
        return ModelUpload(source=text, filename=request.query_params.get("filename", "model.yaml")[:200], activate=activate)
    if ctype not in ("application/json", ""):
        raise ApiError(415, "unsupported_media_type", "send JSON {\"source\": \"<yaml>\"} or the YAML file as application/yaml")
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        raise invalid("body", f"not JSON: {exc}") from None
    return ModelUpload.model_validate(data)


def _parse(source: str, filename: str):
    try:
        return parse_model(source, filename)
    except ModelError as exc:
        raise model_error(exc) from None
    except RecursionError:
        raise invalid("source", "the YAML nests too deeply") from None


def _live(request: Request):
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise ApiError(409, "no_live_scoring", "live scoring is not installed in this service")
    return live


def _endpoint_out(ep: webhooks.Endpoint) -> dict[str, Any]:
    return {"endpoint_id": ep.endpoint_id, "url": ep.url, "event_types": ep.event_types, "description": ep.description,
            "enabled": bool(ep.enabled), "disabled_reason": ep.disabled_reason, "created_at": _iso(ep.created_at)}


def _outbox_error(exc: outbox.OutboxError) -> ApiError:
    text = str(exc)
    field, _, message = text.partition(": ")
    if not message or " " in field:
        field, message = "body", text
    return invalid(field, message)


def build_admin_router() -> APIRouter:
    router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
    read = [Depends(require("read")), Depends(no_nul)]
    admin = [Depends(require("admin")), Depends(no_nul)]

    # ---- models
    @router.get("/models", response_model=list[ModelVersion], dependencies=read, tags=["models"],
                summary="Stored model versions (the active one flagged)")
    def models(request: Request) -> list[dict]:
        return [{"version": m["version"], "name": m["name"], "created_at": _iso(m["created_at"]), "active": bool(m["active"])}
                for m in call(list_models, request.app.state.store)]

    @router.get("/models/activation", response_model=Activation, dependencies=read, tags=["models"],
                summary="Progress of the running (or last) model activation")
    def activation(request: Request) -> dict:
        return dict(_live(request).activation)

    @router.get("/models/{version}", response_model=ModelSummary, dependencies=read, tags=["models"], responses=NOT_FOUND,
                summary="One model version: rules, tiers, stages, alerts and the live score distribution")
    def model(version: str, request: Request) -> dict:
        store = request.app.state.store
        try:
            m = get_model(store, _check_id(version, "version"))
        except KeyError:
            raise not_found("model version", version) from None
        active = bool(store.query("SELECT 1 FROM models WHERE version = ? AND active", (version,)))
        return {**call(queries.model_summary, store, m), "active": active}

    @router.post("/models", status_code=201, response_model=ModelSaved, dependencies=admin, tags=["models"],
                 openapi_extra=_UPLOAD_BODY, responses={**MODEL_ERRORS, 413: {"model": ErrorBody}, 415: {"model": ErrorBody},
                                                        409: {"model": ErrorBody}},
                 summary="Upload a model file (validated; errors name file, line and field)")
    async def upload(request: Request) -> dict:
        body = await _upload(request)
        m = _parse(body.source, body.filename)
        store = request.app.state.store
        created = not store.query("SELECT 1 FROM models WHERE version = ?", (m.model_version,))
        save_model(store, m, now_utc())
        out = {"version": m.model_version, "name": m.name, "rules": len(m.rules), "groups": len(m.groups), "created": created}
        if body.activate:
            out["activation"] = _start_activation(request, m.model_version, wait=False)
        return out

    def _start_activation(request: Request, version: str, wait: bool) -> dict:
        live = _live(request)
        try:
            if wait:
                live.activate(version, now_utc())
                return dict(live.activation)
            return live.activate_in_background(version, now_utc())
        except KeyError:
            raise not_found("model version", version) from None
        except RuntimeError as exc:
            raise ApiError(409, "conflict", str(exc)) from None

    @router.post("/models/dry-run", response_model=DryRunResult, dependencies=admin, tags=["models"],
                 responses={**MODEL_ERRORS, **NOT_FOUND},
                 summary="How many leads a model would move between tiers, stages and scores (nothing is written)")
    def dry_run(body: DryRunRequest, request: Request) -> dict:
        store = request.app.state.store
        if (body.source is None) == (body.version is None):
            raise invalid("body", "give either source (a model file's text) or version (a stored model)")
        if body.source is not None:
            m = _parse(body.source, body.filename)
        else:
            try:
                m = get_model(store, body.version)
            except KeyError:
                raise not_found("model version", body.version) from None
        return call(queries.model_dry_run, store, m, as_of_or_now(body.as_of))

    @router.post("/models/{version}/activate", response_model=Activation, dependencies=admin, tags=["models"],
                 responses={**NOT_FOUND, 409: {"model": ErrorBody}}, status_code=202,
                 summary="Activate a version: re-scores everyone (history cause 'model'); progress at /api/models/activation")
    def activate(version: str, request: Request, wait: bool = Query(False, description="answer when done")) -> Any:
        out = _start_activation(request, _check_id(version, "version"), wait)
        return JSONResponse(out, status_code=200 if wait else 202)

    # ---- live
    @router.post("/live/rescore", response_model=RescoreResult, dependencies=admin, tags=["service"],
                 summary="Re-score everyone for time now (or as of a given instant); only changes are written")
    def rescore(body: RescoreRequest, request: Request) -> dict:
        return _live(request).rescore_time(as_of_or_now(body.as_of)).summary()

    # ---- deliveries and webhooks
    @router.get("/deliveries", response_model=list[Delivery], dependencies=read, tags=["webhooks"],
                summary="Webhook deliveries, newest first, with attempts and status")
    def deliveries(request: Request, status: str | None = Query(None, pattern="^(pending|delivered|dead)$"),
                   endpoint_id: str | None = Query(None, max_length=200), lead: str | None = Query(None, max_length=500),
                   limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
        rows = call(outbox.list_deliveries, request.app.state.store, status=status, endpoint_id=endpoint_id,
                    lead_id=lead, limit=limit)
        return [{k: (_iso(v) if k.endswith("_at") else v) for k, v in r.items()} for r in rows]

    @router.post("/deliveries/replay", response_model=ReplayResult, dependencies=admin, tags=["webhooks"],
                 summary="Send dead (or, with include_delivered, delivered) deliveries again")
    def replay(body: ReplayRequest, request: Request) -> dict:
        try:
            n = outbox.replay(request.app.state.store, now=now_utc(), message_ids=body.message_ids,
                              endpoint_id=body.endpoint_id, all_dead=body.all_dead, include_delivered=body.include_delivered)
        except outbox.OutboxError as exc:
            raise _outbox_error(exc) from None
        return {"replayed": n}

    @router.get("/webhooks", response_model=list[WebhookOut], dependencies=admin, tags=["webhooks"],
                summary="Webhook endpoints (never their secrets)")
    def endpoints(request: Request) -> list[dict]:
        return [_endpoint_out(ep) for ep in webhooks.list_endpoints(request.app.state.store)]

    @router.post("/webhooks", status_code=201, response_model=WebhookCreated, dependencies=admin, tags=["webhooks"],
                 summary="Add a webhook endpoint; its signing secret is shown once")
    def add_webhook(body: WebhookIn, request: Request) -> dict:
        try:
            ep = webhooks.add_endpoint(request.app.state.store, body.url, now=now_utc(), event_types=body.event_types,
                                       description=body.description, allow_private=body.allow_private)
        except outbox.OutboxError as exc:
            raise _outbox_error(exc) from None
        return {**_endpoint_out(ep), "secret": ep.secret}

    @router.delete("/webhooks/{endpoint_id}", response_model=WebhookOut, dependencies=admin, tags=["webhooks"],
                   responses=NOT_FOUND, summary="Remove a webhook endpoint and its deliveries")
    def remove_webhook(endpoint_id: str, request: Request) -> dict:
        store = request.app.state.store
        try:
            ep = webhooks.get_endpoint(store, _check_id(endpoint_id, "endpoint_id"))
            webhooks.remove_endpoint(store, endpoint_id)
        except outbox.OutboxError:
            raise not_found("webhook endpoint", endpoint_id) from None
        return _endpoint_out(ep)

    # ---- privacy
    @router.delete("/leads/{lead_id}", response_model=Erased, dependencies=admin, tags=["privacy"], responses=NOT_FOUND,
                   summary="Erase a lead: events, traits, anonymous ids, scores, history, alerts and queued deliveries")
    def erase(lead_id: str, request: Request) -> dict:
        _check_id(lead_id, "lead_id")
        _flush_ingestion(request)
        live = getattr(request.app.state, "live", None)
        store = request.app.state.store
        if live is not None:
            with live.lock:  # no re-score may write the lead back while it is erased
                counts = call(api_privacy.erase_lead, store, lead_id)
        else:
            counts = call(api_privacy.erase_lead, store, lead_id)
        if counts is None:
            raise not_found("lead", lead_id)
        return {"lead_id": lead_id, "deleted": counts}

    @router.get("/leads/{lead_id}/export", response_model=LeadExport, dependencies=admin, tags=["privacy"],
                responses=NOT_FOUND, summary="Everything held about one lead, as JSON")
    def export(lead_id: str, request: Request) -> dict:
        _flush_ingestion(request)
        out = call(api_privacy.export_lead, request.app.state.store, _check_id(lead_id, "lead_id"))
        if out is None:
            raise not_found("lead", lead_id)
        return out

    return router


def _flush_ingestion(request: Request) -> None:
    """Erasure and export see every event acknowledged before them: the durable ingestion log is
    applied to the store first (else a logged event of an erased lead would be stored after it)."""
    writer = getattr(request.app.state, "writer", None)
    if writer is not None and not writer.flush():
        raise unavailable("acknowledged events are still being stored; retry shortly", 5)
