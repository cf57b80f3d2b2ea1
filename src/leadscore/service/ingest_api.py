"""The Segment-compatible tracking API: /v1/track, page, screen, identify, group, alias, batch, import.

What a request goes through, each step refusing clearly (``{"code", "message", "errors"?}``) and
storing nothing when it fails:

1. write key from ``Authorization: Basic base64(KEY:)`` (checked before the body is read) and/or
   ``writeKey`` in the body (both present must agree) → 401 unknown, 403 not a write key, 429 + Retry-After
2. ``Content-Type`` (application/json; text/plain for browser beacons) → 415
3. body read and, for ``Content-Encoding: gzip``/``deflate``, inflated as a stream under the hard cap
   (a gzip bomb is cut off at ``max_request_bytes``) → 413 / 400
4. strict JSON: UTF-8, no NaN/Infinity, numbers that fit 64 bits/doubles, no duplicate keys → 400
5. shape: nesting depth, no NUL or unpaired surrogates in strings (PostgreSQL's JSONB refuses
   ``\\u0000``; refusing it on both stores keeps them alike), known top-level fields, 32 KB per message → 400/413
6. every message normalised (``leadscore.events.normalize_batch``: Segment's clock-skew rule,
   batch-level ``context``/``integrations``/``sentAt`` merged) → 400 naming each bad message and field
7. queued for the group-commit writer; answered ``200 {"success": true}`` once committed (or, with
   the durable ingestion log, once fsynced in it), 503 + Retry-After if the store is unavailable or
   the queue is full.

Large bodies are parsed and validated in a worker thread so they do not stall small requests.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import threading
import zlib
from datetime import datetime, timezone
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from leadscore.events import Event, MessageErrors, normalize_batch, normalize_message
from leadscore.service.auth import ApiKey, admit, tokens_from_headers
from leadscore.service.errors import ApiError, unavailable
from leadscore.service.settings import Settings
from leadscore.service.writer import QueueFull, WriterStopped
from leadscore.store import StoreUnavailable

SINGLE_TYPES = ("track", "page", "screen", "identify", "group", "alias")

# Top-level fields a message may carry: the Segment spec, what the Segment/RudderStack SDKs and
# analytics.js send, and the snake_case partner forms normalize understands.
MESSAGE_FIELDS = frozenset({
    "type", "messageId", "userId", "anonymousId", "timestamp", "originalTimestamp", "sentAt",
    "receivedAt", "context", "integrations", "properties", "traits", "event", "name", "category",
    "groupId", "previousId", "version", "channel", "writeKey", "options", "_metadata", "rudderId",
    "user_id", "anonymous_id", "message_id", "group_id", "previous_id", "sent_at", "original_timestamp",
})
BATCH_FIELDS = frozenset({"batch", "sentAt", "context", "integrations", "writeKey", "_metadata", "metadata"})

_OK = b'{"success":true}'
_INT64 = 2 ** 63
_datetime = TypeAdapter(datetime)


# ---------------------------------------------------------------- body
class _Inflater:
    """Streaming gzip/deflate inflation that stops at ``cap`` output bytes (gzip bombs)."""

    def __init__(self, encoding: str, cap: int):
        self.encoding, self.cap = encoding, cap
        self.out = bytearray()
        self._d = self._new()

    def _new(self):
        # gzip: wbits 16+15; deflate: zlib-wrapped per RFC 9110 (raw deflate is tried on failure).
        return zlib.decompressobj(16 + zlib.MAX_WBITS if self.encoding == "gzip" else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        while data:
            try:
                chunk = self._d.decompress(data, self.cap + 1 - len(self.out))
            except zlib.error as exc:
                if self.encoding == "deflate" and not self.out and self._d.unused_data == b"":
                    self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                    self.encoding = "raw-deflate"
                    continue
                raise ApiError(400, "invalid_encoding", f"the body is not valid {self.encoding} data: {exc}") from None
            self.out += chunk
            if len(self.out) > self.cap:
                raise ApiError(413, "request_too_large",
                               f"the request body exceeds {self.cap} bytes after inflation")
            if self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
            elif self._d.eof and self._d.unused_data:
                # a multi-member gzip stream (RFC 1952 allows concatenated members)
                data = self._d.unused_data
                if self.encoding != "gzip":
                    raise ApiError(400, "invalid_encoding", "data follows the end of the deflate stream")
                self._d = self._new()
            else:
                data = b""

    def finish(self) -> bytes:
        if not self._d.eof:
            raise ApiError(400, "invalid_encoding", f"the {self.encoding} stream is truncated")
        return bytes(self.out)


async def read_body(request: Request, settings: Settings) -> bytes:
    cap = settings.max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > cap:
                raise ApiError(413, "request_too_large", f"the request body ({declared} bytes) exceeds {cap} bytes")
        except ValueError:
            raise ApiError(400, "invalid_request", "Content-Length is not a number") from None
    encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise ApiError(415, "unsupported_encoding",
                       f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or no encoding")
    inflater = _Inflater("gzip" if encoding in ("gzip", "x-gzip") else "deflate", cap) if encoding != "identity" else None
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > cap:
            raise ApiError(413, "request_too_large", f"the request body exceeds {cap} bytes")
        if inflater is not None and chunk:
            inflater.feed(chunk)
    if inflater is None:
        return bytes(raw)
    if not raw:
        raise ApiError(400, "invalid_encoding", f"Content-Encoding is {encoding} but the body is empty")
    return inflater.finish()


def check_content_type(request: Request) -> None:
    value = request.headers.get("content-type")
    if not value:
        raise ApiError(415, "unsupported_media_type", "Content-Type is missing; send application/json")
    media, _, params = value.partition(";")
    media = media.strip().lower()
    # text/plain: what navigator.sendBeacon sends from a browser tracker (no CORS preflight).
    if media not in ("application/json", "text/plain") and not (media.startswith("application/") and media.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", f"Content-Type {media!r} is not supported; send application/json")
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, "unsupported_media_type", f"charset {val.strip()!r} is not supported; send UTF-8")


# ---------------------------------------------------------------- JSON
class _BadJson(ValueError):
    pass


def _no_constant(name: str):
    raise _BadJson(f"{name} is not a JSON number; send null or a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(f"the number {text[:40]} is too large for a double")
    return value


def _int64(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _BadJson(f"the number {text[:40]}… has too many digits") from None
    if not -_INT64 <= value < _INT64:
        raise _BadJson(f"the integer {text[:40]} does not fit in 64 bits")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _BadJson(f"the key {k[:80]!r} appears twice in one object")
            seen.add(k)
    return out


_decoders = threading.local()


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    decoder = getattr(_decoders, "decoder", None)
    if decoder is None:
        # json.loads(text, **options) builds a decoder per call: 40 % of parsing a /v1/track body.
        # One per thread: the C scanner's key memo is shared state, and bodies are parsed in several.
        decoder = _decoders.decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float,
                                                       parse_int=_int64, object_pairs_hook=_unique_keys)
    try:
        return decoder.decode(text)
    except _BadJson as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None


# ---------------------------------------------------------------- shape
def _loc(prefix: str, path: tuple) -> str:
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _string_problem(s: str) -> str | None:
    if "\x00" in s:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an unpaired UTF-16 surrogate (an invalid \\uD800-\\uDFFF escape)"
    return None


def check_value(value: Any, prefix: str, max_depth: int, check_strings: bool, errors: list[dict]) -> None:
    """Depth, NUL characters and unpaired surrogates, in keys and values; iterative (no recursion)."""
    stack: list[tuple[Any, int, tuple]] = [(value, 0, ())]
    while stack:
        obj, depth, path = stack.pop()
        if isinstance(obj, dict):
            if depth >= max_depth:
                errors.append({"loc": _loc(prefix, path), "message": f"nested more than {max_depth} levels deep"})
                continue
            for k, v in obj.items():
                if check_strings:
                    problem = _string_problem(k)
                    if problem:
                        errors.append({"loc": _loc(prefix, path), "message": f"a key {problem}"})
                        continue
                if isinstance(v, (dict, list)) or (check_strings and isinstance(v, str)):
                    stack.append((v, depth + 1, path + (k,)))
        elif isinstance(obj, list):
            if depth >= max_depth:
                errors.append({"loc": _loc(prefix, path), "message": f"nested more than {max_depth} levels deep"})
                continue
            for i, v in enumerate(obj):
                if isinstance(v, (dict, list)) or (check_strings and isinstance(v, str)):
                    stack.append((v, depth + 1, path + (i,)))
        elif isinstance(obj, str):
            problem = _string_problem(obj)
            if problem:
                errors.append({"loc": _loc(prefix, path), "message": problem})
        if len(errors) >= 50:
            return


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # built once: json.dumps(**kw) builds one per call


def _message_size(msg: Any) -> int:
    """The message's size as Segment counts it: its compact JSON encoding, in UTF-8 bytes."""
    text = _COMPACT.encode(msg)
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _oversized(items: list[Any], limit: int, body_size: int) -> list[int]:
    """Indexes of the messages whose compact encoding exceeds ``limit`` bytes, in order.

    A run of messages encoded as one JSON list holds each of them whole, so a run within the limit
    clears all its messages at once; only a run over it is split, down to single messages, which are
    measured exactly as before. One encoder call per ~100 messages instead of one per message.
    """
    n = len(items)
    step = max(1, n * limit // (2 * max(body_size, 1)))
    stack = [(lo, min(lo + step, n)) for lo in range(0, n, step)][::-1]
    out: list[int] = []
    while stack:
        lo, hi = stack.pop()
        if hi - lo == 1:
            if _message_size(items[lo]) > limit:
                out.append(lo)
        elif _message_size(items[lo:hi]) > limit:
            mid = (lo + hi) // 2
            stack.append((mid, hi))
            stack.append((lo, mid))
    return out


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")
_BRACKETS = bytes.maketrans(b"{}[]", b"()()")


def body_depth(body: bytes) -> int:
    """How deeply the (valid) JSON document ``body`` nests objects and arrays.

    Strings removed, only the brackets kept, every innermost ``()`` pair is removed in one pass:
    each pass lowers the nesting by exactly one. Lets ``check_messages`` skip walking every message
    for the depth limit when the whole body is shallower than it (~1 µs per message saved).
    Without a backslash in the body no string holds an escaped quote, so the strings are exactly every
    other piece between quotes: a split and a join, 4x cheaper than the regular expression (which was
    13 % of the ingestion process's CPU under /v1/batch).
    """
    if b"\\" not in body:
        text = b"".join(body.split(b'"')[0::2]).translate(_BRACKETS, _NOT_BRACKETS)
    else:
        text = _JSON_STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    while text:
        text = text.replace(b"()", b"")
        depth += 1
    return depth


def _raise_errors(status: int, code: str, errors: list[dict]) -> None:
    shown = "; ".join(f"{e['loc']}: {e['message']}" for e in errors[:20])
    more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
    raise ApiError(status, code, shown + more, errors=errors)


def check_messages(items: list[Any], prefix: str, settings: Settings, body_size: int, check_strings: bool,
                   depth: int | None = None) -> None:
    """Unknown fields, nesting depth, NUL/surrogates and the per-message size limit.

    ``depth``: the nesting depth of the whole body (``body_depth``), when known: a message sits
    3 levels deep in a batch body (object, list, message) and 1 in a single call's, so a body
    shallower than the limit plus that holds no message too deep, and without strings to check
    the per-message walk is skipped.
    """
    errors: list[dict] = []
    walk = check_strings or depth is None or depth >= settings.max_depth + (3 if prefix else 1)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # normalize names it ("expected a JSON object")
        if settings.strict_fields:
            unknown = [k for k in item if k not in MESSAGE_FIELDS]
            for k in unknown[:5]:
                where = f"{prefix}[{i}]" if prefix else ""
                errors.append({"loc": _loc(where, (k[:80],)), "message": "unknown field (not part of the Segment spec)"})
        if walk:
            check_value(item, f"{prefix}[{i}]" if prefix else "", settings.max_depth, check_strings, errors)
    if errors:
        _raise_errors(400, "invalid_message", errors)
    if body_size > settings.max_message_bytes:
        big = []
        for i in _oversized(items, settings.max_message_bytes, body_size):
            size = _message_size(items[i])
            big.append({"loc": f"{prefix}[{i}]" if prefix else "message",
                        "message": f"the message is {size} bytes; the limit is {settings.max_message_bytes}"})
        if big:
            _raise_errors(413, "message_too_large", big)


def _object_or_error(payload: dict, field: str, errors: list[dict]) -> dict | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append({"loc": field, "message": f"expected a JSON object, got {type(value).__name__}"})
        return None
    return value


def _message_errors(exc: MessageErrors) -> ApiError:
    errors = [{"loc": e.loc, "message": e.message} for e in exc.errors]
    return ApiError(400, "invalid_message", str(exc), errors=errors)


def prepare(payload: Any, kind: str, received_at: datetime, settings: Settings, body_size: int,
            check_strings: bool = True, depth: int | None = None) -> list[Event]:
    """Validate a parsed body and return its events, or raise ApiError naming every problem."""
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_message", f"the body must be a JSON object, got {type(payload).__name__}")
    if kind in ("batch", "import"):
        errors: list[dict] = []
        if settings.strict_fields:
            for k in [k for k in payload if k not in BATCH_FIELDS][:5]:
                errors.append({"loc": k[:80], "message": "unknown field (a batch holds batch, sentAt, context, integrations, writeKey)"})
        items = payload.get("batch")
        if items is None:
            errors.append({"loc": "batch", "message": "required: a list of messages"})
        elif not isinstance(items, list):
            errors.append({"loc": "batch", "message": f"expected a list of messages, got {type(items).__name__}"})
        elif not items:
            errors.append({"loc": "batch", "message": "empty: send at least one message"})
        elif len(items) > settings.max_batch_items:
            errors.append({"loc": "batch", "message": f"{len(items)} messages; the limit is {settings.max_batch_items}"})
        defaults = {}
        for field in ("context", "integrations"):
            value = _object_or_error(payload, field, errors)
            if value is not None:
                defaults[field] = value
                check_value(value, field, settings.max_depth, check_strings, errors)
        sent_at = None
        if payload.get("sentAt") is not None:
            try:
                sent_at = _datetime.validate_python(payload["sentAt"])
            except ValidationError as exc:
                errors.append({"loc": "sentAt", "message": exc.errors()[0]["msg"]})
        if errors:
            _raise_errors(400, "invalid_message", errors)
        # A message whose context/integrations is not an object cannot take the batch's defaults.
        for i, item in enumerate(items):
            if isinstance(item, dict):
                for field in defaults:
                    if item.get(field) is not None and not isinstance(item[field], dict):
                        errors.append({"loc": f"batch[{i}].{field}", "message": f"expected a JSON object, got {type(item[field]).__name__}"})
        if errors:
            _raise_errors(400, "invalid_message", errors)
        check_messages(items, "batch", settings, body_size, check_strings, depth)
        try:
            return normalize_batch(items, received_at, sent_at=sent_at, defaults=defaults or None)
        except MessageErrors as exc:
            raise _message_errors(exc) from None
    # a single call: the path names the type
    msg = dict(payload)
    msg.pop("writeKey", None)
    if msg.get("type") is None:
        msg["type"] = kind
    elif msg["type"] != kind:
        raise ApiError(400, "invalid_message", f"type: {str(msg['type'])[:40]!r} does not match the endpoint /v1/{kind}",
                       errors=[{"loc": "type", "message": f"must be {kind!r} on /v1/{kind}"}])
    check_messages([msg], "", settings, body_size, check_strings, depth)
    try:
        return [normalize_message(msg, received_at)]
    except MessageErrors as exc:
        raise _message_errors(exc) from None


def log_decoder(settings: Settings):
    """The events of a request kept in the ingestion log: (kind, received_at ISO, body) → events,
    exactly as when it was accepted (normalisation depends only on the body and the receipt time).
    The body passed every check then; the limits are not applied again, so a setting tightened
    since cannot refuse what was acknowledged."""
    relaxed = settings.with_(strict_fields=False, max_message_bytes=2 ** 40, max_request_bytes=2 ** 40,
                             max_batch_items=2 ** 40, max_depth=2 ** 20)

    def decode(kind: str, received_at: str, body: bytes) -> list[Event]:
        return prepare(parse_json(body), kind, datetime.fromisoformat(received_at), relaxed, len(body), True)
    return decode


# ---------------------------------------------------------------- auth
def _header_token(request: Request) -> str | None:
    try:
        return tokens_from_headers(request.headers.get("authorization"))
    except ValueError as exc:
        raise ApiError(401, "unauthorized", str(exc)) from None


def authorize(request: Request, token: str) -> ApiKey:
    """The write-capable key of ``token`` after its rate limit, or an ApiError (401/403/429/503)."""
    return admit(request.app.state.keys, token, "write", "unknown or revoked write key",
                 "a {role} key cannot send events; use a write key")


def _body_key_checked(request: Request, body_key: Any, key: ApiKey | None, token: str | None) -> ApiKey:
    """The key the request is admitted with: the header's, or the body's ``writeKey`` (both present
    must name the same key); ApiError 401/403/429 otherwise."""
    if body_key is not None:
        if not isinstance(body_key, str) or not body_key:
            raise ApiError(401, "unauthorized", "writeKey must be a non-empty string")
        if key is not None:
            if not hmac.compare_digest(body_key.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")):
                raise ApiError(401, "unauthorized", "the Authorization header and the body's writeKey name different keys")
        else:
            key = authorize(request, body_key)
    if key is None:
        raise ApiError(401, "unauthorized",
                       "a write key is required: HTTP Basic auth with the key as user name, or writeKey in the body")
    return key


async def _validated_apart(request: Request, validator, kind: str, received_at: datetime, body: bytes,
                           key: ApiKey | None, token: str | None):
    """``parse_json``, the key from the body and ``prepare``, with parsing and validation done by the
    validation process (service/validator.py): its events, still pickled (``PickledEvents``)."""
    from leadscore.service.validator import PickledEvents, ValidatorUnavailable

    settings = request.app.state.settings
    try:
        outcome = await validator.check(kind, received_at, body)
    except ValidatorUnavailable as exc:
        raise unavailable(f"overloaded, retry later: {exc}", settings.retry_after_seconds) from None
    status, body_key, *rest = outcome
    if status in ("json", "crash"):
        raise ApiError(*rest)
    _body_key_checked(request, body_key, key, token)
    if status == "invalid":
        raise ApiError(*rest)
    return PickledEvents(rest[1], rest[0])


# ---------------------------------------------------------------- the endpoint
class _Inflight:
    """Bytes of request bodies being processed; beyond the cap new requests get 503 (bounded memory)."""

    def __init__(self, cap: int):
        self.cap, self.used = cap, 0


async def handle(request: Request, kind: str) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    received_at = datetime.now(timezone.utc)
    held = 0
    try:
        token = _header_token(request)
        key = authorize(request, token) if token is not None else None
        check_content_type(request)
        body = await read_body(request, settings)
        inflight: _Inflight = state.ingest_inflight
        if inflight.used + len(body) > inflight.cap:
            raise unavailable("too many large requests are being processed", settings.retry_after_seconds)
        held = len(body)
        inflight.used += held
        validator = getattr(state, "validator", None)
        if validator is not None and validator.ready and len(body) >= settings.validator_bytes:
            # the ingestion process's validation process: same checks, same order, off this GIL
            events = await _validated_apart(request, validator, kind, received_at, body, key, token)
        else:
            offload = len(body) > settings.inline_parse_bytes
            payload = await anyio.to_thread.run_sync(parse_json, body) if offload else parse_json(body)
            _body_key_checked(request, payload.get("writeKey") if isinstance(payload, dict) else None, key, token)
            # Strings can only hold NUL or lone surrogates through a \u escape; skip that scan otherwise.
            check_strings = b"\\u" in body
            depth = None if check_strings else body_depth(body)
            if offload:
                events = await anyio.to_thread.run_sync(prepare, payload, kind, received_at, settings, len(body),
                                                        check_strings, depth)
            else:
                events = prepare(payload, kind, received_at, settings, len(body), check_strings, depth)
            del payload
        writer = state.writer
        # with a durable log, the body is what it keeps (the events are rebuilt from it on replay)
        record = (kind, received_at.isoformat(), body) if writer.log is not None else None
        del body
        try:
            future = writer.submit(events, record)
        except (QueueFull, WriterStopped) as exc:
            raise unavailable(f"overloaded, retry later: {exc}", settings.retry_after_seconds) from None
        except StoreUnavailable as exc:
            raise unavailable(str(exc), settings.retry_after_seconds) from None
        try:
            await asyncio.wrap_future(future)
        except StoreUnavailable as exc:
            raise unavailable(f"the store is unavailable: {exc}", settings.retry_after_seconds) from None
        except Exception:  # noqa: BLE001 - logged by the writer
            raise ApiError(500, "internal_error", "the events could not be stored; retry later") from None
        return Response(_OK, status_code=200, media_type="application/json")
    except ApiError as exc:
        return exc.response()
    finally:
        if held:
            state.ingest_inflight.used -= held


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_RESPONSES = {
    200: {"description": "Every message was stored durably", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"success": {"type": "boolean", "enum": [True]}}, "required": ["success"]}}}},
    400: {"description": "Invalid request; nothing was stored (do not resend)", **_ERROR},
    401: {"description": "Missing, unknown or revoked write key", **_ERROR},
    403: {"description": "The key is not a write key", **_ERROR},
    413: {"description": "A message over 32 KB or a request over 4 MiB after inflation", **_ERROR},
    415: {"description": "Unsupported Content-Type or Content-Encoding", **_ERROR},
    429: {"description": "The key is over its rate limit; see Retry-After", **_ERROR},
    503: {"description": "Store unavailable or overloaded; retry after Retry-After", **_ERROR},
}
_MESSAGE_SCHEMA = {"type": "object", "additionalProperties": True, "properties": {
    "type": {"type": "string"}, "messageId": {"type": "string"}, "userId": {"type": ["string", "null"]},
    "anonymousId": {"type": ["string", "null"]}, "timestamp": {"type": "string", "format": "date-time"},
    "event": {"type": "string"}, "properties": {"type": "object"}, "traits": {"type": "object"},
    "context": {"type": "object"}, "writeKey": {"type": "string"}}}
_BATCH_SCHEMA = {"type": "object", "required": ["batch"], "properties": {
    "batch": {"type": "array", "items": _MESSAGE_SCHEMA}, "sentAt": {"type": "string", "format": "date-time"},
    "context": {"type": "object"}, "integrations": {"type": "object"}, "writeKey": {"type": "string"}}}


def _body(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "security": [{"writeKeyBasic": []}]}


class _IngestRoute(APIRoute):
    """Documented like any FastAPI route, but its handler is the endpoint itself: ``handle`` reads
    the request on its own, so FastAPI's per-request dependency solving is pure overhead here
    (about a tenth of a /v1/track request's CPU, measured with py-spy)."""

    def get_route_handler(self):
        return self.endpoint


def _route(kind: str):
    async def endpoint(request: Request) -> Response:
        return await handle(request, kind)
    endpoint.__name__ = f"ingest_{kind}"
    return endpoint


def build_router() -> APIRouter:
    router = APIRouter(tags=["ingestion"], route_class=_IngestRoute)
    for kind in SINGLE_TYPES:
        router.add_api_route(f"/v1/{kind}", _route(kind), methods=["POST"], responses=_RESPONSES,
                             summary=f"Send one {kind} message (Segment HTTP Tracking API)",
                             openapi_extra=_body(_MESSAGE_SCHEMA), response_class=Response)
    for kind in ("batch", "import"):
        router.add_api_route(f"/v1/{kind}", _route(kind), methods=["POST"], responses=_RESPONSES,
                             summary="Send a batch of messages (Segment HTTP Tracking API)" if kind == "batch"
                             else "Send a batch of messages (legacy alias of /v1/batch)",
                             openapi_extra=_body(_BATCH_SCHEMA), response_class=Response)
    return router
