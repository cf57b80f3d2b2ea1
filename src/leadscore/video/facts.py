"""Video facts per viewer and video, as one SELECT the scoring engine embeds.

Built on the reconstruction in :mod:`leadscore.video.reconstruct` (played intervals → heatmap runs);
every figure is as of the given instant and uses only events with ``ts <= as_of``.
"""
from __future__ import annotations

from leadscore.store.dialect import Dialect, quote_literal
from leadscore.video.reconstruct import (
    CTA_EVENT, DEFAULT_HEARTBEAT_S, DEFAULT_JITTER_S, DEFAULT_TOLERANCE_S, REJECT_REASONS,
    _ctes, _heatmap_ctes, _with, video_cta_sql, video_heatmap_sql, video_intervals_sql, video_rejects_sql,
)

__all__ = [
    "VIEW_COLUMNS", "COMPLETION_THRESHOLDS", "REJECT_REASONS", "video_views_sql", "video_intervals_sql",
    "video_heatmap_sql", "video_rejects_sql", "video_cta_sql",
]

COMPLETION_THRESHOLDS = (25, 50, 75, 80, 100)

VIEW_COLUMNS = (
    "lead_id", "video_id", "title", "category", "stage", "duration", "unique_seconds", "percent_watched",
    "watch_seconds", "replayed_seconds", "furthest_position", "sessions", "first_ts", "last_ts",
    "completed_25", "completed_50", "completed_75", "completed_80", "completed_100", "cta_clicks",
)


def video_views_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                    heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                    tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT (no trailing semicolon): one row per (lead_id, video_id) with accepted video events.

    ``events``: a relation or parenthesised subquery with the event-log columns plus ``lead_id``
    (e.g. ``resolved_events``); ``as_of``: a SQL timestamp expression (referenced once).
    ``catalog``: the catalog relation (video_id, title, duration, category, stage), referenced once.

    Columns (see VIEW_COLUMNS): title/category/stage from the catalog (NULL when the video is not in
    it); duration = catalog duration, else the longest total_length the viewer's player reported;
    unique_seconds = seconds of the video played at least once (a second counts when the playhead
    passed its middle); percent_watched = unique_seconds / cells × 100 (0–100; cells = the duration
    rounded half down, i.e. the number of one-second cells; NULL when the duration is unknown);
    watch_seconds = Σ plays over seconds (replays included); replayed_seconds = seconds played twice or
    more; furthest_position = furthest position played (0 when nothing played); sessions = distinct
    playback sessions; first_ts = the first accepted video event (e.g. Playback Started); last_ts =
    the wall-clock end of the last played interval (the last video event's time when nothing played); completed_N =
    percent_watched >= N; cta_clicks = ``CTA Clicked`` events carrying this content_asset_id.
    """
    d = dialect
    dbl = d.double()
    ctes = _ctes(d, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s) + _heatmap_ctes()
    ctes += [
        ("lsv_base", """
            SELECT lead_id, video_id, MAX(duration) AS duration, COUNT(DISTINCT session_id) AS sessions,
                   MIN(ts) AS ev_first, MAX(ts) AS ev_last
            FROM lsv_ok GROUP BY lead_id, video_id"""),
        ("lsv_ivagg", """
            SELECT lead_id, video_id, MAX(end_pos) AS furthest, MAX(end_ts) AS iv_last
            FROM lsv_iv GROUP BY lead_id, video_id"""),
        ("lsv_hagg", """
            SELECT lead_id, video_id,
                   CAST(SUM(end_sec - start_sec) AS BIGINT) AS unique_seconds,
                   CAST(SUM((end_sec - start_sec) * plays) AS BIGINT) AS watch_seconds,
                   CAST(SUM(CASE WHEN plays >= 2 THEN end_sec - start_sec ELSE 0 END) AS BIGINT) AS replayed_seconds
            FROM lsv_heat GROUP BY lead_id, video_id"""),
        ("lsv_ctas", f"""
            SELECT lead_id, vid_own AS video_id, COUNT(*) AS cta_clicks FROM lsv_src
            WHERE event = {quote_literal(CTA_EVENT)} AND vid_own IS NOT NULL GROUP BY lead_id, vid_own"""),
        ("lsv_facts", f"""
            SELECT b.lead_id, b.video_id, c.cat_title AS title, c.cat_category AS category, c.cat_stage AS stage,
                   b.duration,
                   COALESCE(h.unique_seconds, CAST(0 AS BIGINT)) AS unique_seconds,
                   CASE WHEN b.duration IS NULL OR b.duration <= 0 THEN CAST(NULL AS {dbl})
                        ELSE LEAST(CAST(100 AS {dbl}),
                                   CAST(COALESCE(h.unique_seconds, 0) AS {dbl}) * 100
                                   / CAST(CASE WHEN b.duration > 0.5 THEN CEIL(b.duration - 0.5) ELSE 1 END AS {dbl}))
                        END AS percent_watched,
                   COALESCE(h.watch_seconds, CAST(0 AS BIGINT)) AS watch_seconds,
                   COALESCE(h.replayed_seconds, CAST(0 AS BIGINT)) AS replayed_seconds,
                   COALESCE(i.furthest, CAST(0 AS {dbl})) AS furthest_position,
                   CAST(b.sessions AS BIGINT) AS sessions,
                   b.ev_first AS first_ts,
                   COALESCE(i.iv_last, b.ev_last) AS last_ts,
                   CAST(COALESCE(t.cta_clicks, 0) AS BIGINT) AS cta_clicks
            FROM lsv_base b
            LEFT JOIN lsv_ivagg i ON i.lead_id = b.lead_id AND i.video_id = b.video_id
            LEFT JOIN lsv_hagg h ON h.lead_id = b.lead_id AND h.video_id = b.video_id
            LEFT JOIN lsv_ctas t ON t.lead_id = b.lead_id AND t.video_id = b.video_id
            LEFT JOIN lsv_cat c ON c.cat_video_id = b.video_id"""),
    ]
    completed = ",\n       ".join(
        f"CASE WHEN percent_watched >= {n} THEN TRUE ELSE FALSE END AS completed_{n}" for n in COMPLETION_THRESHOLDS)
    body = f"""SELECT lead_id, video_id, title, category, stage, duration, unique_seconds, percent_watched,
       watch_seconds, replayed_seconds, furthest_position, sessions, first_ts, last_ts,
       {completed},
       cta_clicks
FROM lsv_facts"""
    return _with(ctes, body)
