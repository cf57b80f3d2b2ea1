"""Building small hand-checked populations for engine tests."""
from __future__ import annotations

import itertools
from datetime import datetime

from leadscore.events import normalize_batch
from leadscore.model import parse_model

_ids = itertools.count()


def track(user: str, event: str, ts: str, **props) -> dict:
    return {"type": "track", "userId": user, "event": event, "timestamp": ts, "properties": props,
            "messageId": f"m{next(_ids)}"}


def page(user: str, path: str, ts: str, **props) -> dict:
    return {"type": "page", "userId": user, "timestamp": ts, "properties": {"path": path, **props},
            "messageId": f"m{next(_ids)}"}


def identify(user: str, ts: str = "2026-01-01T00:00:00Z", **traits) -> dict:
    return {"type": "identify", "userId": user, "timestamp": ts, "traits": traits, "messageId": f"m{next(_ids)}"}


def load(store, messages: list[dict]) -> None:
    store.ingest(normalize_batch(messages, datetime(2026, 11, 1)))


def model(yaml_text: str):
    return parse_model(yaml_text, "test.yaml")
