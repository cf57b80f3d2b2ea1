"""What the lead and video pages draw on heatmap strips beyond the video module's helpers: CTA responses
inside videos (type and video position, for the diamonds) and one lead's heatmaps for all its videos at once.

The video module's analytics count CTA clicks per video; the strips need each click's position, which
``leadscore.video.reconstruct.video_cta_sql`` gives per event. Time is an input (``as_of``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from leadscore.service.queries import lead_events_sql
from leadscore.store.dialect import quote_literal
from leadscore.video import read
from leadscore.video.reconstruct import video_cta_sql


def video_ctas(store, as_of: datetime, *, video_id: str | None = None, lead_id: str | None = None) -> list[dict[str, Any]]:
    events = read.EVENTS if lead_id is None else lead_events_sql(store, lead_id)
    sql = f"SELECT * FROM ({video_cta_sql(store.dialect, events, read.as_of_sql(store, as_of))}) c"
    if video_id is not None:
        sql += f" WHERE c.video_id = {quote_literal(video_id)}"
    return store.query_dicts(sql + " ORDER BY c.ts, c.message_id")


def lead_heatmaps(store, lead_id: str, as_of: datetime, durations: dict[str, float | None]) -> dict[str, list[int]]:
    """Per-second play counts of every video one lead watched, in one reconstruction query (the read
    helper runs one per video). ``durations``: video → duration (from the lead's viewing facts), so
    the cells are the same as ``leadscore.video.read.heatmaps``."""
    from leadscore.video.reconstruct import video_heatmap_sql
    from leadscore.video.simulate import cells

    events = lead_events_sql(store, lead_id)
    sql = (f"SELECT h.video_id, h.start_sec, h.end_sec, h.plays FROM ("
           f"{video_heatmap_sql(store.dialect, events, read.as_of_sql(store, as_of))}) h ORDER BY h.video_id, h.start_sec")
    runs: dict[str, list[dict]] = {}
    for r in store.query_dicts(sql):
        runs.setdefault(r["video_id"], []).append(r)
    out: dict[str, list[int]] = {}
    for video, rows in runs.items():
        duration = durations.get(video)
        n = cells(duration) if duration else max((r["end_sec"] for r in rows), default=0)
        counts = [0] * n
        for r in rows:
            for k in range(max(0, r["start_sec"]), min(n, r["end_sec"])):
                counts[k] = r["plays"]
        out[video] = counts
    return out
