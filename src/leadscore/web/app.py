"""The dashboard: server-rendered pages (Jinja2, autoescaped) with a little progressive JavaScript.

``install(app)`` (called by ``leadscore.service.app.create_app``) adds the pages under ``/``:
``/leads``, ``/leads/{id}``, ``/videos``, ``/videos/{id}``, ``/model``, ``/alerts``, ``/login``, and
the dashboard's own assets under ``/static/`` (no CDN: everything is served from this package).

What the pages read comes from ``leadscore.service.queries`` (shared with the REST API), the engine's
explanation, the video read helpers and the outbox; what only the dashboard needs lives in
``leadscore.web.video_stats`` and ``leadscore.web.model_view``.

Time: pages show the state *as of now*; "now" is ``app.state.web_clock()`` (the wall clock unless a
test or an embedding sets another), read once per request and passed down as an input.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from leadscore.model.schema import Model
from leadscore.service.queries import NotFound, QueryError
from leadscore.web import charts
from leadscore.web.session import (PageError, Redirect, Sessions, Viewer, csrf_token, require_viewer,
                                   set_csrf_cookie, viewer_for)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "svg"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(charts=charts, tier_colour=charts.tier_colour, mmss=charts.mmss)
    env.filters.update(num=_num, when=_when, urlpart=lambda s: quote(str(s), safe=""), pct=_pct)
    return env


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    text = f"{v:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _pct(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{float(value) * 100:.{digits}f}%"


def _when(value: Any, seconds: bool = False) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


class ModelCache:
    """The active model, parsed once per version (parsing YAML on every page would cost more than
    the lead list's query)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: dict[str, Model] = {}

    def active(self, store) -> Model:
        from leadscore.engine.models_registry import get_model, resolve_model
        rows = store.query("SELECT version FROM models WHERE active")
        if not rows:
            key = "<default>"
            loader = lambda: resolve_model(None, None)  # noqa: E731 - the shipped default model
        else:
            key = rows[0][0]
            loader = lambda: get_model(store, key)  # noqa: E731
        with self._lock:
            model = self._cache.get(key)
        if model is None:
            model = loader()
            with self._lock:
                self._cache[key] = model
        return model


class Web:
    """What the pages share: templates, the model cache and ``render``."""

    def __init__(self):
        self.env = _env()
        self.models = ModelCache()

    def render(self, request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        viewer = getattr(request.state, "viewer", None)
        page = dict(request=request, viewer=viewer, csrf=csrf_token(request), nav=ctx.pop("nav", ""),
                    query=lambda **kw: query_string(request, **kw))
        page.update(ctx)
        html = self.env.get_template(template).render(**page)
        response = HTMLResponse(html, status_code=status_code)
        set_csrf_cookie(request, response)
        response.headers["Cache-Control"] = "no-store"
        return response


def query_string(request: Request, **changes: Any) -> str:
    """The current query with some parameters changed (None removes one): for sort and paging links."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes and k != "key"]
    for k, v in changes.items():
        if v is None or v == "":
            continue
        if isinstance(v, (list, tuple)):
            items += [(k, str(x)) for x in v]
        else:
            items.append((k, str(v)))
    return "?" + urlencode(items) if items else "?"


def web(request: Request) -> Web:
    return request.app.state.web


def now(request: Request) -> datetime:
    return request.app.state.web_clock()


def _security_headers(response: Response) -> None:
    # Scripts only from this server (no page needs inline script); inline style attributes colour legends.
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")


def install(app: FastAPI) -> None:
    from leadscore.web.pages import alerts, lead, leads, login, model, videos

    app.state.web = Web()
    app.state.web_sessions = Sessions()
    if not hasattr(app.state, "web_clock"):
        app.state.web_clock = utc_now

    async def page_error(request: Request, exc: PageError):
        if exc.status == 401 and request.method == "GET":
            return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)
        request.state.viewer = getattr(request.state, "viewer", None)   # set when the viewer was known
        response = app.state.web.render(request, "error.html", status_code=exc.status, message=exc.message, code=exc.status)
        response.headers.update(exc.headers)
        _security_headers(response)
        return response

    async def redirect(request: Request, exc: Redirect):
        return exc.response

    app.add_exception_handler(PageError, page_error)
    app.add_exception_handler(Redirect, redirect)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        if request.url.path.startswith(PAGE_PREFIXES) or request.url.path == "/":
            _security_headers(response)
            # server time of the page (bench/dashboard_bench.py reads it)
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.get("/", include_in_schema=False)
    def home(request: Request):
        viewer = viewer_for(request)
        return RedirectResponse("/leads" if viewer else "/login?next=%2Fleads", status_code=303)

    for module in (login, leads, lead, videos, model, alerts):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="web-static")


PAGE_PREFIXES = ("/leads", "/videos", "/model", "/alerts", "/login", "/logout", "/static")


@contextmanager
def page_errors():
    """Bad parameters and unknown ids from the shared read models become error pages (not JSON)."""
    try:
        yield
    except QueryError as exc:
        raise PageError(422, f"{exc.field}: {exc.message}") from None
    except NotFound as exc:
        raise PageError(404, f"not found: {exc.args[0] if exc.args else ''}") from None


def viewer_dep(request: Request) -> Viewer:
    """The pages' dependency: the logged-in (or demo) viewer, else a redirect to the login page."""
    return require_viewer(request)
