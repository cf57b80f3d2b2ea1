"""normalize_message has a plain-Python fast path for well-formed messages and pydantic for the rest:
on any message the two must give the same event, or the same errors at the same places."""
import random
from datetime import datetime, timezone

import pytest

import leadscore.events.normalize as N

VALUES = {
    "type": ["track", "page", "screen", "identify", "group", "alias", "Track", "", None, 1, "foo"],
    "messageId": [None, "", "m1", "x" * 100, "x" * 101, "x" * 201, 5, 2**62, 1.5, True, [], {}],
    "userId": [None, "", "u1", "u" * 200, "u" * 201, 7, -3, 0, 3.0, False, {}],
    "anonymousId": [None, "", "a1", 8, 1.0, True],
    "groupId": [None, "", "g1", 9, 2.5],
    "previousId": [None, "", "p1", 10],
    "timestamp": [None, "2026-11-23T10:00:00.000Z", "2026-11-23T10:00:00+05:30", "2026-11-23", "2026-11-23 10:00:00",
                  "2026-11-23T10:00:00", "1700000000", 1700000000, 1.7e9, "9999-01-01T00:00:00Z",
                  "1989-12-31T23:59:59Z", "2026-13-01T00:00:00Z", "garbage", "2026-11-23T10:00:00.1234567Z",
                  "2026-11-23t10:00:00z", "2026-11-23T10:00:00+0530", True],
    "originalTimestamp": [None, "2026-11-23T09:00:00Z", "2026-11-23T09:00:00-08:00", 5, "x"],
    "sentAt": [None, "2026-11-23T10:00:01Z", "2026-11-23T10:00:01.5+01:00", "bad", 3],
    "context": [None, {}, {"library": {"name": "x"}}, {"traits": {"email": "a@b.c"}}, {"page": {"path": "/p", "url": "u"}},
                {"groupId": "G"}, [], "ctx", 1, {"user_agent": "Mozilla"}],
    "properties": [None, {}, {"a": 1}, {"path": "/x"}, [], "p", {"k" * 100001: 1},
                   {"session_id": "s", "content_asset_id": "v1", "position": 12.5, "total_length": 60}],
    "traits": [None, {}, {"email": "e@x.com", "company": {"name": "A"}}, [], "t"],
    "event": [None, "", "  ", "Page Viewed", "Video Content Playing", "e" * 200, "e" * 201, 5, ["x"], "e" * 100001],
    "name": [None, "Home", 3, ""],
    "category": [None, "Docs", 4],
    "user_id": [None, "su1"],
    "extra": [None, "anything", {"x": 1}],
}
NOW = datetime(2026, 11, 23, 10, 0, 2, tzinfo=timezone.utc)
SENT = [None, datetime(2026, 11, 23, 10, 0, 1, tzinfo=timezone.utc), datetime(2026, 11, 23, 11, 0, 1)]


def _message(r: random.Random) -> dict:
    m = {}
    for key, values in VALUES.items():
        if r.random() < (0.7 if key in ("type", "userId", "messageId", "timestamp", "event") else 0.3):
            m[key] = r.choice(values[:4]) if r.random() < 0.8 else r.choice(values)
    if r.random() < 0.5:
        m["type"] = r.choice(["track", "page", "identify", "group", "alias"])
    return m


def _outcome(m: dict, sent):
    try:
        return "ok", N.normalize_message(dict(m), NOW, "batch[0]", sent).__dict__
    except N.MessageErrors as exc:
        return "err", [(e.loc, e.message) for e in exc.errors]


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_and_pydantic_agree_on_every_message(seed, monkeypatch):
    r = random.Random(seed)
    fast = N._fast_message
    took_fast = 0
    for _ in range(3000):
        m, sent = _message(r), r.choice(SENT)
        monkeypatch.setattr(N, "_fast_message", fast)
        with_fast = _outcome(m, sent)
        took_fast += fast(N._snake_to_camel(dict(m))) is not None
        monkeypatch.setattr(N, "_fast_message", lambda raw: None)   # pydantic for everything
        assert _outcome(m, sent) == with_fast, m
    assert took_fast > 200   # the comparison exercised the fast path, not only the fallback
