"""Reconstruction of what each viewer actually played, as set-based SQL (DuckDB, PostgreSQL, Spark).

From Segment Video Spec events (plus leadscore's ``playback_rate`` and ``Video Playback Rate
Changed``) this module builds, with window functions only:

* the accepted video events (deduplicated, clamped) and the rejects with their reason;
* the played intervals per viewer, playback session and video (positions and wall-clock times);
* the heatmap as runs: ``[start_sec, end_sec)`` played ``plays`` times, per viewer and video.

How a session is read (events ordered by client time, ties broken by the spec's natural order):
each event leaves the player *playing* or not (Started/Resumed/Buffer Completed/heartbeats: playing;
Paused/Interrupted/Buffer Started/Completed/Exited: not; Seek Started: not until Seek Completed, which
returns to the state before the seek; a rate change or quality update keeps the state). Between an
event that leaves the player playing and the next event of the session, the viewer played from the
first position to the next event's position (for Seek Started: its ``position``, the *from*), provided
that the wall-clock gap is at most ``heartbeat_s + jitter_s`` (a missing heartbeat is bridged, a longer
silence is not) and that the next position is reachable at the playback rate (the session's fastest
valid ``playback_rate``, default 1, plus ``tolerance_s``; otherwise an unrecorded jump happened and the
segment is not credited; the reason is recorded). Duplicated events (the same event resent under
another messageId) sort next to each other and add nothing.

A second ``k`` of the video (the cell ``[k, k+1)``) counts as played by an interval ``[a, b)`` when
``a <= k + 0.5 < b``: midpoint rounding, so a boundary is never off by more than half a second.
"""
from __future__ import annotations

from leadscore.store.dialect import Dialect, quote_literal

# Event name → (tie-break rank at equal timestamps, state it leaves the player in: 1 playing,
# 0 not playing, None = keep the state from before).
VIDEO_EVENTS: dict[str, tuple[int, int | None]] = {
    "Video Playback Started": (0, 1),
    "Video Content Started": (1, 1),
    "Video Playback Resumed": (2, 1),
    "Video Playback Buffer Completed": (3, 1),
    "Video Content Playing": (4, 1),          # a heartbeat reports the playhead before what follows it
    "Video Playback Rate Changed": (5, None),
    "Video Quality Updated": (5, None),
    "Video Playback Seek Started": (6, None),  # special-cased: not playing during the seek
    "Video Playback Seek Completed": (7, None),
    "Video Playback Buffer Started": (8, 0),
    "Video Playback Paused": (9, 0),
    "Video Playback Interrupted": (10, 0),
    "Video Content Completed": (11, 0),
    "Video Playback Completed": (12, 0),
    "Video Playback Exited": (13, 0),
}
START_EVENTS = ("Video Playback Started", "Video Content Started")
SEEK_STARTED = "Video Playback Seek Started"
CTA_EVENT = "CTA Clicked"

# Reasons an event (or a segment between two events) was dropped or clamped.
REJECT_REASONS = {
    "unknown_session": "dropped: no session_id, or the session never started (no Playback/Content Started)",
    "missing_video": "dropped: no content_asset_id/asset_id in the event or its session",
    "missing_position": "dropped: no numeric position (or seek_position on Seek Started)",
    "duplicate": "dropped: the same event delivered again under another messageId",
    "negative_position": "clamped to 0",
    "position_past_end": "clamped to the video's duration (more than 1 s past the end)",
    "bad_rate": "playback_rate <= 0 or > 16: ignored (the session's fastest valid rate, default 1, bounds the position check)",
    "heartbeat_gap": "segment not credited: silence longer than the heartbeat interval while playing",
    "position_jump": "segment not credited: the next position is not reachable from the last one at the playback rate",
}

DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_JITTER_S = 1.0
DEFAULT_TOLERANCE_S = 2.0
MAX_RATE = 16.0


def _in_list(values) -> str:
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def _case_event(mapping: dict[str, object], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {quote_literal(k)} THEN {'NULL' if v is None else v}" for k, v in mapping.items())
    return f"CASE lsv_e.event {whens} ELSE {default} END"


def _ctes(d: Dialect, events: str, as_of: str, catalog: str, heartbeat_s: float, jitter_s: float,
          tolerance_s: float) -> list[tuple[str, str]]:
    """The common chain of CTEs (name, body) every video query starts from."""
    p = "lsv_e.properties"
    dbl = d.double()
    names = list(VIDEO_EVENTS) + [CTA_EVENT]
    rank = _case_event({k: v[0] for k, v in VIDEO_EVENTS.items()})
    state = _case_event({k: v[1] for k, v in VIDEO_EVENTS.items()})
    order = "ORDER BY ts, erank, pos"
    sess = "PARTITION BY lead_id, session_id, video_id"
    gap_limit = float(heartbeat_s) + float(jitter_s)
    tol = float(tolerance_s)
    ctes: list[tuple[str, str]] = []
    # 1. the video (and in-video CTA) events up to as_of, with the properties we read (in one parse of
    #    the JSON where the dialect can: reading the properties is about half of the work)
    keys = ["session_id", "content_asset_id", "asset_id", "position", "seek_position", "total_length",
            "playback_rate"]
    # Dialect.json_str_many (one parse for several paths, DuckDB only) is being added to the store's
    # dialect by another change; until it is there every path is read on its own (same results).
    many = getattr(d, "json_str_many", None)
    packed = many("lsv_i.properties", keys) if many else None
    if packed:
        source = f"(SELECT lsv_i.*, {packed} AS lsv_j FROM {events} lsv_i)"
        get = lambda key: f"lsv_e.lsv_j[{keys.index(key) + 1}]"  # noqa: E731
    else:
        source = events
        get = lambda key: d.json_str(p, key)  # noqa: E731
    num = lambda key: f"CAST({d.to_num(get(key))} AS {dbl})"  # noqa: E731
    ctes.append(("lsv_src", f"""
        SELECT lsv_e.lead_id, lsv_e.message_id, lsv_e.event, lsv_e.ts,
               {get('session_id')} AS session_id,
               COALESCE({get('content_asset_id')}, {get('asset_id')}) AS vid_own,
               {num('position')} AS pos_raw, {num('seek_position')} AS seek_raw,
               {num('total_length')} AS total_raw, {num('playback_rate')} AS rate_raw,
               {rank} AS erank, {state} AS st_int
        FROM {source} lsv_e
        WHERE lsv_e.ts <= {as_of} AND lsv_e.lead_id IS NOT NULL AND lsv_e.event IN {_in_list(names)}"""))
    ctes.append(("lsv_cat", f"SELECT video_id AS cat_video_id, title AS cat_title, CAST(duration AS {dbl}) AS cat_duration, category AS cat_category, stage AS cat_stage FROM {catalog}"))
    # 2. per session: its video, whether it ever started, its fastest valid rate. Aggregates and hash
    #    joins rather than windows: DuckDB sorts wide rows once per window spec. Duplicates (the same
    #    event delivered under several messageIds) need no pass of their own: identical rows sort next
    #    to each other and the segment between them is empty; the rejects query counts them.
    ctes.append(("lsv_dedup", f"""
        SELECT lead_id, session_id, event, ts, pos_raw, seek_raw, message_id, vid_own, total_raw, rate_raw,
               erank, st_int
        FROM lsv_src WHERE event <> {quote_literal(CTA_EVENT)}"""))
    ctes.append(("lsv_sess", f"""
        SELECT lead_id AS s_lead_id, session_id AS s_session_id, MAX(vid_own) AS s_video_id,
               MAX(CASE WHEN event IN {_in_list(START_EVENTS)} THEN 1 ELSE 0 END) AS has_start,
               MAX(CASE WHEN rate_raw > 0 AND rate_raw <= {MAX_RATE} THEN rate_raw END) AS max_rate
        FROM lsv_dedup WHERE session_id IS NOT NULL GROUP BY lead_id, session_id"""))
    ctes.append(("lsv_tag", f"""
        SELECT y.*, CASE WHEN y.session_id IS NULL OR COALESCE(y.has_start, 0) = 0 THEN 'unknown_session'
                         WHEN y.video_id IS NULL THEN 'missing_video'
                         WHEN y.pos_raw IS NULL OR (y.event = {quote_literal(SEEK_STARTED)} AND y.seek_raw IS NULL)
                              THEN 'missing_position' END AS drop_reason
        FROM (SELECT x.*, COALESCE(x.vid_own, s.s_video_id) AS video_id, s.has_start, s.max_rate
              FROM lsv_dedup x LEFT JOIN lsv_sess s
                ON s.s_lead_id = x.lead_id AND s.s_session_id = x.session_id) y"""))
    # 3. duration: the catalog's, else the longest total_length this viewer's player reported
    ctes.append(("lsv_len", """
        SELECT lead_id AS l_lead_id, video_id AS l_video_id, MAX(CASE WHEN total_raw > 0 THEN total_raw END) AS seen_len
        FROM lsv_tag WHERE drop_reason IS NULL GROUP BY lead_id, video_id"""))
    ctes.append(("lsv_chk", """
        SELECT t.*, COALESCE(c.cat_duration, l.seen_len) AS duration
        FROM lsv_tag t
        LEFT JOIN lsv_len l ON l.l_lead_id = t.lead_id AND l.l_video_id = t.video_id
        LEFT JOIN lsv_cat c ON c.cat_video_id = t.video_id"""))
    # 4. accepted events, clamped; st_key orders a session's events as one number (µs since 1970 × 32 +
    #    the tie-break rank), so that the state in force can be carried forward by a running MAX.
    clamp = lambda col: (f"CASE WHEN {col} < 0 THEN CAST(0 AS {dbl}) "  # noqa: E731
                         f"WHEN duration IS NOT NULL AND {col} > duration THEN duration ELSE {col} END")
    epoch_us = f"CAST(ROUND({d.seconds_between(d.ts_literal('1970-01-01 00:00:00'), 'ts')} * 1000000) AS BIGINT)"
    ctes.append(("lsv_ok", f"""
        SELECT lead_id, session_id, video_id, message_id, event, ts, erank, st_int, duration,
               {clamp('pos_raw')} AS pos, {clamp('seek_raw')} AS seek_to,
               COALESCE(max_rate, CAST(1 AS {dbl})) AS eff_rate,
               ({epoch_us} * 32 + erank) * 2 + st_int AS st_key
        FROM lsv_chk WHERE drop_reason IS NULL"""))
    # 5. one window pass per session: the state in force (the last event that set one: Seek Completed,
    #    rate changes and quality updates keep it) and the next event's time and position
    ctes.append(("lsv_state", f"""
        SELECT o.*,
               MAX(st_key) OVER ({sess} {order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS st_last,
               LEAD(ts) OVER ({sess} {order}) AS next_ts,
               LEAD(pos) OVER ({sess} {order}) AS next_pos
        FROM lsv_ok o"""))
    # 6. the segments played between an event and the next one, and whether they are credited
    dt = d.seconds_between("ts", "next_ts")
    ctes.append(("lsv_seg", f"""
        SELECT lead_id, session_id, video_id, duration, ts AS start_ts, next_ts AS end_ts,
               pos AS start_pos, CASE WHEN next_pos > pos THEN next_pos ELSE pos END AS end_pos,
               message_id, event,
               CASE WHEN {dt} > {gap_limit} THEN 'heartbeat_gap'
                    WHEN next_pos < pos - {tol} OR next_pos > pos + eff_rate * {dt} + {tol} THEN 'position_jump'
                    END AS seg_reason
        FROM lsv_state
        WHERE next_ts IS NOT NULL AND event <> {quote_literal(SEEK_STARTED)} AND MOD(st_last, 2) = 1"""))
    ctes.append(("lsv_iv", """
        SELECT lead_id, session_id, video_id, duration, start_ts, end_ts, start_pos, end_pos
        FROM lsv_seg WHERE seg_reason IS NULL AND end_pos > start_pos"""))
    return ctes


def _with(ctes: list[tuple[str, str]], body: str) -> str:
    return "WITH " + ",\n".join(f"{name} AS ({sql})" for name, sql in ctes) + "\n" + body


def _heatmap_ctes() -> list[tuple[str, str]]:
    """Heatmap runs by a sweep over cell boundaries: +1 where an interval's first cell starts, -1 after
    its last; the running sum over a viewer's boundaries is the play count of each run of seconds.
    No per-second rows are made, so the cost follows the number of events, not the video length.

    The deltas are written SIGN(k_hi - k_lo) (always 1 here) rather than the constants 1 / -1: with
    constants, DuckDB 2.0.0 answered ``delta <> 0`` wrongly once an outer filter on video_id was pushed
    down (statistics propagation; found by the property tests, see tests/video/test_properties.py)."""
    return [
        ("lsv_cells", """
            SELECT lead_id, video_id, CAST(CEIL(start_pos - 0.5) AS BIGINT) AS k_lo,
                   CAST(CEIL(end_pos - 0.5) AS BIGINT) AS k_hi
            FROM lsv_iv"""),
        ("lsv_pts", """
            SELECT lead_id, video_id, sec, delta FROM (
                SELECT lead_id, video_id, sec, SUM(delta) AS delta FROM (
                    SELECT lead_id, video_id, k_lo AS sec, CAST(SIGN(k_hi - k_lo) AS BIGINT) AS delta
                    FROM lsv_cells WHERE k_hi > k_lo
                    UNION ALL
                    SELECT lead_id, video_id, k_hi AS sec, -CAST(SIGN(k_hi - k_lo) AS BIGINT) AS delta
                    FROM lsv_cells WHERE k_hi > k_lo
                ) b GROUP BY lead_id, video_id, sec
            ) g WHERE delta <> 0"""),
        ("lsv_runs", """
            SELECT lead_id, video_id, sec AS start_sec,
                   LEAD(sec) OVER (PARTITION BY lead_id, video_id ORDER BY sec) AS end_sec,
                   CAST(SUM(delta) OVER (PARTITION BY lead_id, video_id ORDER BY sec
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS plays
            FROM lsv_pts"""),
        ("lsv_heat", """
            SELECT lead_id, video_id, start_sec, end_sec, plays FROM lsv_runs
            WHERE plays > 0 AND end_sec IS NOT NULL"""),
    ]


def video_intervals_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                        heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                        tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT: the played intervals, one row per credited segment.

    Columns: lead_id, session_id, video_id, duration, start_ts, end_ts (wall clock), start_pos, end_pos
    (seconds into the video, ``end_pos > start_pos``). ``events`` is a relation with the event-log
    columns plus ``lead_id``; ``as_of`` a SQL timestamp expression (only events with ts <= as_of count).
    """
    ctes = _ctes(dialect, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s)
    return _with(ctes, "SELECT lead_id, session_id, video_id, duration, start_ts, end_ts, start_pos, end_pos FROM lsv_iv")


def video_heatmap_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                      heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                      tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT: the per-second heatmap as runs, columns lead_id, video_id, start_sec, end_sec, plays.

    Seconds ``start_sec <= k < end_sec`` were played ``plays`` (>= 1) times by the viewer, across all
    their sessions; seconds in no run were not watched (grey).
    """
    ctes = _ctes(dialect, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s) + _heatmap_ctes()
    return _with(ctes, "SELECT lead_id, video_id, start_sec, end_sec, plays FROM lsv_heat")


def video_rejects_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                      heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                      tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT: every dropped or clamped video event and every segment not credited, with why.

    Columns: lead_id, session_id, video_id, message_id, event, ts, reason (a key of REJECT_REASONS),
    action ('dropped' | 'clamped' | 'not_credited'). For a segment, message_id/event/ts are those of
    the event that opened it.
    """
    d = dialect
    ctes = _ctes(d, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s)
    cols = "lead_id, session_id, video_id, message_id, event, ts"
    ctes = ctes + [("lsv_keep", f"""
        SELECT message_id AS k_message_id,
               MIN(message_id) OVER (PARTITION BY lead_id, session_id, event, ts, pos_raw, seek_raw) AS keep_id
        FROM lsv_src WHERE event <> {quote_literal(CTA_EVENT)}"""),
                    ("lsv_rj", """
        SELECT c.*, k.keep_id FROM lsv_chk c JOIN lsv_keep k ON k.k_message_id = c.message_id""")]
    body = f"""
        SELECT {cols}, drop_reason AS reason, 'dropped' AS action FROM lsv_rj
            WHERE drop_reason IS NOT NULL AND message_id = keep_id
        UNION ALL
        SELECT x.lead_id, x.session_id, x.video_id, x.message_id, x.event, x.ts, 'duplicate' AS reason,
               'dropped' AS action
        FROM lsv_rj x JOIN lsv_rj c ON c.message_id = x.keep_id AND c.drop_reason IS NULL
        WHERE x.message_id <> x.keep_id
        UNION ALL
        SELECT {cols}, 'negative_position' AS reason, 'clamped' AS action FROM lsv_rj
            WHERE drop_reason IS NULL AND message_id = keep_id AND (pos_raw < 0 OR seek_raw < 0)
        UNION ALL
        SELECT {cols}, 'position_past_end' AS reason, 'clamped' AS action FROM lsv_rj
            WHERE drop_reason IS NULL AND message_id = keep_id AND duration IS NOT NULL
              AND (pos_raw > duration + 1 OR seek_raw > duration + 1)
        UNION ALL
        SELECT {cols}, 'bad_rate' AS reason, 'clamped' AS action FROM lsv_rj
            WHERE drop_reason IS NULL AND message_id = keep_id AND rate_raw IS NOT NULL
              AND NOT (rate_raw > 0 AND rate_raw <= {MAX_RATE})
        UNION ALL
        SELECT lead_id, session_id, video_id, message_id, event, start_ts AS ts, seg_reason AS reason,
               'not_credited' AS action
        FROM lsv_seg WHERE seg_reason IS NOT NULL"""
    return _with(ctes, body)


def video_cta_sql(dialect: Dialect, events: str, as_of: str) -> str:
    """One SELECT: CTA responses inside videos: lead_id, video_id, message_id, ts, cta_type, position."""
    d = dialect
    p = "lsv_e.properties"
    return f"""
        SELECT lsv_e.lead_id, {d.json_str(p, 'content_asset_id')} AS video_id, lsv_e.message_id, lsv_e.ts,
               CAST({d.json_num(p, 'position')} AS {d.double()}) AS position
        FROM {events} lsv_e
        WHERE lsv_e.ts <= {as_of} AND lsv_e.lead_id IS NOT NULL AND lsv_e.event = {quote_literal(CTA_EVENT)}
          AND {d.json_str(p, 'content_asset_id')} IS NOT NULL"""
