"""The HTTP service: ``create_app(store, settings)`` builds the FastAPI application.

What it holds (``app.state``): ``store``, ``settings``, ``keys`` (the KeyRing), ``writer`` (group
commit, over the durable ingestion log when ``settings.ingest_log`` names one), ``ingest_process``
(the separate ingestion process `leadscore serve` runs, or None) and ``after_ingest`` (a list of
callables, each called with every committed ``IngestResult`` from a background thread: live scoring
attaches here).

Extending it, without editing this file:
- pass ``routers=[...]`` (APIRouters) to ``create_app``, or call ``app.include_router`` afterwards;
- or give ``installers=["module.name", ...]``: each module's ``install(app)`` is called; by default the
  modules named in ``INSTALLERS`` are installed when they exist (the REST API, live scoring,
  the outbox/webhooks and the dashboard), so adding one of those files is enough to plug it in.
Paths taken here: ``/v1/*`` (ingestion), ``/api/keys`` (admin), ``/tracker/*`` (static tracker),
``/healthz``. ``/api/...`` and ``/`` are left to the REST API and the dashboard.
"""
from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

from leadscore.service import ingest_api, keys_api
from leadscore.service.auth import KeyRing
from leadscore.service.errors import ApiError
from leadscore.service.ingest_api import _Inflight
from leadscore.service.ingest_log import IngestLog, ingest_log_path
from leadscore.service.settings import Settings
from leadscore.service.writer import GroupCommitWriter
from leadscore.store import IngestResult, Store

if TYPE_CHECKING:
    from leadscore.service.frontend import IngestProcess

log = logging.getLogger("leadscore.service")

#: Modules whose ``install(app: FastAPI) -> None`` is called when they can be imported, in order.
INSTALLERS: tuple[str, ...] = (
    "leadscore.service.api",        # REST API under /api
    "leadscore.service.live",       # live scoring: appends to app.state.after_ingest, starts schedulers
    "leadscore.service.delivery",   # webhook and CRM sync delivery workers (outbox → the world)
    "leadscore.web.app",            # dashboard at /
)


class _PathCORS:
    """CORS for the tracking API only: browser trackers post to /v1/* from customers' sites, while
    the REST API and dashboard keep the same-origin policy."""

    def __init__(self, app, prefixes: tuple[str, ...], origins: Sequence[str]):
        self.app = app
        self.prefixes = prefixes
        self.cors = CORSMiddleware(app, allow_origins=list(origins), allow_methods=["POST", "OPTIONS"],
                                   allow_headers=["*"], max_age=86400)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            return await self.cors(scope, receive, send)
        return await self.app(scope, receive, send)


class _IngestFastPath:
    """POST /v1/{kind} straight to the ingestion endpoint, past routing and the middleware that sits
    inside this one (CORS, exceptions, body limit, exit stack): about a fifth of a /v1/track request's
    CPU in the event loop's thread (py-spy, bench/ingest_bench.py). ``ingest_api.handle`` reads the
    request and answers every error itself. Browser requests (an Origin header) go the usual way, for CORS."""

    _KINDS = frozenset(ingest_api.SINGLE_TYPES + ("batch", "import"))

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            kind = scope["path"][4:]
            if kind in self._KINDS and not any(name == b"origin" for name, _ in scope["headers"]):
                response = await ingest_api.handle(Request(scope, receive), kind)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _install(app: FastAPI, names: Iterable[str]) -> None:
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # not written (yet): nothing to install
            raise
        install = getattr(module, "install", None)
        if install is not None:
            install(app)


def create_app(store: Store, settings: Settings | None = None, *, routers: Sequence = (),
               installers: Iterable[str] | None = None,
               after_ingest: Iterable[Callable[[IngestResult], None]] = (),
               ingest_process: "IngestProcess | None" = None) -> FastAPI:
    """The service over ``store``. ``installers=None`` means ``INSTALLERS``; pass ``()`` for none.

    ``ingest_process`` (what `leadscore serve` passes, service/frontend.py): /v1/* is answered by a
    separate ingestion process, which appends to the log; this app applies the log and serves the
    rest, over the process's private socket. Without it everything runs in this process."""
    settings = settings or Settings()
    hooks: list[Callable[[IngestResult], None]] = list(after_ingest)
    log_path = ingest_log_path(settings, store)
    if ingest_process is not None and log_path is None:
        raise ValueError("an ingestion process needs the durable ingestion log (settings.ingest_log)")
    ingest_log = IngestLog(log_path) if log_path is not None else None
    writer = GroupCommitWriter(store, hooks, settings.max_pending_events, settings.max_group_events,
                               log=ingest_log, decode=ingest_api.log_decoder(settings),
                               apply_interval=settings.apply_interval_seconds,
                               appender=ingest_process is None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.keys.reload()
        writer.start()
        for start in list(app.state.on_start):
            start(app)
        try:
            yield
        finally:
            for stop in list(app.state.on_stop):
                try:
                    stop(app)
                except Exception:  # noqa: BLE001 - stop the writer whatever happens
                    log.exception("shutdown hook %r failed", stop)
            writer.stop()
            if ingest_log is not None:
                ingest_log.close()

    app = FastAPI(title="leadscore", summary="Explainable lead scoring: Segment-compatible ingestion and the REST API",
                  version=_version(), lifespan=lifespan,
                  # FastAPI's native OpenTelemetry hooks read the environment on every request (~5% of a
                  # /v1/track request's CPU); leadscore exports no traces, so they are off.
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.store = store
    app.state.settings = settings
    app.state.keys = KeyRing(store, settings)
    app.state.writer = writer
    app.state.after_ingest = hooks            # the writer reads this very list
    app.state.on_start = []                   # callables(app) run at startup, after the writer starts
    app.state.on_stop = []                    # callables(app) run at shutdown, before the writer drains
    app.state.ingest_inflight = _Inflight(settings.max_inflight_bytes)
    app.state.ingest_process = ingest_process
    if ingest_process is not None:
        # first to start (right after the writer has queued the log's replay) and first to stop
        # (before anything drains), so ingestion is answered as long as possible
        app.state.on_start.append(ingest_process.start)
        app.state.on_stop.append(ingest_process.stop)

    _error_handlers(app)
    app.add_middleware(_PathCORS, prefixes=("/v1/",), origins=settings.cors_origins)
    app.add_middleware(_IngestFastPath)   # added last: the outermost of ours
    if ingest_process is not None:
        from leadscore.service.frontend import ForwardedClient
        app.add_middleware(ForwardedClient)

    app.include_router(ingest_api.build_router())
    app.include_router(keys_api.build_router())

    @app.get("/healthz", tags=["service"], summary="Liveness and write-queue depth")
    def healthz() -> dict:
        return {"status": "ok", **writer.stats()}

    # Before any extension: routes match in order, and a dashboard mounted at "/" would hide it.
    app.mount("/tracker", StaticFiles(directory=settings.tracker_dir, check_dir=False), name="tracker")
    for router in routers:
        app.include_router(router)
    _install(app, INSTALLERS if installers is None else installers)
    _openapi_extras(app)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("leadscore")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                409: "conflict", 413: "request_too_large", 415: "unsupported_media_type",
                429: "rate_limited"}.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"code": code, "message": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [{"loc": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                   "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
        message = "; ".join(f"{e['loc']}: {e['message']}" for e in errors[:20])
        return JSONResponse({"code": "invalid_request", "message": message, "errors": errors}, status_code=422)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    app.add_exception_handler(StarletteHTTPException, http_error)


def _openapi_extras(app: FastAPI) -> None:
    """Declare the Error schema and the security schemes in the OpenAPI document."""
    build = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "errors": {"type": "array", "items": {"type": "object", "properties": {
                               "loc": {"type": "string"}, "message": {"type": "string"}}}}}}
        components.setdefault("securitySchemes", {}).update({
            "writeKeyBasic": {"type": "http", "scheme": "basic", "description": "write key as user name, empty password"},
            "apiKeyBearer": {"type": "http", "scheme": "bearer", "description": "an admin, read or write key"},
        })
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
