"""HubSpot CRM v3: create the leadscore contact properties, then batch-upsert contacts by e-mail.

Plain httpx against the documented endpoints (the official client adds nothing we need and would
hide the rate-limit headers). ``≤100`` inputs a call, every property value a string; a 207 retries
only the failed inputs (matched through ``objectWriteTraceId``); 429 pauses per the rate-limit headers
and ``policyName`` (daily: until the next UTC midnight); 5xx retries.
"""
from __future__ import annotations

import ssl
from datetime import datetime, timedelta
from typing import Any

import httpx

from leadscore.service.crm.base import ItemResult, PushResult, SyncItem, error_text, tls_verify
from leadscore.service.crm.mapping import HUBSPOT_DEFAULT, FieldMapping, hubspot_property_definitions

BASE_URL = "https://api.hubapi.com"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
PROPERTIES_PATH = "/crm/v3/properties/contacts"


class CrmSetupError(RuntimeError):
    """The CRM refused the set-up (e.g. a property definition); the message says what it answered."""


class HubSpotClient:
    max_batch = 100
    strings = True

    def __init__(self, token: str, *, base_url: str = BASE_URL, mapping: FieldMapping | None = None,
                 id_property: str = "email", property_group: str = "contactinformation", timeout: float = 30.0,
                 verify: bool | str | ssl.SSLContext = True, transport: httpx.BaseTransport | None = None):
        if not token:
            raise CrmSetupError("HubSpot: no private app token")
        self.mapping = mapping or FieldMapping(dict(HUBSPOT_DEFAULT))
        self.id_property = id_property
        self.property_group = property_group
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, verify=tls_verify(verify),
                                  transport=transport, trust_env=False, follow_redirects=False,
                                  headers={"authorization": f"Bearer {token}", "content-type": "application/json"})

    def close(self) -> None:
        self._http.close()

    # -- properties
    def prepare(self, now: datetime) -> PushResult | None:
        for body in hubspot_property_definitions(self.mapping, self.property_group):
            try:
                resp = self._http.post(PROPERTIES_PATH, json=body)
            except httpx.HTTPError as exc:
                return PushResult(pause_seconds=30, pause_reason=f"creating property {body['name']}: {type(exc).__name__}: {exc}")
            if resp.status_code in (200, 201, 409):  # 409: it exists already
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                seconds = self._rate_pause(resp, now) if resp.status_code == 429 else 30
                return PushResult(pause_seconds=seconds, pause_reason=f"creating property {body['name']}: {error_text(resp)}")
            raise CrmSetupError(f"HubSpot refused property {body['name']}: {error_text(resp)}")
        return None

    # -- contacts
    def push(self, items: list[SyncItem], now: datetime) -> PushResult:
        out = PushResult()
        for start in range(0, len(items), self.max_batch):
            part = self._push_chunk(items[start:start + self.max_batch], now)
            out.results.update(part.results)
            out.limit_info = part.limit_info or out.limit_info
            if part.pause_seconds is not None:
                out.pause_seconds, out.pause_reason = part.pause_seconds, part.pause_reason
                break  # the rest are not attempted
        return out

    def _push_chunk(self, items: list[SyncItem], now: datetime) -> PushResult:
        body = {"inputs": [{"idProperty": self.id_property, "id": it.ident, "objectWriteTraceId": it.key,
                            "properties": {k: str(v) for k, v in it.values.items()}} for it in items]}
        try:
            resp = self._http.post(UPSERT_PATH, json=body)
        except httpx.HTTPError as exc:
            err = f"{type(exc).__name__}: {exc}"
            return PushResult({it.key: ItemResult(False, True, err) for it in items})
        code = resp.status_code
        info = self._limit_info(resp)
        if code in (200, 201):
            out = PushResult({it.key: ItemResult(True, http_status=code) for it in items}, limit_info=info)
            if resp.headers.get("x-hubspot-ratelimit-remaining") == "0":
                out.pause_seconds = self._interval(resp, 10.0)
                out.pause_reason = "rate limit window used up"
            return out
        if code == 207:
            return self._partial(items, resp, info)
        if code == 429:
            return PushResult({}, pause_seconds=self._rate_pause(resp, now), pause_reason=error_text(resp), limit_info=info)
        err = error_text(resp)
        retry = code >= 500 or code in (401, 403, 408)  # auth may be fixed by an admin; others are our bug
        return PushResult({it.key: ItemResult(False, retry, err, code) for it in items}, limit_info=info)

    def _partial(self, items: list[SyncItem], resp: httpx.Response, info: str | None) -> PushResult:
        data = _json(resp)
        by_key = {it.key: it for it in items}
        by_ident = {it.ident.lower(): it.key for it in items}
        failed: dict[str, str] = {}
        unmatched = False
        for err in data.get("errors") or []:
            message = f"{err.get('category', 'ERROR')}: {err.get('message', '')}".strip()
            hit = False
            for values in (err.get("context") or {}).values():
                for v in values if isinstance(values, list) else [values]:
                    key = v if v in by_key else by_ident.get(str(v).lower())
                    if key:
                        failed[key] = message
                        hit = True
            unmatched |= not hit
        if unmatched:  # an error we cannot pin on an input: retry every input not seen to succeed
            done = set()
            for r in data.get("results") or []:
                props = r.get("properties") or {}
                ident = str(props.get(self.id_property, "")).lower()
                if ident in by_ident:
                    done.add(by_ident[ident])
            for it in items:
                if it.key not in done:
                    failed.setdefault(it.key, "failed in a partial batch (the error named no input)")
        results = {it.key: (ItemResult(False, True, failed[it.key], 207) if it.key in failed else ItemResult(True, http_status=207))
                   for it in items}
        return PushResult(results, limit_info=info)

    # -- rate limits
    @staticmethod
    def _interval(resp: httpx.Response, default: float) -> float:
        try:
            return float(resp.headers["x-hubspot-ratelimit-interval-milliseconds"]) / 1000.0
        except (KeyError, ValueError):
            return default

    def _rate_pause(self, resp: httpx.Response, now: datetime) -> float:
        policy = str(_json(resp).get("policyName") or "").upper()
        if "DAILY" in policy or resp.headers.get("x-hubspot-ratelimit-daily-remaining") == "0":
            midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            return max(60.0, (midnight - now).total_seconds())
        try:
            retry_after = float(resp.headers["retry-after"])
        except (KeyError, ValueError):
            retry_after = 0.0
        return max(self._interval(resp, 10.0), retry_after, 1.0)

    @staticmethod
    def _limit_info(resp: httpx.Response) -> str | None:
        keys = ("max", "remaining", "interval-milliseconds", "daily", "daily-remaining")
        got = {k: resp.headers.get(f"x-hubspot-ratelimit-{k}") for k in keys}
        return ", ".join(f"{k}={v}" for k, v in got.items() if v is not None) or None


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
