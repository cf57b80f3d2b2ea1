"""Heatmap runs and viewer facts on DuckDB through the compiled walk (leadscore.video.kernel).

The same results as ``video_heatmap_sql`` / ``video_views_sql`` (reconstruct.py, facts.py), ~3× less
work (bench/RESULTS.md, "Video"): DuckDB filters the video events and hands their typed columns over
unsorted (integer codes for the event, the video and the keys, no per-event text but the viewer id),
the kernel buckets, sorts and walks them, and DuckDB joins the catalog and the CTA clicks onto the
facts with the SQL's own expressions. PostgreSQL, Spark and the scoring engine keep the SQL.

Keys, as the SQL's DuckDB keys (reconstruct._key): a viewer is a pair of 64-bit hashes of its id, a
session within a viewer the 64-bit hash of its id; different ids get the same key only if their own
64-bit hashes collide: treated as never.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.store.dialect import quote_literal
from leadscore.video.reconstruct import (
    CTA_EVENT, DEFAULT_HEARTBEAT_S, DEFAULT_JITTER_S, DEFAULT_TOLERANCE_S, MAX_RATE, SEEK_STARTED, VIDEO_EVENTS,
)

COMPLETION_THRESHOLDS = (25, 50, 75, 80, 100)
_ST, _START = None, None


def _tables():
    global _ST, _START
    if _ST is None:
        from leadscore.video.kernel import state_table
        _ST, _START = state_table(VIDEO_EVENTS)
    return _ST, _START


@dataclass
class HeatAndViews:
    runs: pa.Table    # lead_id, video_id, start_sec, end_sec, plays (as video_heatmap_sql)
    views: pa.Table   # facts.VIEW_COLUMNS (as video_views_sql)


def _evmap() -> str:
    values = ", ".join(f"({quote_literal(k)}, {r})" for k, (r, _) in VIDEO_EVENTS.items())
    return f"(SELECT * FROM (VALUES {values}) lsk_v (m_event, erank))"


def _events_sql(events: str, as_of: str) -> str:
    seek_rank = VIDEO_EVENTS[SEEK_STARTED][0]
    pos_ok = f"(e.video_position IS NOT NULL AND NOT (m.erank = {seek_rank} AND e.video_seek_position IS NULL))"
    return f"""
        SELECT e.lead_id, hash(e.lead_id) AS lh, hash(e.lead_id, 'lsv') AS lh2, hash(e.video_session_id) AS sh,
               epoch_us(e.ts) * 32 + m.erank AS ok,
               CAST(m.erank + CASE WHEN {pos_ok} THEN 16 ELSE 0 END + 32 * (COALESCE(v.v_code, -1) + 1) AS INTEGER) AS code,
               e.video_position AS pos, e.video_total_length AS tot, e.video_playback_rate AS rate
        FROM {events} e JOIN {_evmap()} m ON m.m_event = e.event
        LEFT JOIN lsk_vids v ON v.v_id = e.video_asset_id
        WHERE e.ts <= {as_of} AND e.lead_id IS NOT NULL AND e.video_session_id IS NOT NULL"""


def _np(col: pa.ChunkedArray, dtype) -> np.ndarray:
    """A column as one numpy array (nulls of a float column as NaN)."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count and pa.types.is_floating(arr.type):
        arr = pc.fill_null(arr, float("nan"))
    return np.ascontiguousarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def kernel_runs_and_facts(conn, events: str, as_of: str, catalog: str = "video_catalog", *,
                          heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                          tolerance_s: float = DEFAULT_TOLERANCE_S, threads: int | None = None):
    """The kernel's raw output: (facts table with text keys and µs times, runs table, video ids)."""
    from leadscore.video.kernel import bucket_scatter, walk

    vids = sorted(r[0] for r in conn.execute(
        f"SELECT DISTINCT e.video_asset_id FROM {events} e WHERE e.video_asset_id IS NOT NULL").fetchall())
    vid_arr = pa.array(vids, pa.string())
    conn.register("lsk_vids", pa.table({"v_id": vid_arr, "v_code": pa.array(np.arange(len(vids), dtype=np.int32))}))
    try:
        cat = conn.execute(f"SELECT v.v_code, CAST(c.duration AS DOUBLE) FROM lsk_vids v "
                           f"JOIN {catalog} c ON c.video_id = v.v_id").fetchall()
        tab = conn.sql(_events_sql(events, as_of)).to_arrow_table()
    finally:
        conn.unregister("lsk_vids")
    cat_dur = np.full(len(vids), np.nan)
    for code, dur in cat:
        if dur is not None:
            cat_dur[code] = dur
    n = tab.num_rows
    lead = tab.column("lead_id")
    cols = [_np(tab.column(c), t) for c, t in (("lh", np.uint64), ("lh2", np.uint64), ("sh", np.uint64),
                                                  ("ok", np.int64), ("code", np.int32), ("pos", np.float64),
                                                  ("tot", np.float64), ("rate", np.float64))]
    del tab
    bits = int(min(24, max(1, math.log2(max(n, 2) / 8))))
    *cols, row, starts = bucket_scatter(*cols, bits)
    st_of, start_of = _tables()
    args = (*cols, cat_dur, st_of, start_of, VIDEO_EVENTS[SEEK_STARTED][0], float(heartbeat_s) + float(jitter_s),
            float(tolerance_s), float(MAX_RATE))
    nb = len(starts) - 1
    threads = threads or min(2, os.cpu_count() or 1)
    if threads > 1 and n > 100_000:
        # split the buckets into parts of about equal rows, one thread each (the kernel releases the GIL)
        cuts = np.searchsorted(starts, np.linspace(0, n, threads + 1)[1:-1])
        bounds = [0, *[int(c) for c in cuts], nb]
        with ThreadPoolExecutor(threads) as ex:
            parts = list(ex.map(lambda ab: walk(starts, ab[0], ab[1], *args), zip(bounds, bounds[1:])))
    else:
        parts = [walk(starts, 0, nb, *args)]
    base = np.cumsum([0] + [len(p[0]) for p in parts])[:-1]
    cols = [np.concatenate([p[k] for p in parts]) for k in range(10)]
    r_fact = np.concatenate([p[10] + b for p, b in zip(parts, base)])
    r_cols = [np.concatenate([p[k] for p in parts]) for k in (11, 12, 13)]
    f_row, f_vid = cols[0], cols[1]
    lead_of = pc.take(lead, pa.array(row[f_row]))
    vid_of = pc.take(vid_arr, pa.array(f_vid))
    facts = pa.table({
        "lead_id": lead_of, "video_id": vid_of,
        "duration": pa.array(cols[2], from_pandas=True), "unique_seconds": cols[3], "watch_seconds": cols[4],
        "replayed_seconds": cols[5], "furthest": pa.array(cols[6], from_pandas=True), "sessions": cols[7],
        "first_us": cols[8], "last_us": cols[9],
    })
    runs = pa.table({"lead_id": pc.take(lead_of, pa.array(r_fact)), "video_id": pc.take(vid_of, pa.array(r_fact)),
                     "start_sec": r_cols[0], "end_sec": r_cols[1], "plays": r_cols[2]})
    return facts, runs


def _views_sql(facts: str, events: str, as_of: str, catalog: str) -> str:
    """The viewer facts from the kernel's table, with the expressions of facts._facts_ctes /
    video_views_sql (catalog fields, percent, completion, CTA clicks)."""
    completed = ",\n       ".join(
        f"CASE WHEN percent_watched >= {n} THEN TRUE ELSE FALSE END AS completed_{n}" for n in COMPLETION_THRESHOLDS)
    return f"""
WITH lsv_ctas AS (
    SELECT lsv_e.lead_id, lsv_e.video_asset_id AS video_id, COUNT(*) AS cta_clicks FROM {events} lsv_e
    WHERE lsv_e.ts <= {as_of} AND lsv_e.lead_id IS NOT NULL AND lsv_e.event = {quote_literal(CTA_EVENT)}
      AND lsv_e.video_asset_id IS NOT NULL GROUP BY lsv_e.lead_id, lsv_e.video_asset_id),
lsv_facts AS (
    SELECT b.lead_id, b.video_id, c.title, c.category, c.stage, b.duration, b.unique_seconds,
           CASE WHEN b.duration IS NULL OR b.duration <= 0 THEN CAST(NULL AS DOUBLE)
                ELSE LEAST(CAST(100 AS DOUBLE),
                           CAST(b.unique_seconds AS DOUBLE) * 100
                           / CAST(CASE WHEN b.duration > 0.5 THEN CEIL(b.duration - 0.5) ELSE 1 END AS DOUBLE))
                END AS percent_watched,
           b.watch_seconds, b.replayed_seconds, COALESCE(b.furthest, CAST(0 AS DOUBLE)) AS furthest_position,
           b.sessions, make_timestamp(b.first_us) AS first_ts, make_timestamp(b.last_us) AS last_ts,
           CAST(COALESCE(t.cta_clicks, 0) AS BIGINT) AS cta_clicks
    FROM {facts} b
    LEFT JOIN {catalog} c ON c.video_id = b.video_id
    LEFT JOIN lsv_ctas t ON t.lead_id = b.lead_id AND t.video_id = b.video_id)
SELECT lead_id, video_id, title, category, stage, duration, unique_seconds, percent_watched,
       watch_seconds, replayed_seconds, furthest_position, sessions, first_ts, last_ts,
       {completed},
       cta_clicks
FROM lsv_facts"""


def heat_and_views(conn, events: str, as_of: str, catalog: str = "video_catalog", *,
                   heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                   tolerance_s: float = DEFAULT_TOLERANCE_S, threads: int | None = None) -> HeatAndViews:
    """Heatmap runs and viewer facts of every viewer in ``events`` (a DuckDB relation with the
    event-log columns plus ``lead_id``) as of ``as_of`` (a SQL timestamp expression), on a DuckDB
    connection: the same rows and values as video_heatmap_sql and video_views_sql."""
    facts, runs = kernel_runs_and_facts(conn, events, as_of, catalog, heartbeat_s=heartbeat_s, jitter_s=jitter_s,
                                        tolerance_s=tolerance_s, threads=threads)
    conn.register("lsk_facts", facts)
    try:
        views = conn.sql(_views_sql("lsk_facts", events, as_of, catalog)).to_arrow_table()
    finally:
        conn.unregister("lsk_facts")
    return HeatAndViews(runs=runs, views=views)
