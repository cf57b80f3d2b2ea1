"""Segment message → normalised event row, validated once at the boundary.

A message is checked with pydantic; every problem is reported with its location
(``batch[3].event``) so that a caller can refuse a whole batch and name each bad field.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MESSAGE_TYPES = ("track", "page", "screen", "identify", "group", "alias")
# A timestamp outside these bounds is refused: it is a broken clock or a hostile input, never a lead.
MIN_TIME = datetime(1990, 1, 1)
MAX_TIME = datetime(2200, 1, 1)

# The event log's columns, in order (the store, Parquet files and the engine all use these names).
EVENT_COLUMNS = (
    "message_id", "type", "event", "name", "user_id", "anonymous_id", "group_id", "previous_id",
    "ts", "original_ts", "sent_at", "received_at", "properties", "context",
)

# Typed video columns, stored beside the event log's columns for track events (the video reconstruction
# reads them instead of the JSON): column → the properties it is read from, the first present.
VIDEO_COLUMN_SOURCES = {
    "video_session_id": ("session_id",),
    "video_asset_id": ("content_asset_id", "asset_id"),
    "video_position": ("position",),
    "video_seek_position": ("seek_position",),
    "video_total_length": ("total_length",),
    "video_playback_rate": ("playback_rate",),
}
VIDEO_COLUMNS = tuple(VIDEO_COLUMN_SOURCES)
VIDEO_TEXT_COLUMNS = ("video_session_id", "video_asset_id")
STORED_EVENT_COLUMNS = EVENT_COLUMNS + VIDEO_COLUMNS
# A number given as text (the PostgreSQL function ls_num uses the same rule).
NUMBER_RE = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_NUMBER = re.compile(NUMBER_RE)


# What json.dumps(v, separators=(",", ":"), default=str) gives, with the encoder built once (json.dumps
# with arguments builds a new JSONEncoder on every call: ~1 us of a row's ~4).
_row_json = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _prop_text(v: Any) -> str | None:
    """A property as the SQL JSON text accessors give it (->>, json_extract_string)."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"), default=str)


def _prop_num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _NUMBER.match(v):
        return float(v)
    return None


_VIDEO_KEYS = frozenset(k for keys in VIDEO_COLUMN_SOURCES.values() for k in keys)


def video_values(type_: str, properties: dict[str, Any]) -> tuple:
    """The typed video columns (VIDEO_COLUMNS) of an event: read from a track event's properties."""
    # Most events name no video property: one set test instead of six lookups (~10 us an event).
    if type_ != "track" or not properties or _VIDEO_KEYS.isdisjoint(properties):
        return (None,) * len(VIDEO_COLUMNS)
    out = []
    for col, keys in VIDEO_COLUMN_SOURCES.items():
        v = next((properties[k] for k in keys if properties.get(k) is not None), None)
        out.append(_prop_text(v) if col in VIDEO_TEXT_COLUMNS else _prop_num(v))
    return tuple(out)


_VIDEO_KEYS_QUOTED = tuple(f'"{k}"' for keys in VIDEO_COLUMN_SOURCES.values() for k in keys)
_NO_VIDEO = (None,) * len(VIDEO_COLUMNS)


def video_values_from_json(type_: str, properties_json: str | None) -> tuple:
    """video_values for properties still as JSON text, parsed only when it names a video property."""
    if type_ != "track" or not properties_json or not any(k in properties_json for k in _VIDEO_KEYS_QUOTED):
        return _NO_VIDEO
    return video_values(type_, json.loads(properties_json))


_SNAKE_KEYS = {"user_id": "userId", "anonymous_id": "anonymousId", "message_id": "messageId",
               "group_id": "groupId", "previous_id": "previousId", "sent_at": "sentAt",
               "original_timestamp": "originalTimestamp"}


@dataclass
class MessageError:
    loc: str
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}"


class MessageErrors(ValueError):
    """One or more messages are invalid; ``errors`` names each location and problem."""

    def __init__(self, errors: list[MessageError]):
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:20])
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(shown + more)


@dataclass
class Event:
    message_id: str
    type: str
    event: str | None
    name: str | None
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    previous_id: str | None
    ts: datetime
    original_ts: datetime | None
    sent_at: datetime | None
    received_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def row(self) -> tuple:
        return (self.message_id, self.type, self.event, self.name, self.user_id, self.anonymous_id,
                self.group_id, self.previous_id, self.ts, self.original_ts, self.sent_at,
                self.received_at, _row_json(self.properties), _row_json(self.context))

    def stored_row(self) -> tuple:
        """row() plus the typed video columns: the store's events row (STORED_EVENT_COLUMNS)."""
        return self.row() + video_values(self.type, self.properties)

    @property
    def lead_key(self) -> str | None:
        return self.user_id or None


def _utc_naive(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


_Id = str | int | None


class _Message(BaseModel):
    """The common Segment fields; anything else is kept but not interpreted."""

    model_config = ConfigDict(extra="allow", str_max_length=100_000)

    type: Literal["track", "page", "screen", "identify", "group", "alias"]
    messageId: str | int | None = None
    userId: _Id = None
    anonymousId: _Id = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    context: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    groupId: _Id = None
    previousId: _Id = None

    @field_validator("messageId", "userId", "anonymousId", "groupId", "previousId", mode="after")
    @classmethod
    def _ids_are_short_text(cls, v: Any) -> str | None:
        if v is None:
            return None
        v = str(v)
        if len(v) > 200:
            raise ValueError("ids are at most 200 characters")
        return v or None

    @field_validator("messageId", mode="after")
    @classmethod
    def _message_id_len(cls, v: str | None) -> str | None:
        if v is not None and len(v) > 100:
            raise ValueError("messageId is at most 100 characters")
        return v

    @field_validator("timestamp", "originalTimestamp", "sentAt", mode="after")
    @classmethod
    def _sane_time(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        v = _utc_naive(v)
        if not (MIN_TIME <= v < MAX_TIME):
            raise ValueError(f"timestamp {v.isoformat()} is outside {MIN_TIME.year}–{MAX_TIME.year}")
        return v

    @model_validator(mode="after")
    def _per_type(self) -> "_Message":
        if not self.userId and not self.anonymousId:
            raise ValueError("userId or anonymousId is required")
        if self.type == "track" and not (self.event and self.event.strip()):
            raise ValueError("event: required for track")
        if self.type == "track" and len(self.event or "") > 200:
            raise ValueError("event: at most 200 characters")
        if self.type == "group" and not self.groupId:
            raise ValueError("groupId: required for group")
        if self.type == "alias" and not self.previousId:
            raise ValueError("previousId: required for alias")
        if self.type == "alias" and not self.userId:
            raise ValueError("userId: required for alias")
        return self


# ---- the fast path: a well-formed message is checked here with plain Python (~5x cheaper than
# pydantic, which was 2/3 of ingestion's validation CPU). It accepts only what _Message surely accepts
# and converts it the same way; anything else (a bad field, an unusual time format, an int-like float
# id, ...) returns None and goes through _Message, which names every problem.
_TYPES = frozenset(MESSAGE_TYPES)
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z")
_MAX_STR = 100_000          # _Message's str_max_length (applies to its str fields and dict keys)
_NO = object()              # "not a fast-path value"


class _Fast:
    """The fields of a message that passed the fast path, named as on _Message."""
    __slots__ = ("type", "messageId", "userId", "anonymousId", "timestamp", "originalTimestamp", "sentAt",
                 "context", "properties", "traits", "event", "name", "category", "groupId", "previousId")


def _fast_id(v: Any, limit: int = 200) -> Any:
    if v is None:
        return None
    t = type(v)
    if t is str:
        return (v or None) if len(v) <= limit else _NO
    if t is int:
        v = str(v)
        return v if len(v) <= limit else _NO
    return _NO


def _fast_time(v: Any) -> Any:
    if v is None:
        return None
    if type(v) is not str or not _ISO_TIME.match(v):
        return _NO
    try:
        if v[-1] == "Z":
            t = datetime.fromisoformat(v[:-1])            # UTC: the naive value is the answer
        else:
            t = datetime.fromisoformat(v).astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return _NO
    return t if MIN_TIME <= t < MAX_TIME else _NO


def _fast_dict(v: Any) -> Any:
    if v is None:
        return None
    if type(v) is not dict or (v and max(map(len, v)) > _MAX_STR):
        return _NO
    return v


def _fast_text(v: Any) -> Any:
    if v is None:
        return None
    return v if type(v) is str and len(v) <= _MAX_STR else _NO


def _fast_message(raw: dict[str, Any]) -> _Fast | None:
    get = raw.get
    m = _Fast()
    m.type = kind = get("type")
    if type(kind) is not str or kind not in _TYPES:
        return None
    m.messageId = _fast_id(get("messageId"), 100)
    m.userId = _fast_id(get("userId"))
    m.anonymousId = _fast_id(get("anonymousId"))
    m.groupId = _fast_id(get("groupId"))
    m.previousId = _fast_id(get("previousId"))
    m.timestamp = _fast_time(get("timestamp"))
    m.originalTimestamp = _fast_time(get("originalTimestamp"))
    m.sentAt = _fast_time(get("sentAt"))
    m.context = _fast_dict(get("context"))
    m.properties = _fast_dict(get("properties"))
    m.traits = _fast_dict(get("traits"))
    m.event = _fast_text(get("event"))
    m.name = _fast_text(get("name"))
    m.category = _fast_text(get("category"))
    if _NO in (m.messageId, m.userId, m.anonymousId, m.groupId, m.previousId, m.timestamp, m.originalTimestamp,
               m.sentAt, m.context, m.properties, m.traits, m.event, m.name, m.category):
        return None
    # _Message._per_type's rules: a message breaking one is left to it to name
    if not m.userId and not m.anonymousId:
        return None
    if kind == "track" and not (m.event and m.event.strip() and len(m.event) <= 200):
        return None
    if (kind == "group" and not m.groupId) or (kind == "alias" and not (m.previousId and m.userId)):
        return None
    return m


def _loc_text(prefix: str, loc: tuple) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _snake_to_camel(raw: dict[str, Any]) -> dict[str, Any]:
    """Partner payloads use snake_case (user_id, context.user_agent): normalise them."""
    if raw.keys().isdisjoint(_SNAKE_KEYS):
        ctx = raw.get("context")
        if not (isinstance(ctx, dict) and "user_agent" in ctx):
            return raw
    msg = {(_SNAKE_KEYS.get(k, k) if _SNAKE_KEYS.get(k, k) not in raw else k): v for k, v in raw.items()}
    ctx = msg.get("context")
    if isinstance(ctx, dict) and "user_agent" in ctx and "userAgent" not in ctx:
        ctx = dict(ctx)
        ctx["userAgent"] = ctx.pop("user_agent")
        msg["context"] = ctx
    return msg


def _content_id(raw: dict[str, Any]) -> str:
    """A deterministic id for messages that carry none, so re-loading a file never double-counts."""
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    return "sha256:" + digest[:40]


def normalize_message(raw: Any, received_at: datetime, loc: str = "",
                      sent_at: datetime | None = None) -> Event:
    """Validate one message and return its event row; raises MessageErrors naming each bad field.

    Event time follows Segment's rule: with a ``sentAt`` (the message's own, else the batch's),
    ``ts = receivedAt - (sentAt - timestamp)``, which corrects a client's skewed clock; without
    one the client's ``timestamp`` is kept, and without that the receive time is used.
    """
    if not isinstance(raw, dict):
        raise MessageErrors([MessageError(loc or "message", f"expected a JSON object, got {type(raw).__name__}")])
    raw = _snake_to_camel(raw)
    msg = _fast_message(raw)
    try:
        if msg is None:
            msg = _Message.model_validate(raw)
    except ValidationError as exc:
        errs = []
        for e in exc.errors():
            text = e["msg"].removeprefix("Value error, ")
            # a union's member tags (str / int / constrained-str) are pydantic's, not the user's
            path = tuple(p for p in e["loc"] if not (isinstance(p, str) and (p in ("str", "int", "float", "bool")
                                                                              or p.startswith("constrained-"))))
            if e["type"] in ("string_type", "int_type", "int_parsing") and path and path[-1] in (
                    "messageId", "userId", "anonymousId", "groupId", "previousId"):
                text = "expected a string or a number"
            where = _loc_text(loc, path)
            if not e["loc"] and ":" in text:  # model-level check naming its own field
                field_name, _, text = text.partition(":")
                where = _loc_text(loc, (field_name.split(" ")[0],))
                text = text.strip()
            err = MessageError(where or "message", text)
            if err not in errs:
                errs.append(err)
        raise MessageErrors(errs) from None

    received_at = _utc_naive(received_at)
    original = msg.originalTimestamp or msg.timestamp
    msg_sent = msg.sentAt or (_utc_naive(sent_at) if sent_at else None)
    if original is not None and msg_sent is not None:
        ts = received_at - (msg_sent - original)
        if not (MIN_TIME <= ts < MAX_TIME):
            raise MessageErrors([MessageError(_loc_text(loc, ("sentAt",)), "sentAt and timestamp put the event outside any plausible time")])
    else:
        ts = original or received_at

    context = dict(msg.context or {})
    if msg.type in ("identify", "group"):
        props = dict(msg.traits or {})
        if msg.type == "identify" and not props and isinstance(context.get("traits"), dict):
            props = dict(context["traits"])  # RudderStack sends identify traits only here
    else:
        props = dict(msg.properties or {})
    if msg.type in ("page", "screen"):
        page = context.get("page") if isinstance(context.get("page"), dict) else {}
        for key in ("path", "url", "referrer", "title", "search"):
            if key not in props and page.get(key) is not None:
                props[key] = page[key]
        if msg.category is not None and "category" not in props:
            props["category"] = msg.category
    group_id = msg.groupId
    if group_id is None and context.get("groupId") is not None:
        group_id = str(context["groupId"])

    message_id = msg.messageId or _content_id(raw)
    return Event(
        message_id=message_id, type=msg.type, event=msg.event if msg.type == "track" else None,
        name=msg.name, user_id=msg.userId, anonymous_id=msg.anonymousId, group_id=group_id,
        previous_id=msg.previousId, ts=ts, original_ts=original, sent_at=msg_sent,
        received_at=received_at, properties=props, context=context,
    )


def normalize_batch(items: list[Any], received_at: datetime, prefix: str = "batch",
                    sent_at: datetime | None = None,
                    defaults: dict[str, Any] | None = None) -> list[Event]:
    """Normalise every message or raise MessageErrors for all the bad ones (nothing half-done).

    ``defaults`` are batch-level ``context``/``integrations`` merged into every item.
    """
    out: list[Event] = []
    errors: list[MessageError] = []
    received_at = _utc_naive(received_at)   # once here rather than once per message
    sent_at = _utc_naive(sent_at) if sent_at else None
    for i, raw in enumerate(items):
        if defaults and isinstance(raw, dict):
            for key, value in defaults.items():
                if isinstance(value, dict):
                    merged = dict(value)
                    merged.update(raw.get(key) or {})
                    raw = {**raw, key: merged}
        try:
            out.append(normalize_message(raw, received_at, f"{prefix}[{i}]", sent_at))
        except MessageErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise MessageErrors(errors)
    return out
