"""CTA responses inside videos (type and video position), for the diamonds on heatmap strips.

The video module's analytics count CTA clicks per video; the strips need each click's position, which
``leadscore.video.reconstruct.video_cta_sql`` gives per event. Time is an input (``as_of``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from leadscore.store.dialect import quote_literal
from leadscore.video import read
from leadscore.video.reconstruct import video_cta_sql


def video_ctas(store, as_of: datetime, *, video_id: str | None = None, lead_id: str | None = None) -> list[dict[str, Any]]:
    events = read.EVENTS if lead_id is None else f"(SELECT * FROM {read.EVENTS} WHERE lead_id = {quote_literal(lead_id)})"
    sql = f"SELECT * FROM ({video_cta_sql(store.dialect, events, read.as_of_sql(store, as_of))}) c"
    if video_id is not None:
        sql += f" WHERE c.video_id = {quote_literal(video_id)}"
    return store.query_dicts(sql + " ORDER BY c.ts, c.message_id")
