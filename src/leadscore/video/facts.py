"""Video facts per viewer and video, as one SELECT the scoring engine embeds.

Built on the reconstruction in :mod:`leadscore.video.reconstruct` (played intervals → heatmap runs);
every figure is as of the given instant and uses only events with ``ts <= as_of``.
"""
from __future__ import annotations

from leadscore.store.dialect import Dialect
from leadscore.video.reconstruct import (
    DEFAULT_HEARTBEAT_S, DEFAULT_JITTER_S, DEFAULT_TOLERANCE_S, REJECT_REASONS, _ctes, _heatmap_ctes, _key, _names,
    _on, _with, video_cta_sql, video_heatmap_sql, video_intervals_sql, video_rejects_sql,
)

__all__ = [
    "VIEW_COLUMNS", "COMPLETION_THRESHOLDS", "REJECT_REASONS", "video_views_sql", "video_heat_and_views_sql",
    "video_intervals_sql", "video_heatmap_sql", "video_rejects_sql", "video_cta_sql",
]

COMPLETION_THRESHOLDS = (25, 50, 75, 80, 100)

VIEW_COLUMNS = (
    "lead_id", "video_id", "title", "category", "stage", "duration", "unique_seconds", "percent_watched",
    "watch_seconds", "replayed_seconds", "furthest_position", "sessions", "first_ts", "last_ts",
    "completed_25", "completed_50", "completed_75", "completed_80", "completed_100", "cta_clicks",
)


def _facts_ctes(d: Dialect) -> list[tuple[str, str]]:
    """The facts per (lead, video), on the integer keys of the reconstruction (see reconstruct._key)."""
    dbl = d.double()
    lv = _key(d, ["lead_id", "video_id"], "lv")
    k = _names(lv)
    return [
        ("lsv_ivagg", f"""
            SELECT {k}, MAX(end_pos) AS furthest, MAX(end_ts) AS iv_last FROM lsv_iv GROUP BY {k}"""),
        ("lsv_hagg", f"""
            SELECT {k},
                   CAST(SUM(end_sec - start_sec) AS BIGINT) AS unique_seconds,
                   CAST(SUM((end_sec - start_sec) * plays) AS BIGINT) AS watch_seconds,
                   CAST(SUM(CASE WHEN plays >= 2 THEN end_sec - start_sec ELSE 0 END) AS BIGINT) AS replayed_seconds
            FROM lsv_runs WHERE plays > 0 AND end_sec IS NOT NULL GROUP BY {k}"""),
        ("lsv_facts", f"""
            SELECT b.lead_id, b.video_id, b.cat_title AS title, b.cat_category AS category, b.cat_stage AS stage,
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
            FROM lsv_dur b
            LEFT JOIN lsv_ivagg i ON {_on(lv, 'i', 'b')}
            LEFT JOIN lsv_hagg h ON {_on(lv, 'h', 'b')}
            LEFT JOIN lsv_ctas t ON t.lead_id = b.lead_id AND t.video_id = b.video_id"""),
    ]


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
    ctes = _ctes(d, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s) + _heatmap_ctes(d) + _facts_ctes(d)
    completed = ",\n       ".join(
        f"CASE WHEN percent_watched >= {n} THEN TRUE ELSE FALSE END AS completed_{n}" for n in COMPLETION_THRESHOLDS)
    body = f"""SELECT lead_id, video_id, title, category, stage, duration, unique_seconds, percent_watched,
       watch_seconds, replayed_seconds, furthest_position, sessions, first_ts, last_ts,
       {completed},
       cta_clicks
FROM lsv_facts"""
    return _with(ctes, body, d)


HEAT_COLUMNS = ("start_sec", "end_sec", "plays")


def video_heat_and_views_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                             heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                             tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT giving both the heatmap runs and the viewer facts from one reconstruction (the two
    separate queries each rebuild it): rows with ``kind = 'run'`` carry lead_id, video_id and
    start_sec/end_sec/plays (as video_heatmap_sql), rows with ``kind = 'view'`` carry the VIEW_COLUMNS
    (as video_views_sql); the other columns are NULL. Materialise it once, then split on ``kind``."""
    d = dialect
    ctes = _ctes(d, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s) + _heatmap_ctes(d) + _facts_ctes(d)
    fact_cols = [c for c in VIEW_COLUMNS if c not in ("lead_id", "video_id")]
    types = {"title": d.text(), "category": d.text(), "stage": d.text(), "duration": d.double(),
             "percent_watched": d.double(), "furthest_position": d.double(), "first_ts": "TIMESTAMP",
             "last_ts": "TIMESTAMP"}
    completed = {f"completed_{n}": f"CASE WHEN percent_watched >= {n} THEN TRUE ELSE FALSE END"
                 for n in COMPLETION_THRESHOLDS}
    null = lambda c: f"CAST(NULL AS {types.get(c, 'BOOLEAN' if c.startswith('completed_') else 'BIGINT')}) AS {c}"  # noqa: E731
    runs = ", ".join(["'run' AS kind", "lead_id", "video_id", "start_sec", "end_sec", "plays"]
                     + [null(c) for c in fact_cols])
    views = ", ".join(["'view' AS kind", "lead_id", "video_id"] + [null(c) for c in HEAT_COLUMNS]
                      + [f"{completed[c]} AS {c}" if c in completed else c for c in fact_cols])
    return _with(ctes, f"SELECT {runs} FROM lsv_heat UNION ALL SELECT {views} FROM lsv_facts", d)
