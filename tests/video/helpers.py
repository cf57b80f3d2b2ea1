"""Small builders shared by the video tests: Segment messages in, per-second heatmaps out."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from leadscore.events.normalize import normalize_batch
from leadscore.video import read
from leadscore.video.picture import runs  # noqa: F401  (runs of equal counts, grey included)

T0 = datetime(2026, 11, 2, 9, 0, 0)
AS_OF = datetime(2026, 11, 20)
RECEIVED = datetime(2026, 11, 2, 12, 0, 0)
_ids = itertools.count()


class Viewer:
    """Writes one viewer's video events by hand: ``v.ev("Video Content Playing", 10, position=10)``."""

    def __init__(self, user: str = "u1", session: str = "s1", video: str = "v1", total: float | None = 60,
                 t0: datetime = T0):
        self.user, self.session, self.video, self.total, self.t0 = user, session, video, total, t0
        self.messages: list[dict] = []

    def ev(self, name: str, t: float, **props) -> dict:
        body = {"session_id": self.session}
        body["asset_id" if name.startswith("Video Content") else "content_asset_id"] = self.video
        if self.total is not None:
            body["total_length"] = self.total
        body.update(props)
        body = {k: v for k, v in body.items() if v is not None}
        msg = {"type": "track", "event": name, "userId": self.user, "messageId": f"hm-{next(_ids)}",
               "timestamp": (self.t0 + timedelta(seconds=t)).isoformat() + "Z", "properties": body}
        self.messages.append(msg)
        return msg


def ingest(store, messages: list[dict]) -> None:
    store.ingest(normalize_batch(messages, RECEIVED))


def counts(store, video: str, lead: str, duration: float | None = None, as_of: datetime = AS_OF) -> list[int]:
    maps = read.heatmaps(store, video, as_of, lead_id=lead, duration=duration)
    if not maps:
        return []
    assert len(maps) == 1
    return maps[0].counts


def facts(store, lead: str, video: str, as_of: datetime = AS_OF) -> dict:
    rows = [r for r in read.views(store, as_of, lead_id=lead) if r["video_id"] == video]
    assert len(rows) == 1, rows
    return rows[0]
