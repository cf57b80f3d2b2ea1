"""Outbound webhooks (Standard Webhooks): endpoints, signing, the SSRF guard and the delivery worker.

Delivery rules (../shared/specs/CRM.md): 2xx delivered; 3xx a failure (never followed); 410 disables
the endpoint; 429/503 ``retry-after`` honoured (the endpoint pauses); timeouts and other errors retry on
the Standard Webhooks schedule with jitter, then the delivery is dead (and the endpoint disabled if
nothing reached it since). Per (endpoint, lead) order: a later alert waits while an earlier one for the
same lead and endpoint is pending. ``webhook-id`` is the message id, the same on every attempt.
"""
from __future__ import annotations

import base64
import binascii
import email.utils
import ipaddress
import logging
import random
import re
import secrets as _secrets
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from leadscore.service.outbox import MAX_ATTEMPTS, OutboxError, Sql, later, marks, retry_delay, session, utc_naive
from leadscore.service.crm.base import tls_verify
from leadscore.store import Store

log = logging.getLogger("leadscore.webhooks")

_TYPE_RE = re.compile(r"^[a-zA-Z0-9_]+(\.[a-zA-Z0-9_]+)+$")
USER_AGENT = "leadscore-webhooks/0.1"
MAX_RETRY_AFTER = 24 * 3600


class UnsafeTarget(OutboxError):
    """The URL points at a private/internal address and private targets are not allowed."""


# ---------------------------------------------------------------------------------------- endpoints
@dataclass
class Endpoint:
    endpoint_id: str
    url: str
    secret: str
    event_types: list[str] | None
    description: str | None
    enabled: bool
    allow_private: bool
    disabled_reason: str | None
    paused_until: datetime | None
    created_at: datetime


def generate_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes, as Standard Webhooks shows secrets."""
    return "whsec_" + base64.b64encode(_secrets.token_bytes(32)).decode()


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise OutboxError("secret: must look like whsec_<base64 of 24-64 random bytes>")
    try:
        raw = base64.b64decode(secret[6:], validate=True)
    except binascii.Error as exc:
        raise OutboxError(f"secret: the part after whsec_ is not base64 ({exc})") from exc
    if not 24 <= len(raw) <= 64:
        raise OutboxError(f"secret: decodes to {len(raw)} bytes; Standard Webhooks wants 24 to 64")


def _blocked_reason(addr: str) -> str | None:
    ip = ipaddress.ip_address(addr.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return f"{ip} is a private/internal address"
    return None


def resolve_checked(host: str, port: int, allow_private: bool) -> list[str]:
    """Addresses of host; raises ``UnsafeTarget`` if any is private/internal and that is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
    addrs = list(dict.fromkeys(info[4][0] for info in infos))
    addrs.sort(key=lambda a: ":" in a)  # IPv4 first: connect where most receivers listen
    if not allow_private:
        for addr in addrs:
            reason = _blocked_reason(addr)
            if reason:
                raise UnsafeTarget(f"refusing to send to {host}: {reason} (allow_private is off)")
    return addrs


def _check_url(url: str, allow_private: bool) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboxError(f"url: {url!r} is not an http(s) URL with a host")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: checked when resolved, at every delivery
    reason = None if allow_private else _blocked_reason(str(literal))
    if reason:
        raise UnsafeTarget(f"url: refusing {url}: {reason}; pass allow_private=True for a trusted internal receiver")


def add_endpoint(target: Any, url: str, *, now: datetime, secret: str | None = None,
                 event_types: Sequence[str] | None = None, description: str | None = None,
                 allow_private: bool = False, endpoint_id: str | None = None) -> Endpoint:
    """Register a webhook endpoint; returns it (with its secret, generated if not given)."""
    now = utc_naive(now)
    _check_url(url, allow_private)
    secret = secret or generate_secret()
    _check_secret(secret)
    types = None
    if event_types:
        types = list(dict.fromkeys(event_types))
        for i, t in enumerate(types):
            if not isinstance(t, str) or not _TYPE_RE.match(t):
                raise OutboxError(f"event_types[{i}]: {t!r} is not a dot-separated event type like 'lead.became_hot'")
    endpoint_id = endpoint_id or "ep_" + uuid.uuid4().hex[:16]
    with session(target) as db:
        if db.rows("SELECT 1 FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,)):
            raise OutboxError(f"endpoint_id: {endpoint_id} already exists")
        db.run("INSERT INTO webhook_endpoints (endpoint_id, url, secret, event_types, description, enabled, allow_private, created_at) "
               "VALUES (?, ?, ?, ?, ?, TRUE, ?, ?)",
               (endpoint_id, url, secret, ",".join(types) if types else None, description, bool(allow_private), now))
    return Endpoint(endpoint_id, url, secret, types, description, True, bool(allow_private), None, None, now)


_EP_COLS = "endpoint_id, url, secret, event_types, description, enabled, allow_private, disabled_reason, paused_until, created_at"


def _endpoint(row: tuple) -> Endpoint:
    r = list(row)
    r[3] = r[3].split(",") if r[3] else None
    return Endpoint(*r)


def list_endpoints(store: Any) -> list[Endpoint]:
    with session(store) as db:
        return [_endpoint(r) for r in db.rows(f"SELECT {_EP_COLS} FROM webhook_endpoints ORDER BY created_at, endpoint_id")]


def get_endpoint(store: Any, endpoint_id: str) -> Endpoint:
    with session(store) as db:
        rows = db.rows(f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,))
    if not rows:
        raise OutboxError(f"endpoint_id: no endpoint {endpoint_id}")
    return _endpoint(rows[0])


def set_endpoint_enabled(target: Any, endpoint_id: str, enabled: bool, reason: str | None = None) -> None:
    with session(target) as db:
        if not db.rows("SELECT 1 FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,)):
            raise OutboxError(f"endpoint_id: no endpoint {endpoint_id}")
        db.run("UPDATE webhook_endpoints SET enabled = ?, disabled_reason = ?, paused_until = NULL WHERE endpoint_id = ?",
               (bool(enabled), None if enabled else (reason or "disabled by an admin"), endpoint_id))


def remove_endpoint(target: Any, endpoint_id: str) -> int:
    """Delete an endpoint and its deliveries (the messages stay). Returns how many pending were dropped."""
    with session(target) as db:
        if not db.rows("SELECT 1 FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,)):
            raise OutboxError(f"endpoint_id: no endpoint {endpoint_id}")
        pending = db.rows("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ? AND status = 'pending'", (endpoint_id,))[0][0]
        db.run("DELETE FROM webhook_attempts WHERE endpoint_id = ?", (endpoint_id,))
        db.run("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,))
        db.run("DELETE FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,))
    return int(pending)


# ------------------------------------------------------------------------------------------ signing
def sign_headers(secret: str, message_id: str, body: str, unix_ts: float) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (signature from the standardwebhooks package)."""
    when = datetime.fromtimestamp(int(unix_ts), tz=timezone.utc)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(unix_ts)),
        "webhook-signature": Webhook(secret).sign(message_id, when, body),
    }


# ------------------------------------------------------------------------------------------- worker
@dataclass
class _Job:
    seq: int
    endpoint_id: str
    message_id: str
    body: str
    url: str
    secret: str
    allow_private: bool
    attempts: int


@dataclass
class _Outcome:
    kind: str                    # delivered | failed | gone | blocked
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    trip: bool = False           # the endpoint looks down: try it no more in this run


@dataclass
class RunReport:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    blocked: int = 0
    disabled_endpoints: list[str] = field(default_factory=list)


def _parse_retry_after(value: str | None, wall: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - wall
    if seconds != seconds:
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


class WebhookWorker:
    """Delivers pending webhook deliveries. ``run_once(now)`` sends everything due at ``now``.

    ``now`` drives scheduling (what is due, when to retry). The ``webhook-timestamp`` header is the
    attempt's wall-clock time from ``clock`` (receivers compare it with their own clock, ±5 minutes).
    """

    def __init__(self, store: Store, *, allow_private: bool = False, timeout: float = 15.0, concurrency: int = 4,
                 batch_size: int = 200, max_rounds: int = 1000, lease_seconds: float = 120.0,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time,
                 verify: bool | str | ssl.SSLContext = True, transport: httpx.BaseTransport | None = None):
        self.store = store
        self.allow_private = allow_private
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.batch_size = batch_size
        self.max_rounds = max_rounds
        self.lease_seconds = lease_seconds
        self.rng = rng or random.Random()
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport, trust_env=False,
                                    verify=tls_verify(verify),
                                    headers={"user-agent": USER_AGENT})
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook") if self.concurrency > 1 else None

    def close(self) -> None:
        self._client.close()
        if self._pool:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "WebhookWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- one pass
    def run_once(self, now: datetime) -> RunReport:
        now = utc_naive(now)
        report = RunReport()
        tripped: set[str] = set()
        for _ in range(self.max_rounds):
            jobs = self._claim(now, tripped)
            if not jobs:
                break
            if self._pool:
                outcomes = list(self._pool.map(self._attempt, jobs))
            else:
                outcomes = [self._attempt(j) for j in jobs]
            self._record(now, jobs, outcomes, report)
            for job, out in zip(jobs, outcomes):
                if out.trip or out.kind == "gone":
                    tripped.add(job.endpoint_id)
        return report

    def run_forever(self, *, interval: float = 1.0, stop: threading.Event | None = None,
                    now_fn: Callable[[], datetime] | None = None) -> None:
        """Loop ``run_once`` on the wall clock until ``stop`` is set."""
        stop = stop or threading.Event()
        now_fn = now_fn or (lambda: datetime.now(timezone.utc).replace(tzinfo=None))
        while not stop.is_set():
            try:
                report = self.run_once(now_fn())
            except Exception:  # the store being briefly unavailable must not end the loop
                log.exception("webhook delivery pass failed; retrying")
                report = RunReport()
            if not report.attempted:
                stop.wait(interval)

    # -- claim the heads of each (endpoint, lead) queue that are due, under a lease
    def _claim(self, now: datetime, tripped: set[str]) -> list[_Job]:
        skip = sorted(tripped)
        not_tripped = f" AND d.endpoint_id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        sql = f"""
        SELECT d.message_seq, d.endpoint_id, m.message_id, m.body, e.url, e.secret, e.allow_private, d.attempts
        FROM webhook_deliveries d
        JOIN outbox_messages m ON m.seq = d.message_seq
        JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id
        WHERE d.status = 'pending' AND e.enabled AND (e.paused_until IS NULL OR e.paused_until <= ?)
          AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR d.lease_until <= ?){not_tripped}
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                          WHERE p.endpoint_id = d.endpoint_id AND p.lead_id = d.lead_id
                            AND p.status = 'pending' AND p.message_seq < d.message_seq)
        ORDER BY d.message_seq, d.endpoint_id
        LIMIT ?"""
        until = later(now, self.lease_seconds)
        jobs = []
        with session(self.store) as db:
            rows = db.rows(sql, [now, now, now, *skip, self.batch_size])
            for endpoint_id in sorted({r[1] for r in rows}):
                seqs = [r[0] for r in rows if r[1] == endpoint_id]
                got = {r[0] for r in db.rows(
                    f"UPDATE webhook_deliveries SET lease_until = ? WHERE endpoint_id = ? AND message_seq IN ({marks(len(seqs))}) "
                    "AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?) RETURNING message_seq",
                    [until, endpoint_id, *seqs, now])}
                jobs += [_Job(*r) for r in rows if r[1] == endpoint_id and r[0] in got]
        jobs.sort(key=lambda j: (j.seq, j.endpoint_id))
        return jobs

    # -- one HTTP attempt (runs in a pool thread; touches no database)
    def _attempt(self, job: _Job) -> _Outcome:
        try:
            return self._try(job)
        except Exception as exc:  # whatever goes wrong is a failed attempt, recorded; never a lost lease
            log.exception("webhook attempt %s to %s crashed", job.message_id, job.endpoint_id)
            return _Outcome("failed", error=f"{type(exc).__name__}: {exc}")

    def _try(self, job: _Job) -> _Outcome:
        parts = urlsplit(job.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addrs = resolve_checked(host, port, self.allow_private or job.allow_private)
        except UnsafeTarget as exc:
            return _Outcome("blocked", error=str(exc))
        except ConnectionError as exc:
            return _Outcome("failed", error=str(exc), trip=True)
        # Connect to the address we checked (no second DNS lookup an attacker could rebind); the Host
        # header and TLS SNI/verification still use the name.
        ip = addrs[0]
        url = httpx.URL(job.url).copy_with(host=ip)
        headers = {"content-type": "application/json", "host": parts.netloc.rsplit("@", 1)[-1]}
        wall = self.clock()
        headers.update(sign_headers(job.secret, job.message_id, job.body, wall))
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        try:
            resp = self._client.post(url, content=job.body.encode(), headers=headers, extensions=extensions)
        except httpx.TimeoutException as exc:
            return _Outcome("failed", error=f"timeout after {self.timeout:g}s ({type(exc).__name__})", trip=True)
        except httpx.HTTPError as exc:
            return _Outcome("failed", error=f"{type(exc).__name__}: {exc}", trip=True)
        code = resp.status_code
        snippet = resp.text[:200] if resp.content else ""
        if 200 <= code < 300:
            return _Outcome("delivered", code)
        if code == 410:
            return _Outcome("gone", code, error="410 Gone: the receiver asked us to stop")
        if 300 <= code < 400:
            return _Outcome("failed", code, error=f"{code} redirect to {resp.headers.get('location', '?')} (redirects are not followed)")
        retry_after = _parse_retry_after(resp.headers.get("retry-after"), wall) if code in (429, 503) else None
        return _Outcome("failed", code, error=f"HTTP {code}" + (f": {snippet}" if snippet else ""),
                        retry_after=retry_after, trip=code in (429, 502, 503, 504) or code >= 500)

    # -- write the outcomes back (one transaction)
    def _record(self, now: datetime, jobs: list[_Job], outcomes: list[_Outcome], report: RunReport) -> None:
        with session(self.store) as db:
            db.insert_many("webhook_attempts", ("message_seq", "endpoint_id", "attempt", "attempted_at", "http_status", "error"),
                           [(j.seq, j.endpoint_id, j.attempts + 1, now, o.http_status, o.error) for j, o in zip(jobs, outcomes)])
            delivered: dict[tuple[str, int], list[int]] = {}
            for job, out in zip(jobs, outcomes):
                if out.kind == "delivered":
                    delivered.setdefault((job.endpoint_id, out.http_status), []).append(job.seq)
            for (endpoint_id, status), seqs in delivered.items():  # one UPDATE per endpoint and status code
                report.delivered += len(seqs)
                db.run("UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_attempt_at = ?, "
                       "last_status = ?, last_error = NULL, delivered_at = ?, next_attempt_at = NULL, lease_until = NULL "
                       f"WHERE endpoint_id = ? AND message_seq IN ({marks(len(seqs))})", [now, status, now, endpoint_id, *seqs])
            for job, out in zip(jobs, outcomes):
                report.attempted += 1
                attempt = job.attempts + 1
                key = (job.seq, job.endpoint_id)
                if out.kind == "delivered":
                    continue
                if out.kind == "blocked":
                    report.blocked += 1
                    report.dead += 1
                    self._fail(db, key, attempt, now, out, dead=True)
                    continue
                if out.kind == "gone":
                    report.failed += 1
                    # Stays pending: it goes out if an admin re-enables the endpoint.
                    self._fail(db, key, attempt, now, out, dead=False, next_at=now)
                    self._disable(db, job.endpoint_id, f"receiver answered 410 Gone at {now.isoformat()}", report)
                    continue
                report.failed += 1
                delay = retry_delay(attempt, self.rng)
                if delay is None:
                    report.dead += 1
                    self._fail(db, key, attempt, now, out, dead=True)
                    log.warning("webhook %s to %s dead after %d attempts: %s", job.message_id, job.endpoint_id, attempt, out.error)
                    delivered_since = db.rows(
                        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ? AND status = 'delivered' AND delivered_at >= "
                        "(SELECT created_at FROM webhook_deliveries WHERE message_seq = ? AND endpoint_id = ?)", (job.endpoint_id, *key))[0][0]
                    if not delivered_since:
                        self._disable(db, job.endpoint_id, f"nothing delivered for {MAX_ATTEMPTS} attempts; last: {out.error}", report)
                    continue
                if out.retry_after is not None:
                    delay = max(delay, out.retry_after)
                    db.run("UPDATE webhook_endpoints SET paused_until = ? WHERE endpoint_id = ?",
                           (later(now, out.retry_after), job.endpoint_id))
                self._fail(db, key, attempt, now, out, dead=False, next_at=later(now, delay))

    @staticmethod
    def _fail(db: Sql, key: tuple, attempt: int, now: datetime, out: _Outcome, *, dead: bool,
              next_at: datetime | None = None) -> None:
        db.run("UPDATE webhook_deliveries SET status = ?, attempts = ?, last_attempt_at = ?, last_status = ?, last_error = ?, "
               "next_attempt_at = ?, lease_until = NULL WHERE message_seq = ? AND endpoint_id = ?",
               ("dead" if dead else "pending", attempt, now, out.http_status, out.error, None if dead else next_at, *key))

    @staticmethod
    def _disable(db: Sql, endpoint_id: str, reason: str, report: RunReport) -> None:
        db.run("UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = ? WHERE endpoint_id = ?", (reason, endpoint_id))
        if endpoint_id not in report.disabled_endpoints:
            report.disabled_endpoints.append(endpoint_id)
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)


def start_background_delivery(store: Store, *, stop: threading.Event, allow_private: bool = False, interval: float = 1.0,
                              crm_interval: float = 5.0, crm: bool = True, **worker_kw: Any) -> list[threading.Thread]:
    """Daemon threads running the webhook worker (and the CRM sync worker) on the wall clock until ``stop``.

    For a server: with the embedded DuckDB store the workers must live in the process that holds the
    file. Each thread closes its worker when ``stop`` is set.
    """
    from leadscore.service.crm.sync import CrmSyncWorker  # the CRM package is optional for webhook-only use

    def hooks() -> None:
        with WebhookWorker(store, allow_private=allow_private, **worker_kw) as w:
            w.run_forever(interval=interval, stop=stop)

    def crm_loop() -> None:
        with CrmSyncWorker(store) as w:
            w.run_forever(interval=crm_interval, stop=stop)

    threads = [threading.Thread(target=hooks, name="leadscore-webhooks", daemon=True)]
    if crm:
        threads.append(threading.Thread(target=crm_loop, name="leadscore-crm-sync", daemon=True))
    for t in threads:
        t.start()
    return threads
