"""API keys: admin, read and write roles; random tokens shown once, stored hashed, revocable, rate limited.

Library functions (``create_key``, ``list_keys``, ``revoke_key``) are what the CLI and the admin API
call; ``KeyRing`` is the service's in-memory view used on every request (authentication and per-key
token buckets); ``require(...)`` makes a FastAPI dependency for a route.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from fastapi import Request

from leadscore.store import Store, StoreUnavailable

ROLES = ("admin", "read", "write")
# What each role may do: admin everything; read keys only read; write keys only ingest.
GRANTS = {"admin": {"admin", "read", "write"}, "read": {"read"}, "write": {"write"}}
_PREFIX = {"admin": "lsa_", "read": "lsr_", "write": "lsw_"}


def hash_token(token: str) -> str:
    """SHA-256 of the token, hex.

    Why a plain fast hash and not bcrypt/argon2: our tokens are 256 random bits (``secrets``), not
    human passwords, so a stolen hash cannot be brute-forced whatever the hash speed; slow password
    hashes only protect low-entropy secrets, and would cost milliseconds on every ingestion request.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str
    prefix: str
    rate_limit: float | None
    burst: float | None
    created_at: datetime
    revoked_at: datetime | None
    token_hash: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may(self, action: str) -> bool:
        return action in GRANTS[self.role]

    def public(self) -> dict[str, Any]:
        """What listings show: never the hash."""
        return {"key_id": self.key_id, "name": self.name, "role": self.role, "prefix": self.prefix,
                "rate_limit": self.rate_limit, "burst": self.burst,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    token: str  # shown once; only its hash is stored


class KeyError_(ValueError):
    """A key operation that cannot be done (unknown role, unknown key id)."""


_COLUMNS = "key_id, name, role, prefix, rate_limit, burst, created_at, revoked_at, token_hash"


def _row_to_key(row: tuple) -> ApiKey:
    return ApiKey(*row)


def create_key(store: Store, role: str, now: datetime, name: str = "",
               rate_limit: float | None = None, burst: float | None = None) -> NewKey:
    """A new key of ``role``; the returned token is the only copy of the secret."""
    if role not in ROLES:
        raise KeyError_(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    for label, value in (("rate_limit", rate_limit), ("burst", burst)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise KeyError_(f"{label} must be a positive number of requests, not {value!r}")
    # token_urlsafe never contains ':' so the token works as an HTTP Basic user name.
    token = _PREFIX[role] + secrets.token_urlsafe(32)
    key = ApiKey(key_id="key_" + secrets.token_hex(6), name=name or role, role=role,
                 prefix=token[:10], rate_limit=rate_limit, burst=burst, created_at=now,
                 revoked_at=None, token_hash=hash_token(token))
    store.execute(f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (key.key_id, key.name, key.role, key.prefix, key.rate_limit, key.burst,
                   key.created_at, key.revoked_at, key.token_hash))
    return NewKey(key, token)


def list_keys(store: Store, include_revoked: bool = True) -> list[ApiKey]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    rows = store.query(f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY created_at, key_id")
    return [_row_to_key(r) for r in rows]


def revoke_key(store: Store, key_id: str, now: datetime) -> ApiKey:
    """Revoke a key (idempotent: revoking twice keeps the first instant); raises for an unknown id."""
    with store.transaction() as conn:
        rows = store._fetchall(conn, f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        if not rows:
            raise KeyError_(f"no key with id {key_id!r}")
        key = _row_to_key(rows[0])
        if key.revoked_at is None:
            store._execute(conn, "UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (now, key_id))
            key = ApiKey(**{**key.__dict__, "revoked_at": now})
    return key


class TokenBucket:
    """A token bucket (rate per second, capacity ``burst``); ``take`` answers the wait before a retry.

    Hand-written because it is ten lines and must run in-process on every request; the rate-limit
    libraries on PyPI are built around Redis or framework middlewares we do not use.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.tokens, self.stamp = rate, max(burst, 1.0), max(burst, 1.0), now

    def take(self, now: float, cost: float = 1.0) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class KeyRing:
    """The keys as the running service sees them: a hash → key map refreshed from the store.

    Lookups never touch the database on the hot path; the map is reloaded at most every
    ``refresh_seconds`` (so a revocation made by another process applies within that), and at once
    after a change made through this ring.
    """

    def __init__(self, store: Store, settings, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.settings = settings
        self.clock = clock
        self._by_hash: dict[str, ApiKey] = {}
        self._loaded_at: float | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        # Called with the active keys each time a reload finds them changed (under the ring's lock, so
        # in order): how `leadscore serve` passes them on to its ingestion process.
        self.listeners: list[Callable[[list[ApiKey]], None]] = []

    def reload(self) -> None:
        keys = list_keys(self.store, include_revoked=False)
        with self._lock:
            changed = set(keys) != set(self._by_hash.values())
            self._by_hash = {k.token_hash: k for k in keys}
            self._loaded_at = self.clock()
            if changed:
                for listener in list(self.listeners):
                    listener(keys)

    def active_keys(self) -> list[ApiKey]:
        with self._lock:
            return list(self._by_hash.values())

    def _fresh(self) -> None:
        if self._loaded_at is None or self.clock() - self._loaded_at >= self.settings.key_refresh_seconds:
            try:
                self.reload()
            except StoreUnavailable:
                if self._loaded_at is None:
                    raise
                # Keep serving from the last known keys while the database is away.

    def authenticate(self, token: str | None) -> ApiKey | None:
        """The active key with this token, or None. Constant-time in the token's content."""
        if not token:
            return None
        self._fresh()
        digest = hash_token(token)
        # The map lookup is on the hash, which an attacker cannot steer byte by byte; the final
        # comparison is still done with compare_digest so no early-exit comparison touches secrets.
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.token_hash, digest):
            return None
        return key

    def wait_for(self, key: ApiKey) -> float:
        """0 if the key may make a request now, else the seconds to wait (its bucket is empty)."""
        now = self.clock()
        bucket = self._buckets.get(key.key_id)
        if bucket is None:
            rate, burst = self.settings.rate_for(key.role)
            bucket = self._buckets[key.key_id] = TokenBucket(key.rate_limit or rate, key.burst or key.rate_limit or burst, now)
        return bucket.take(now)

    # changes made through the running service apply at once
    def create(self, role: str, now: datetime, **kw) -> NewKey:
        new = create_key(self.store, role, now, **kw)
        self.reload()
        return new

    def revoke(self, key_id: str, now: datetime) -> ApiKey:
        key = revoke_key(self.store, key_id, now)
        self.reload()
        self._buckets.pop(key_id, None)
        return key


class PushedKeyRing(KeyRing):
    """The keys of the ingestion process (service/frontend.py), which cannot read the store: the
    store's process sends them with ``set_keys`` at start and whenever they change."""

    def __init__(self, settings, clock: Callable[[], float] = time.monotonic):
        super().__init__(None, settings, clock)

    def set_keys(self, keys: Iterable[ApiKey]) -> None:
        with self._lock:
            self._by_hash = {k.token_hash: k for k in keys}
            self._loaded_at = self.clock()
            ids = {k.key_id for k in self._by_hash.values()}
            for key_id in list(self._buckets):   # one C call: safe beside the event loop adding buckets
                if key_id not in ids:
                    self._buckets.pop(key_id, None)

    def reload(self) -> None:
        pass   # pushed, not pulled

    def _fresh(self) -> None:
        pass


def tokens_from_headers(authorization: str | None, api_key_header: str | None = None) -> str | None:
    """The token of ``Authorization: Basic base64(token:)``, ``Bearer token`` or ``X-API-Key``."""
    if api_key_header:
        return api_key_header.strip()
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("Authorization: Basic credentials are not valid base64 of UTF-8 text") from None
        user, _, _password = decoded.partition(":")
        return user or None
    raise ValueError(f"Authorization scheme {scheme!r} is not supported; use Basic (key as user name) or Bearer")


def is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or bool(host and host.startswith("127."))


def iter_roles(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


# ---------------------------------------------------------------- FastAPI
def admit(ring: KeyRing, token: str, action: str, unknown: str, denied: str) -> ApiKey:
    """The key of ``token`` if it may ``action`` now, else an ApiError: 401 ``unknown``, 403 ``denied``
    (``{role}`` is filled in), 429 + Retry-After over its rate, 503 + Retry-After without a store."""
    from leadscore.service.errors import ApiError, unavailable

    try:
        key = ring.authenticate(token)
    except StoreUnavailable as exc:
        raise unavailable(f"the store is unavailable: {exc}", ring.settings.retry_after_seconds) from None
    if key is None:
        raise ApiError(401, "unauthorized", unknown)
    if not key.may(action):
        raise ApiError(403, "forbidden", denied.format(role=key.role))
    wait = ring.wait_for(key)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, "rate_limited", f"key {key.key_id} is over its rate limit; retry in {seconds} s",
                       headers={"Retry-After": str(seconds)})
    return key


def require(action: str):
    """A FastAPI dependency admitting keys allowed to ``action`` ("read", "write" or "admin").

    Use ``Depends(require("read"))`` on a route or ``dependencies=[Depends(require("admin"))]`` on a
    router; it returns the ``ApiKey`` (or None for a keyless loopback client of a ``--demo`` server
    on a "read" route). Tokens come from ``Authorization: Bearer``/``Basic`` or ``X-API-Key``.
    Answers 401 (missing/unknown/revoked), 403 (role), 429 + Retry-After (rate), 503 (store down).
    """
    from leadscore.service.errors import ApiError

    if action not in ("read", "write", "admin"):
        raise ValueError(f"action must be read, write or admin, not {action!r}")

    async def dependency(request: Request) -> ApiKey | None:
        state = request.app.state
        try:
            token = tokens_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
        except ValueError as exc:
            raise ApiError(401, "unauthorized", str(exc)) from None
        if token is None:
            client = request.client.host if request.client else None
            if action == "read" and state.settings.demo and is_loopback(client):
                return None
            raise ApiError(401, "unauthorized", f"an API key with {action} access is required "
                           "(Authorization: Bearer <key>)")
        return admit(state.keys, token, action, "unknown or revoked API key",
                     f"a {{role}} key cannot do this; it needs {action} access")

    dependency.__name__ = f"require_{action}"
    return dependency
