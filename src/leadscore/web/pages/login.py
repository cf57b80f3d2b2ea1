"""Log in with a read or admin key (the key is kept server-side behind a session cookie); log out."""
from __future__ import annotations

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse

from leadscore.web.app import web
from leadscore.web.session import (SESSION_COOKIE, PageError, _authenticate, check_csrf, login_response,
                                   safe_next, sessions, viewer_for)

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page(request: Request, next: str = "/leads"):
    viewer = viewer_for(request)
    request.state.viewer = viewer
    return web(request).render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
def login(request: Request, key: str = Form(""), next: str = Form("/leads"), csrf: str = Form("")):
    check_csrf(request, csrf)
    request.state.viewer = None
    token = key.strip()
    if not token:
        return web(request).render(request, "login.html", status_code=401, next=safe_next(next), error="Enter a key.")
    try:
        _authenticate(request, token)
    except PageError as exc:
        return web(request).render(request, "login.html", status_code=exc.status, next=safe_next(next), error=exc.message)
    return login_response(request, token, safe_next(next))


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")):
    check_csrf(request, csrf)
    sessions(request).drop(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
