"""Run the video reconstruction against a store: heatmaps, viewer facts and reject counts as Python values.

On DuckDB the heatmaps and viewer facts come from the compiled walk (leadscore.video.fast: the same
rows, ~3× less work); on PostgreSQL from the SQL (reconstruct.py / facts.py)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadscore.store.dialect import quote_literal
from leadscore.video.facts import VIEW_COLUMNS, video_views_sql
from leadscore.video.reconstruct import video_heatmap_sql, video_intervals_sql, video_rejects_sql
from leadscore.video.simulate import cells

EVENTS = "resolved_events"


def as_of_sql(store, as_of: datetime) -> str:
    if as_of.tzinfo is not None:
        raise ValueError("as_of must be naive UTC (the event log's ts is naive UTC)")
    return store.dialect.ts_literal(as_of.isoformat(sep=" "))


def _events(video_id: str | None, lead_id: str | None) -> str:
    """The resolved events, narrowed to one lead when asked (cheaper; facts are per lead anyway)."""
    if lead_id is None:
        return EVENTS
    return f"(SELECT * FROM {EVENTS} WHERE lead_id = {quote_literal(lead_id)})"


def _rows(store, sql: str) -> list[dict[str, Any]]:
    return store.query_dicts(sql)


def use_kernel(store) -> bool:
    """Whether the store takes the compiled path (DuckDB) rather than the SQL."""
    return store.dialect.name == "duckdb"


def heat_and_views(store, as_of: datetime, events: str = EVENTS):
    """Heatmap runs and viewer facts of every viewer in ``events`` as Arrow tables, on a DuckDB store
    (leadscore.video.fast)."""
    from leadscore.video.fast import heat_and_views as fast_heat_and_views

    with store.transaction() as conn:
        return fast_heat_and_views(conn, events, as_of_sql(store, as_of))


@dataclass
class ViewerHeatmap:
    lead_id: str
    video_id: str
    counts: list[int]          # plays per second of the video; 0 = not watched


def heatmaps(store, video_id: str, as_of: datetime, lead_id: str | None = None,
             duration: float | None = None) -> list[ViewerHeatmap]:
    """Per-second play counts of every viewer (or one lead) of a video, as of an instant."""
    if use_kernel(store):
        import pyarrow.compute as pc

        table = heat_and_views(store, as_of, _events(video_id, lead_id)).runs
        table = table.filter(pc.equal(table["video_id"], video_id))
        runs = table.sort_by([("lead_id", "ascending"), ("start_sec", "ascending")]).to_pylist()
    else:
        sql = (f"SELECT h.lead_id, h.video_id, h.start_sec, h.end_sec, h.plays FROM ("
               f"{video_heatmap_sql(store.dialect, _events(video_id, lead_id), as_of_sql(store, as_of))}) h "
               f"WHERE h.video_id = {quote_literal(video_id)} ORDER BY h.lead_id, h.start_sec")
        runs = _rows(store, sql)
    if duration is None:
        duration = video_duration(store, video_id, as_of)
    n = cells(duration) if duration else max((r["end_sec"] for r in runs), default=0)
    out: dict[str, list[int]] = {}
    for r in runs:
        counts = out.setdefault(r["lead_id"], [0] * n)
        for k in range(max(0, r["start_sec"]), min(n, r["end_sec"])):
            counts[k] = r["plays"]
    return [ViewerHeatmap(lead, video_id, counts) for lead, counts in out.items()]


def video_duration(store, video_id: str, as_of: datetime) -> float | None:
    """Catalog duration, else the longest total_length any player reported for the video."""
    rows = store.query("SELECT duration FROM video_catalog WHERE video_id = ?", (video_id,))
    if rows and rows[0][0]:
        return float(rows[0][0])
    sql = (f"SELECT MAX(i.duration) FROM ({video_intervals_sql(store.dialect, EVENTS, as_of_sql(store, as_of))}) i "
           f"WHERE i.video_id = {quote_literal(video_id)}")
    value = store.query(sql)[0][0]
    return float(value) if value is not None else None


def views(store, as_of: datetime, lead_id: str | None = None) -> list[dict[str, Any]]:
    """The viewer facts (VIEW_COLUMNS) of every lead, or one."""
    if use_kernel(store):
        table = heat_and_views(store, as_of, _events(None, lead_id)).views
        rows = table.sort_by([("lead_id", "ascending"), ("video_id", "ascending")]).to_pylist()
    else:
        sql = (f"SELECT * FROM ({video_views_sql(store.dialect, _events(None, lead_id), as_of_sql(store, as_of))}) v "
               "ORDER BY v.lead_id, v.video_id")
        rows = _rows(store, sql)
    return [{k: r[k] for k in VIEW_COLUMNS} for r in rows]


def rejects(store, as_of: datetime) -> list[dict[str, Any]]:
    sql = (f"SELECT * FROM ({video_rejects_sql(store.dialect, EVENTS, as_of_sql(store, as_of))}) r "
           "ORDER BY r.ts, r.message_id, r.reason")
    return _rows(store, sql)


def reject_counts(store, as_of: datetime) -> dict[str, int]:
    """How many events/segments were dropped, clamped or not credited, by reason."""
    return dict(Counter(r["reason"] for r in rejects(store, as_of)))
