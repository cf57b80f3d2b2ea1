"""What a CRM client gives the sync worker: push a batch, get one result per item, maybe a pause."""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass
class SyncItem:
    key: str                    # our id for the item (the crm_sync seq), echoed in results
    ident: str                  # the CRM-side identity: e-mail (HubSpot) or record / external id (Salesforce)
    values: dict[str, Any]      # CRM property/field name -> value, already mapped


@dataclass
class ItemResult:
    ok: bool
    retry: bool = False         # a failure worth retrying (5xx, rate limit, lock); False = dead now
    error: str | None = None
    http_status: int | None = None


@dataclass
class PushResult:
    results: dict[str, ItemResult] = field(default_factory=dict)   # key -> result; missing key = not attempted
    pause_seconds: float | None = None     # stop calling this CRM for that long (rate/daily limit)
    pause_reason: str | None = None
    limit_info: str | None = None          # the CRM's usage report (Sforce-Limit-Info, HubSpot headers)


class CrmClient(Protocol):
    max_batch: int

    def prepare(self, now: datetime) -> PushResult | None:
        """One-time set-up (HubSpot: create the properties). A PushResult with a pause = try later."""

    def push(self, items: list[SyncItem], now: datetime) -> PushResult: ...

    def close(self) -> None: ...


def tls_verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx wants an SSLContext for a custom CA file (a path string is deprecated)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def error_text(resp: Any, limit: int = 300) -> str:
    text = resp.text if resp.content else ""
    return f"HTTP {resp.status_code}" + (f": {text[:limit]}" if text else "")
