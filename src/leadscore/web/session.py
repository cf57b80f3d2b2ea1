"""Who is looking at the dashboard: a read or admin key, given once (login form or ``?key=``) and then
carried by a session cookie; or nobody, on a ``--demo`` server for loopback clients.

- Sessions are kept in this process (a random id → the key's token); a restart asks people to log in
  again. The token is re-checked against the KeyRing on every request, so revoking a key ends its
  sessions within the ring's refresh interval. The cookie is HttpOnly and SameSite=Lax.
- ``?key=...`` logs in and redirects to the same URL without the key, so it does not stay in the
  address bar, the history or a Referer header.
- CSRF: every state-changing form carries a token equal to the ``ls_csrf`` cookie (double submit; an
  attacker's page can neither read the cookie nor set it), and a cross-site ``Origin`` is refused.
  Written here because the CSRF middlewares on PyPI pull in their own session stacks we do not use.
"""
from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from leadscore.service.auth import ApiKey, is_loopback, tokens_from_headers
from leadscore.store import StoreUnavailable

SESSION_COOKIE = "ls_session"
CSRF_COOKIE = "ls_csrf"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Viewer:
    key: ApiKey | None          # None: a keyless loopback client of a --demo server

    @property
    def demo(self) -> bool:
        return self.key is None

    @property
    def can_admin(self) -> bool:
        return self.key is not None and self.key.may("admin")

    @property
    def label(self) -> str:
        if self.key is None:
            return "demo (read only)"
        return f"{self.key.name} ({self.key.role})"


class PageError(Exception):
    """Raised by a page: rendered as an HTML error page with this status."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Redirect(Exception):
    """Raised by a dependency to answer with a redirect (login, dropping ?key=)."""

    def __init__(self, response: Response):
        super().__init__("redirect")
        self.response = response


class Sessions:
    def __init__(self, max_age: float = SESSION_SECONDS, clock=time.monotonic):
        self.max_age = max_age
        self.clock = clock
        self._map: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            # drop expired ones while here (bounded memory)
            for k in [k for k, (_, t) in self._map.items() if now - t > self.max_age]:
                del self._map[k]
            self._map[sid] = (token, now)
        return sid

    def token(self, sid: str | None) -> str | None:
        if not sid:
            return None
        with self._lock:
            entry = self._map.get(sid)
            if entry is None:
                return None
            if self.clock() - entry[1] > self.max_age:
                del self._map[sid]
                return None
            return entry[0]

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._map.pop(sid, None)


def sessions(request: Request) -> Sessions:
    return request.app.state.web_sessions


def _authenticate(request: Request, token: str) -> ApiKey:
    state = request.app.state
    try:
        key = state.keys.authenticate(token)
    except StoreUnavailable as exc:
        raise PageError(503, f"the store is unavailable: {exc}", {"Retry-After": "1"}) from None
    if key is None:
        raise PageError(401, "unknown or revoked key")
    if not key.may("read"):
        raise PageError(403, f"a {key.role} key cannot read the dashboard; use a read or admin key")
    return key


def _rate(request: Request, key: ApiKey) -> None:
    wait = request.app.state.keys.wait_for(key)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise PageError(429, f"key {key.key_id} is over its rate limit; retry in {seconds} s",
                        {"Retry-After": str(seconds)})


def _without_key(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
    return request.url.path + ("?" + urlencode(query) if query else "")


def cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def login_response(request: Request, token: str, target: str) -> Response:
    sid = sessions(request).create(token)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, sid, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                        secure=cookie_secure(request), path="/")
    return response


def viewer_for(request: Request) -> Viewer | None:
    """The viewer, or None when nobody is logged in (and this is not a demo loopback client)."""
    key_param = request.query_params.get("key")
    if key_param:
        _authenticate(request, key_param)
        raise Redirect(login_response(request, key_param, _without_key(request)))
    try:
        token = tokens_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
    except ValueError as exc:
        raise PageError(401, str(exc)) from None
    if token is None:
        token = sessions(request).token(request.cookies.get(SESSION_COOKIE))
    if token is not None:
        key = _authenticate(request, token)
        _rate(request, key)
        return Viewer(key)
    client = request.client.host if request.client else None
    if request.app.state.settings.demo and is_loopback(client):
        return Viewer(None)
    return None


def require_viewer(request: Request) -> Viewer:
    """FastAPI dependency for pages: the viewer, or a redirect to the login page."""
    viewer = viewer_for(request)
    if viewer is None:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise Redirect(RedirectResponse("/login?" + urlencode({"next": target}), status_code=303))
        raise PageError(401, "log in with a read or admin key first")
    request.state.viewer = viewer
    return viewer


def safe_next(target: str | None) -> str:
    """Only local paths: never redirect off-site after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/leads"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/leads"
    return target


# ------------------------------------------------------------------------------------------ CSRF
def csrf_token(request: Request) -> str:
    """The token forms must carry; a fresh one is remembered on request.state and set as a cookie."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) < 20:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=cookie_secure(request), path="/")


def check_csrf(request: Request, form_token: str | None) -> None:
    """Refuse a state-changing request without the CSRF token or from another origin."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise PageError(403, f"cross-site request refused (Origin {origin} is not this dashboard)")
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not form_token or not hmac.compare_digest(cookie, form_token):
        raise PageError(403, "the form's CSRF token is missing or wrong: reload the page and try again")


def require_admin(viewer: Viewer) -> None:
    if not viewer.can_admin:
        raise PageError(403, "this needs an admin key: log in with one to change models or replay deliveries")
