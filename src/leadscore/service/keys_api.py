"""Admin endpoints for API keys: create (the token is shown once), list, revoke."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from leadscore.service.auth import KeyError_, require
from leadscore.service.errors import ApiError


class KeyCreate(BaseModel):
    role: Literal["admin", "read", "write"]
    name: str = Field("", max_length=200)
    rate_limit: float | None = Field(None, gt=0, le=1e6, description="requests per second (default by role)")
    burst: float | None = Field(None, gt=0, le=1e7, description="bucket size (default: rate_limit or by role)")


class KeyOut(BaseModel):
    key_id: str
    name: str
    role: str
    prefix: str
    rate_limit: float | None
    burst: float | None
    created_at: str
    revoked_at: str | None


class KeyCreated(BaseModel):
    key: KeyOut
    token: str = Field(description="the secret; shown only in this response")


def build_router() -> APIRouter:
    router = APIRouter(prefix="/api/keys", tags=["keys"], dependencies=[Depends(require("admin"))])

    @router.post("", status_code=201, response_model=KeyCreated, summary="Create a key (token shown once)")
    def create(body: KeyCreate, request: Request) -> KeyCreated:
        new = request.app.state.keys.create(body.role, datetime.now(timezone.utc).replace(tzinfo=None),
                                            name=body.name, rate_limit=body.rate_limit, burst=body.burst)
        return KeyCreated(key=KeyOut(**new.key.public()), token=new.token)

    @router.get("", response_model=list[KeyOut], summary="List keys (never their secrets)")
    def listing(request: Request) -> list[KeyOut]:
        from leadscore.service.auth import list_keys
        return [KeyOut(**k.public()) for k in list_keys(request.app.state.store)]

    @router.delete("/{key_id}", response_model=KeyOut, summary="Revoke a key (applies at once)")
    def revoke(key_id: str, request: Request) -> KeyOut:
        try:
            key = request.app.state.keys.revoke(key_id, datetime.now(timezone.utc).replace(tzinfo=None))
        except KeyError_ as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        return KeyOut(**key.public())

    return router
