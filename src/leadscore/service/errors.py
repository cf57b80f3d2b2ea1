"""The service's JSON errors: ``{"code": ..., "message": ..., "errors"?: [{"loc", "message"}]}``.

The Segment/RudderStack SDKs read ``code`` and ``message``; a 4xx makes them drop the batch, a 429/5xx
makes them retry (honouring ``Retry-After``).
"""
from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors is not None:
            out["errors"] = self.errors
        return out

    def response(self):
        from starlette.responses import Response
        return Response(json.dumps(self.body(), ensure_ascii=False), status_code=self.status,
                        media_type="application/json", headers=self.headers)


def unavailable(message: str, retry_after: int) -> ApiError:
    return ApiError(503, "unavailable", message, headers={"Retry-After": str(retry_after)})
