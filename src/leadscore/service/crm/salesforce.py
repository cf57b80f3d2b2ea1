"""Salesforce REST: Lead custom fields through sObject Collections (``≤200`` records a request).

``PATCH /services/data/v60.0/composite/sobjects`` with ``allOrNone: false`` (records by Id), or
``…/composite/sobjects/Lead/<External_Id__c>`` (records by an external id). Results come back per
record in request order. 401 ``INVALID_SESSION_ID`` → the ``refresh`` callback gives a new access
token and the request is sent once more; 403 ``REQUEST_LIMIT_EXCEEDED`` → stop and wait; 400 → no
retry; 5xx → retry. Plain httpx (simple-salesforce is requests-based and adds nothing here).
"""
from __future__ import annotations

import ssl
from datetime import datetime
from typing import Any, Callable

import httpx

from leadscore.service.crm.base import ItemResult, PushResult, SyncItem, error_text, tls_verify
from leadscore.service.crm.hubspot import CrmSetupError
from leadscore.service.crm.mapping import SALESFORCE_DEFAULT, FieldMapping

# Per-record error codes that may succeed on a later try; any other per-record error is final.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG", "QUERY_TIMEOUT",
                             "REQUEST_LIMIT_EXCEEDED", "TOO_MANY_ENUM_VALUE"})


class SalesforceClient:
    max_batch = 200
    strings = False

    def __init__(self, instance_url: str, token: str, *, mapping: FieldMapping | None = None, version: str = "60.0",
                 sobject: str = "Lead", external_id_field: str | None = None,
                 refresh: Callable[[], str] | None = None, limit_pause: float = 3600.0, timeout: float = 30.0,
                 verify: bool | str | ssl.SSLContext = True, transport: httpx.BaseTransport | None = None):
        if not token and refresh is None:
            raise CrmSetupError("Salesforce: no access token and no refresh callback")
        self.mapping = mapping or FieldMapping(dict(SALESFORCE_DEFAULT))
        self.version = version
        self.sobject = sobject
        self.external_id_field = external_id_field
        self.refresh = refresh
        self.limit_pause = limit_pause
        self.token = token or (refresh() if refresh else "")
        self._http = httpx.Client(base_url=instance_url.rstrip("/"), timeout=timeout, verify=tls_verify(verify),
                                  transport=transport, trust_env=False, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def prepare(self, now: datetime) -> PushResult | None:
        return None  # custom fields are created by the Salesforce admin (metadata API is out of scope)

    @property
    def path(self) -> str:
        base = f"/services/data/v{self.version}/composite/sobjects"
        return f"{base}/{self.sobject}/{self.external_id_field}" if self.external_id_field else base

    def push(self, items: list[SyncItem], now: datetime) -> PushResult:
        out = PushResult()
        for start in range(0, len(items), self.max_batch):
            part = self._push_chunk(items[start:start + self.max_batch])
            out.results.update(part.results)
            out.limit_info = part.limit_info or out.limit_info
            if part.pause_seconds is not None:
                out.pause_seconds, out.pause_reason = part.pause_seconds, part.pause_reason
                break
        return out

    def _record(self, item: SyncItem) -> dict[str, Any]:
        rec: dict[str, Any] = {"attributes": {"type": self.sobject}}
        rec[self.external_id_field or "id"] = item.ident
        rec.update(item.values)
        return rec

    def _send(self, body: dict[str, Any]) -> httpx.Response:
        resp = self._http.patch(self.path, json=body, headers={"authorization": f"Bearer {self.token}"})
        if resp.status_code == 401 and self.refresh is not None:
            try:
                self.token = self.refresh()  # INVALID_SESSION_ID: the access token expired
            except CrmSetupError:
                return resp  # the refresh failed too: this 401 is the answer (retried later)
            resp = self._http.patch(self.path, json=body, headers={"authorization": f"Bearer {self.token}"})
        return resp

    def _push_chunk(self, items: list[SyncItem]) -> PushResult:
        body = {"allOrNone": False, "records": [self._record(it) for it in items]}
        try:
            resp = self._send(body)
        except httpx.HTTPError as exc:
            err = f"{type(exc).__name__}: {exc}"
            return PushResult({it.key: ItemResult(False, True, err) for it in items})
        code = resp.status_code
        info = resp.headers.get("sforce-limit-info")
        codes = _error_codes(resp)
        if code == 200:
            data = _json(resp)
            results: dict[str, ItemResult] = {}
            for i, it in enumerate(items):
                rec = data[i] if isinstance(data, list) and i < len(data) and isinstance(data[i], dict) else None
                if rec is None:
                    results[it.key] = ItemResult(False, True, "no result for this record in the response", code)
                elif rec.get("success"):
                    results[it.key] = ItemResult(True, http_status=code)
                else:
                    errs = rec.get("errors") or []
                    text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" + (f" ({', '.join(e.get('fields') or [])})" if e.get("fields") else "")
                                     for e in errs if isinstance(e, dict)) or "failed"
                    retry = any(isinstance(e, dict) and e.get("statusCode") in RETRYABLE_CODES for e in errs)
                    results[it.key] = ItemResult(False, retry, text, code)
            return PushResult(results, limit_info=info)
        if code == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
            return PushResult({}, pause_seconds=self.limit_pause, pause_reason=error_text(resp), limit_info=info)
        err = error_text(resp)
        if code == 400:
            retry = False  # the request itself is wrong: sending it again cannot help
        else:
            retry = code >= 500 or code in (401, 403, 408, 429)
        return PushResult({it.key: ItemResult(False, retry, err, code) for it in items}, limit_info=info)


LOGIN_TOKEN_URL = "https://login.salesforce.com/services/oauth2/token"


def oauth_refresher(client_id: str, refresh_token: str, *, client_secret: str | None = None,
                    token_url: str = LOGIN_TOKEN_URL, verify: bool | str | ssl.SSLContext = True,
                    timeout: float = 30.0) -> Callable[[], str]:
    """A ``refresh`` callback: the OAuth 2.0 refresh-token flow (``grant_type=refresh_token``)."""
    def refresh() -> str:
        form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": refresh_token}
        if client_secret:
            form["client_secret"] = client_secret
        with httpx.Client(timeout=timeout, verify=tls_verify(verify), trust_env=False) as http:
            resp = http.post(token_url, data=form)
        data = _json(resp)
        if resp.status_code != 200 or not isinstance(data, dict) or not data.get("access_token"):
            raise CrmSetupError(f"Salesforce token refresh failed: {error_text(resp)}")
        return str(data["access_token"])
    return refresh


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _error_codes(resp: httpx.Response) -> set[str]:
    data = _json(resp)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return set()
    return {str(e.get("errorCode")) for e in data if isinstance(e, dict) and e.get("errorCode")}
