"""Heatmap runs and viewer facts on DuckDB through the compiled walk (leadscore.video.kernel).

The same rows and values as ``video_heatmap_sql`` / ``video_views_sql`` (reconstruct.py, facts.py)
for about a quarter of the CPU (bench/RESULTS.md, "Video"): DuckDB filters the events that carry a
video session and hands their typed columns over unsorted, with 64-bit hashes instead of text for the
event name, the video, the session and the viewer (the viewer's id itself comes along, for the
output); the kernel partitions, sorts and walks them; DuckDB then joins the catalog and the CTA clicks
onto the facts with the SQL's own expressions. PostgreSQL, Spark and the scoring engine keep the SQL.

Keys, as the SQL's DuckDB keys (reconstruct._key): a viewer is a pair of 64-bit hashes of its id, a
session within a viewer the 64-bit hash of its id, an event name or a video id its 64-bit hash (the
known names and ids are checked for collisions among themselves); different ids get the same key
only if their 64-bit hashes collide: treated as never.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.store.dialect import quote_literal
from leadscore.video.facts import COMPLETION_THRESHOLDS
from leadscore.video.reconstruct import (
    CTA_EVENT, DEFAULT_HEARTBEAT_S, DEFAULT_JITTER_S, DEFAULT_TOLERANCE_S, MAX_RATE, SEEK_STARTED, VIDEO_EVENTS,
)

_ST, _START = None, None
_NAN = "CAST('nan' AS DOUBLE)"   # NULL numbers as NaN: every comparison with them is false, as with NULL


def _tables():
    global _ST, _START
    if _ST is None:
        from leadscore.video.kernel import state_table
        _ST, _START = state_table(VIDEO_EVENTS)
    return _ST, _START


# (wall s, CPU s of the process) of each step of the last call, for bench/video_bench.py
TIMINGS: dict[str, tuple[float, float]] = {}


@contextmanager
def _step(name: str):
    t, c = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        TIMINGS[name] = (time.perf_counter() - t, time.process_time() - c)


@dataclass
class HeatAndViews:
    runs: pa.Table    # lead_id, video_id, start_sec, end_sec, plays (as video_heatmap_sql)
    views: pa.Table   # facts.VIEW_COLUMNS (as video_views_sql)


def _events_sql(events: str, as_of: str) -> str:
    """The rows the kernel reads: every event with a session id (video events; kernel.part_scatter
    drops others by their name's hash), integer keys and hashes instead of text but the viewer id."""
    return f"""
        SELECT e.lead_id, hash(e.lead_id) AS lh, hash(e.lead_id, 'lsv') AS lh2, hash(e.video_session_id) AS sh,
               epoch_us(e.ts) AS t, hash(e.event) AS eh, hash(e.video_asset_id) AS vh,
               CAST(CASE WHEN e.video_position IS NOT NULL THEN 1 ELSE 0 END
                    + CASE WHEN e.video_seek_position IS NOT NULL THEN 2 ELSE 0 END
                    + CASE WHEN e.video_asset_id IS NOT NULL THEN 4 ELSE 0 END AS INTEGER) AS flags,
               COALESCE(e.video_position, {_NAN}) AS pos, COALESCE(e.video_total_length, {_NAN}) AS tot,
               COALESCE(e.video_playback_rate, {_NAN}) AS rate
        FROM {events} e
        WHERE e.ts <= {as_of} AND e.lead_id IS NOT NULL AND e.video_session_id IS NOT NULL"""


_COLS = (("lh", np.uint64), ("lh2", np.uint64), ("sh", np.uint64), ("t", np.int64), ("eh", np.uint64),
         ("vh", np.uint64), ("flags", np.int32), ("pos", np.float64), ("tot", np.float64), ("rate", np.float64))
_OUT = (np.uint64, np.uint64, np.uint64, np.int64, np.int32, np.float64, np.float64, np.float64)


def _batch_arrays(batch: pa.RecordBatch) -> list[np.ndarray]:
    """The kernel's columns of one record batch as numpy arrays (no copy: none has nulls)."""
    return [np.ascontiguousarray(batch.column(c).to_numpy(zero_copy_only=False), dtype=t) for c, t in _COLS]


def kernel_runs_and_facts(conn, events: str, as_of: str, catalog: str = "video_catalog", *,
                          heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                          tolerance_s: float = DEFAULT_TOLERANCE_S, threads: int | None = None):
    """The kernel's raw output: (facts table with text keys and µs times, runs table, video ids)."""
    from leadscore.video.kernel import PART_BITS, part_count, part_scatter, walk

    TIMINGS.clear()
    with _step("videos"):
        # the video ids (codes in string order, so MAX over codes is the SQL's MAX over ids) and the
        # event names, by their 64-bit hashes (as the SQL's DuckDB keys: a collision is treated as never)
        found = conn.execute(f"SELECT DISTINCT e.video_asset_id, hash(e.video_asset_id) FROM {events} e "
                             "WHERE e.video_asset_id IS NOT NULL").fetchall()
        found.sort()
        vids = [v for v, _ in found]
        v_hash = np.array([h for _, h in found], np.uint64)
        v_sort = np.argsort(v_hash, kind="stable")
        names = list(VIDEO_EVENTS)
        values = ", ".join(f"({quote_literal(name)}, {i})" for i, name in enumerate(names))
        e_hash = np.array(conn.execute(f"SELECT hash(n) FROM (VALUES {values}) v (n, i) ORDER BY i").fetchall(),
                          np.uint64).reshape(-1)
        e_sort = np.argsort(e_hash, kind="stable")
        if len(set(v_hash.tolist())) < len(vids) or len(set(e_hash.tolist())) < len(names):
            raise RuntimeError("two video ids or event names share a 64-bit hash")
        cat = dict(conn.execute(f"SELECT video_id, CAST(duration AS DOUBLE) FROM {catalog}").fetchall())
        cat_dur = np.array([np.nan if cat.get(v) is None else cat[v] for v in vids], np.float64)
        vid_arr = pa.array(vids, pa.string())
    with _step("events query"):
        tab = conn.sql(_events_sql(events, as_of)).to_arrow_table()
    lead = tab.column("lead_id")
    seek_rank = VIDEO_EVENTS[SEEK_STARTED][0]
    # pass 1 of the radix sort: the video events by the top bits of the viewer hash, chunk by chunk
    with _step("partition"):
        batches = [_batch_arrays(b) for b in tab.to_batches() if b.num_rows]
        counts = np.zeros((1 << PART_BITS) + 1, np.int64)
        for cols in batches:
            part_count(cols[0], counts)
        pstarts = np.cumsum(counts)
        fill = pstarts[:-1].copy()
        out = [np.empty(int(pstarts[-1]), t) for t in _OUT] + [np.empty(int(pstarts[-1]), np.int64)]
        ranks = np.array([VIDEO_EVENTS[names[i]][0] for i in e_sort], np.int64)
        lookups = (e_hash[e_sort], ranks, v_hash[v_sort], v_sort.astype(np.int64), seek_rank)
        bases = np.cumsum([0] + [len(c[0]) for c in batches])

        def scatter(p_range):
            for cols, base in zip(batches, bases):
                part_scatter(*cols, *lookups, int(base), fill, p_range[0], p_range[1], *out)

        n_parts = len(pstarts) - 1
        threads = threads or min(8, os.cpu_count() or 1)
        if threads > 1 and pstarts[-1] > 100_000:
            # each thread writes the partitions of its own range (reading every chunk)
            cuts = np.searchsorted(pstarts, np.linspace(0, pstarts[-1], threads + 1)[1:-1])
            bounds = [0, *[int(c) for c in cuts], n_parts]
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(scatter, zip(bounds, bounds[1:])))
        else:
            scatter((0, n_parts))
        pends = fill
        n = int((pends - pstarts[:-1]).sum())
        del batches, tab
    st_of, start_of = _tables()
    args = (*out, cat_dur, st_of, start_of, seek_rank, float(heartbeat_s) + float(jitter_s),
            float(tolerance_s), float(MAX_RATE))
    with _step("walk"):
        if threads > 1 and n > 100_000:
            # the partitions in parts of about equal rows, one thread each (the kernel releases the GIL)
            cuts = np.searchsorted(pstarts, np.linspace(0, pstarts[-1], threads + 1)[1:-1])
            bounds = [0, *[int(c) for c in cuts], n_parts]
            with ThreadPoolExecutor(threads) as ex:
                parts = list(ex.map(lambda ab: walk(pstarts, pends, ab[0], ab[1], *args), zip(bounds, bounds[1:])))
        else:
            parts = [walk(pstarts, pends, 0, n_parts, *args)]
    with _step("tables"):
        offsets = np.cumsum([0] + [len(p[0]) for p in parts])[:-1]
        cols = [np.concatenate([p[k] for p in parts]) for k in range(10)]
        r_fact = np.concatenate([p[10] + b for p, b in zip(parts, offsets)])
        r_cols = [np.concatenate([p[k] for p in parts]) for k in (11, 12, 13)]
        f_row, f_vid = cols[0], cols[1]
        lead_of = pc.take(lead, pa.array(f_row))
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
    video_views_sql (catalog fields, percent, completion, CTA clicks): change them together
    (tests/video/test_kernel.py compares the two)."""
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
        with _step("facts query"):
            views = conn.sql(_views_sql("lsk_facts", events, as_of, catalog)).to_arrow_table()
    finally:
        conn.unregister("lsk_facts")
    return HeatAndViews(runs=runs, views=views)
