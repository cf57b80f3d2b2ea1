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

from leadscore.events.normalize import NUMBER_RE, VIDEO_COLUMN_SOURCES, VIDEO_TEXT_COLUMNS
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


def video_columns_sql(d: Dialect, props: str = "properties", type_col: str = "type",
                      text_of=None) -> list[tuple[str, str]]:
    """(column, SQL expression) deriving the typed video columns from the JSON properties, exactly as
    ingest stores them (leadscore.events.normalize.video_values): for event logs that have no such
    columns (Parquet, Spark) and for the migration's backfill of old rows. ``text_of``: key → the SQL of
    a property's text (default: the dialect's JSON access to ``props``; a typed log passes its own)."""
    out = []
    for col, keys in VIDEO_COLUMN_SOURCES.items():
        texts = [text_of(k) if text_of is not None else d.json_str(props, k) for k in keys]
        text = texts[0] if len(texts) == 1 else f"COALESCE({', '.join(texts)})"
        if col in VIDEO_TEXT_COLUMNS:
            expr = text
        else:
            expr = f"CASE WHEN {d.regex(text, NUMBER_RE)} THEN CAST({text} AS {d.double()}) END"
        out.append((col, f"CASE WHEN {type_col} = 'track' THEN {expr} END"))
    return out


def _key(d: Dialect, cols: list[str], name: str) -> list[tuple[str, str]]:
    """(expression, column) identifying a tuple of text columns, for grouping, joining and window
    partitions. PostgreSQL and Spark: the columns themselves. DuckDB: two 64-bit hashes of the columns
    (in two orders, the second salted): integer keys sort, hash and join several times faster than
    strings there (the window over sessions: 1.3 → 0.7 CPU-s per 1.85M events). Different tuples get
    the same pair only if their ids' own 64-bit hashes collide: treated as never."""
    if d.name == "duckdb":
        return [(f"hash({', '.join(cols)})", f"{name}_h1"),
                (f"hash({', '.join(reversed(cols))}, 'lsv')", f"{name}_h2")]
    return [(c, f"{name}_{i}") for i, c in enumerate(cols)]


def _names(key: list[tuple[str, str]], prefix: str = "") -> str:
    return ", ".join(prefix + n for _, n in key)


def _sel(key: list[tuple[str, str]]) -> str:
    return ", ".join(f"{e} AS {n}" for e, n in key)


def _on(key: list[tuple[str, str]], a: str, b: str) -> str:
    return " AND ".join(f"{a}.{n} = {b}.{n}" for _, n in key)


def _epoch_us(d: Dialect, col: str) -> str:
    if d.name == "duckdb":
        return f"epoch_us({col})"
    if d.name == "spark":
        return f"unix_micros({col})"
    return f"CAST(ROUND({d.seconds_between(d.ts_literal('1970-01-01 00:00:00'), col)} * 1000000) AS BIGINT)"


def _vid_key(d: Dialect, col: str) -> str:
    """The event's own video id as a join key that tells NULL apart (DuckDB hashes NULL like a value)."""
    if d.name == "duckdb":
        return col
    return f"CASE WHEN {col} IS NULL THEN 'N' ELSE 'V' || {col} END"


def _ctes(d: Dialect, events: str, as_of: str, catalog: str, heartbeat_s: float, jitter_s: float,
          tolerance_s: float, full: bool = False) -> list[tuple[str, str]]:
    """The common chain of CTEs (name, body) every video query starts from.

    Reads the typed video columns of the event log (``video_session_id`` ... ``video_playback_rate``,
    filled at ingest; see leadscore.events.normalize.VIDEO_COLUMN_SOURCES), never the JSON.

    Shape (one pass over the events, one window sort): the events are grouped by (viewer, session,
    own video id) into a small table where everything per session and per viewer × video is worked
    out (the session's video, start, fastest rate; the duration; the integer keys); one hash join
    hands that back to the events, and one window per session walks them. ``full``: also carry the
    text ids (session, message, event) through the window, for the intervals and the rejects.
    """
    dbl = d.double()
    seek_rank = VIDEO_EVENTS[SEEK_STARTED][0]
    assert sum(1 for r, _ in VIDEO_EVENTS.values() if r == seek_rank) == 1
    rk = _key(d, ["lead_id", "session_id", _vid_key(d, "vid_own")], "rk")   # an event's group
    pk = _key(d, ["lead_id", "session_id", "video_id"], "pk")               # the window's partition
    lv = _key(d, ["lead_id", "video_id"], "lv")                             # a viewer and a video
    rk_g = _key(d, ["g.lead_id", "g.session_id", _vid_key(d, "g.vid_own")], "rk")
    pk_g = _key(d, ["g.lead_id", "g.session_id", "g.video_id"], "pk")
    gap_limit = float(heartbeat_s) + float(jitter_s)
    tol = float(tolerance_s)
    pos_ok = f"pos_raw IS NOT NULL AND NOT (erank = {seek_rank} AND seek_raw IS NULL)"
    ids = "lead_id, session_id, video_id, message_id, event, " if full else ""
    # the event names as a small table: the tie-break rank at equal timestamps and the state each
    # leaves the player in (a hash join, cheaper than two CASEs over the names on every event)
    values = ", ".join(f"({quote_literal(k)}, {r}, {'NULL' if st is None else st})" for k, (r, st) in VIDEO_EVENTS.items())
    evmap = f"(SELECT * FROM (VALUES {values}) lsv_v (m_event, erank, st_int))"
    ctes: list[tuple[str, str]] = []
    # 1. the video events up to as_of, with their typed video columns (in-video CTAs: lsv_ctas)
    ctes.append(("lsv_src", f"""
        SELECT lsv_e.lead_id, lsv_e.message_id, lsv_e.event, lsv_e.ts,
               lsv_e.video_session_id AS session_id, lsv_e.video_asset_id AS vid_own,
               lsv_e.video_position AS pos_raw, lsv_e.video_seek_position AS seek_raw,
               lsv_e.video_total_length AS total_raw, lsv_e.video_playback_rate AS rate_raw,
               m.erank, CAST(m.st_int AS INTEGER) AS st_int
        FROM {events} lsv_e JOIN {evmap} m ON m.m_event = lsv_e.event
        WHERE lsv_e.ts <= {as_of} AND lsv_e.lead_id IS NOT NULL"""))
    ctes.append(("lsv_ctas", f"""
        SELECT lsv_e.lead_id, lsv_e.video_asset_id AS video_id, COUNT(*) AS cta_clicks FROM {events} lsv_e
        WHERE lsv_e.ts <= {as_of} AND lsv_e.lead_id IS NOT NULL AND lsv_e.event = {quote_literal(CTA_EVENT)}
          AND lsv_e.video_asset_id IS NOT NULL GROUP BY lsv_e.lead_id, lsv_e.video_asset_id"""))
    ctes.append(("lsv_cat", f"SELECT video_id AS cat_video_id, title AS cat_title, CAST(duration AS {dbl}) AS cat_duration, category AS cat_category, stage AS cat_stage FROM {catalog}"))
    # 2. per (viewer, session, own video id): what the session needs and what its accepted events
    #    (those with a position) add per viewer × video. Duplicates (the same event delivered under
    #    several messageIds) need no pass of their own: identical rows sort next to each other and the
    #    segment between them is empty; the rejects query counts them.
    ctes.append(("lsv_grp", f"""
        SELECT lead_id, session_id, vid_own,
               MAX(CASE WHEN event IN {_in_list(START_EVENTS)} THEN 1 ELSE 0 END) AS g_start,
               MAX(CASE WHEN rate_raw > 0 AND rate_raw <= {MAX_RATE} THEN rate_raw END) AS g_rate,
               SUM(CASE WHEN {pos_ok} THEN 1 ELSE 0 END) AS g_ok,
               MAX(CASE WHEN {pos_ok} AND total_raw > 0 THEN total_raw END) AS g_len,
               MIN(CASE WHEN {pos_ok} THEN ts END) AS g_first, MAX(CASE WHEN {pos_ok} THEN ts END) AS g_last
        FROM lsv_src WHERE session_id IS NOT NULL GROUP BY lead_id, session_id, vid_own"""))
    # 3. per session: its video (events without one take it), whether it started, its fastest valid rate
    ctes.append(("lsv_gs", f"""
        SELECT g.*, COALESCE(g.vid_own, s.s_video_id) AS video_id, s.has_start, s.max_rate
        FROM lsv_grp g JOIN (SELECT lead_id AS s_lead_id, session_id AS s_session_id, MAX(vid_own) AS s_video_id,
                                    MAX(g_start) AS has_start, MAX(g_rate) AS max_rate
                             FROM lsv_grp GROUP BY lead_id, session_id) s
          ON s.s_lead_id = g.lead_id AND s.s_session_id = g.session_id"""))
    # 4. per viewer × video: the duration (the catalog's, else the longest total_length this viewer's
    #    player reported), sessions, first and last accepted event
    ctes.append(("lsv_dur", f"""
        SELECT u.*, {_sel(lv)}, COALESCE(c.cat_duration, u.seen_len) AS duration, c.cat_title, c.cat_category,
               c.cat_stage
        FROM (SELECT lead_id, video_id, MAX(g_len) AS seen_len, COUNT(DISTINCT session_id) AS sessions,
                     MIN(g_first) AS ev_first, MAX(g_last) AS ev_last
              FROM lsv_gs WHERE has_start = 1 AND video_id IS NOT NULL AND g_ok > 0
              GROUP BY lead_id, video_id) u
        LEFT JOIN lsv_cat c ON c.cat_video_id = u.video_id"""))
    # 5. the accepted groups with everything their events need, keyed as the events will look them up
    ctes.append(("lsv_gk", f"""
        SELECT {_sel(rk_g)}, {_sel(pk_g)}, {_names(lv, 'u.')}, u.duration,
               COALESCE(g.max_rate, CAST(1 AS {dbl})) AS eff_rate, g.video_id AS k_video_id
        FROM lsv_gs g JOIN lsv_dur u ON u.lead_id = g.lead_id AND u.video_id = g.video_id
        WHERE g.has_start = 1 AND g.g_ok > 0"""))
    # 6. accepted events; ord_key orders a session's events as one number (µs since 1970 × 32 + the
    #    tie-break rank), st_key = ord_key × 2 + the state the event sets (NULL: keeps the state), so
    #    that the state in force is carried forward by a running MAX.
    ord_key = f"{_epoch_us(d, 'x.ts')} * 32 + x.erank"
    ctes.append(("lsv_acc", f"""
        SELECT {'x.lead_id, x.session_id, k.k_video_id AS video_id, x.message_id, x.event, ' if full else ''}{_names(pk, 'k.')}, {_names(lv, 'k.')},
               k.duration, k.eff_rate, x.ts, x.erank, x.pos_raw, {ord_key} AS ord_key,
               ({ord_key}) * 2 + x.st_int AS st_key
        FROM (SELECT lsv_src.*, {_sel(rk)} FROM lsv_src WHERE session_id IS NOT NULL AND {pos_ok}) x
        JOIN lsv_gk k ON {_on(rk, 'k', 'x')}"""))
    # 7. one window pass per session: the state in force (the last event that set one: Seek Completed,
    #    rate changes and quality updates keep it) and the next event's time and position
    w = f"PARTITION BY {_names(pk)} ORDER BY ord_key, pos_raw"
    ctes.append(("lsv_state", f"""
        SELECT {ids}{_names(lv)}, duration, eff_rate, ts, erank, pos_raw,
               MAX(st_key) OVER ({w} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS st_last,
               LEAD(ts) OVER ({w}) AS next_ts, LEAD(pos_raw) OVER ({w}) AS next_raw
        FROM lsv_acc"""))
    # 8. the segments played between an event and the next one (positions clamped to [0, duration]),
    #    and whether they are credited
    clamp = lambda col: (f"CASE WHEN {col} < 0 THEN CAST(0 AS {dbl}) "  # noqa: E731
                         f"WHEN duration IS NOT NULL AND {col} > duration THEN duration ELSE {col} END")
    dt = f"CAST({_epoch_us(d, 'next_ts')} - {_epoch_us(d, 'ts')} AS {dbl}) / 1000000"
    ctes.append(("lsv_seg", f"""
        SELECT {ids}{_names(lv)}, duration, start_ts, end_ts, start_pos,
               CASE WHEN np > start_pos THEN np ELSE start_pos END AS end_pos,
               CASE WHEN dt > {gap_limit} THEN 'heartbeat_gap'
                    WHEN np < start_pos - {tol} OR np > start_pos + eff_rate * dt + {tol} THEN 'position_jump'
                    END AS seg_reason
        FROM (SELECT {ids}{_names(lv)}, duration, ts AS start_ts, next_ts AS end_ts, eff_rate,
                     {clamp('pos_raw')} AS start_pos, {clamp('next_raw')} AS np, {dt} AS dt
              FROM lsv_state
              WHERE next_ts IS NOT NULL AND erank <> {seek_rank} AND MOD(st_last, 2) = 1) s"""))
    ctes.append(("lsv_iv", f"""
        SELECT {'lead_id, session_id, video_id, ' if full else ''}{_names(lv)}, duration, start_ts, end_ts, start_pos, end_pos
        FROM lsv_seg WHERE seg_reason IS NULL AND end_pos > start_pos"""))
    return ctes


# DuckDB materialises a CTE read twice; these say which: the window's output is read once, by the
# segments, whose credited rows (lsv_iv) feed both the heatmap sweep and the facts.
_DUCKDB_HINTS = {"lsv_src": "NOT MATERIALIZED", "lsv_state": "NOT MATERIALIZED", "lsv_seg": "NOT MATERIALIZED",
                 "lsv_iv": "MATERIALIZED"}


def _with(ctes: list[tuple[str, str]], body: str, d: Dialect | None = None) -> str:
    hints = _DUCKDB_HINTS if d is not None and d.name == "duckdb" else {}
    return "WITH " + ",\n".join(f"{name} AS {hints[name] + ' ' if name in hints else ''}({sql})"
                                 for name, sql in ctes) + "\n" + body


def _heatmap_ctes(d: Dialect) -> list[tuple[str, str]]:
    """Heatmap runs by a sweep over cell boundaries: +1 where an interval's first cell starts, -1 after
    its last; the running sum over a viewer's boundaries is the play count of each run of seconds.
    No per-second rows are made, so the cost follows the number of events, not the video length.
    Runs are computed on the (lead, video) keys; lsv_heat gets the names back from lsv_dur.

    The deltas are written SIGN(k_hi - k_lo) (always 1 here) rather than the constants 1 / -1: with
    constants, DuckDB 2.0.0 answered ``delta <> 0`` wrongly once an outer filter on video_id was pushed
    down (statistics propagation; found by the property tests, see tests/video/test_properties.py)."""
    lv = _key(d, ["lead_id", "video_id"], "lv")
    k = _names(lv)
    return [
        ("lsv_cells", f"""
            SELECT {k}, CAST(CEIL(start_pos - 0.5) AS BIGINT) AS k_lo, CAST(CEIL(end_pos - 0.5) AS BIGINT) AS k_hi
            FROM lsv_iv"""),
        ("lsv_pts", f"""
            SELECT {k}, sec, delta FROM (
                SELECT {k}, sec, SUM(delta) AS delta FROM (
                    SELECT {k}, k_lo AS sec, CAST(SIGN(k_hi - k_lo) AS BIGINT) AS delta
                    FROM lsv_cells WHERE k_hi > k_lo
                    UNION ALL
                    SELECT {k}, k_hi AS sec, -CAST(SIGN(k_hi - k_lo) AS BIGINT) AS delta
                    FROM lsv_cells WHERE k_hi > k_lo
                ) b GROUP BY {k}, sec
            ) g WHERE delta <> 0"""),
        ("lsv_runs", f"""
            SELECT {k}, sec AS start_sec,
                   LEAD(sec) OVER (PARTITION BY {k} ORDER BY sec) AS end_sec,
                   CAST(SUM(delta) OVER (PARTITION BY {k} ORDER BY sec
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS plays
            FROM lsv_pts"""),
        ("lsv_heat", f"""
            SELECT u.lead_id, u.video_id, r.start_sec, r.end_sec, r.plays FROM lsv_runs r
            JOIN lsv_dur u ON {_on(lv, 'u', 'r')}
            WHERE r.plays > 0 AND r.end_sec IS NOT NULL"""),
    ]


def video_intervals_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                        heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                        tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT: the played intervals, one row per credited segment.

    Columns: lead_id, session_id, video_id, duration, start_ts, end_ts (wall clock), start_pos, end_pos
    (seconds into the video, ``end_pos > start_pos``). ``events`` is a relation with the event-log
    columns plus ``lead_id``; ``as_of`` a SQL timestamp expression (only events with ts <= as_of count).
    """
    ctes = _ctes(dialect, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s, full=True)
    return _with(ctes, "SELECT lead_id, session_id, video_id, duration, start_ts, end_ts, start_pos, end_pos FROM lsv_iv")


def video_heatmap_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                      heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                      tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT: the per-second heatmap as runs, columns lead_id, video_id, start_sec, end_sec, plays.

    Seconds ``start_sec <= k < end_sec`` were played ``plays`` (>= 1) times by the viewer, across all
    their sessions; seconds in no run were not watched (grey).
    """
    ctes = _ctes(dialect, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s) + _heatmap_ctes(dialect)
    return _with(ctes, "SELECT lead_id, video_id, start_sec, end_sec, plays FROM lsv_heat", dialect)


def video_rejects_sql(dialect: Dialect, events: str, as_of: str, catalog: str = "video_catalog", *,
                      heartbeat_s: float = DEFAULT_HEARTBEAT_S, jitter_s: float = DEFAULT_JITTER_S,
                      tolerance_s: float = DEFAULT_TOLERANCE_S) -> str:
    """One SELECT: every dropped or clamped video event and every segment not credited, with why.

    Columns: lead_id, session_id, video_id, message_id, event, ts, reason (a key of REJECT_REASONS),
    action ('dropped' | 'clamped' | 'not_credited'). For a segment, message_id/event/ts are those of
    the event that opened it.
    """
    d = dialect
    ctes = _ctes(d, events, as_of, catalog, heartbeat_s, jitter_s, tolerance_s, full=True)
    cols = "lead_id, session_id, video_id, message_id, event, ts"
    ctes = ctes + [("lsv_keep", f"""
        SELECT message_id AS k_message_id,
               MIN(message_id) OVER (PARTITION BY lead_id, session_id, event, ts, pos_raw, seek_raw) AS keep_id
        FROM lsv_src"""),
                    ("lsv_tag", f"""
        SELECT y.*, CASE WHEN y.session_id IS NULL OR COALESCE(y.has_start, 0) = 0 THEN 'unknown_session'
                         WHEN y.video_id IS NULL THEN 'missing_video'
                         WHEN y.pos_raw IS NULL OR (y.event = {quote_literal(SEEK_STARTED)} AND y.seek_raw IS NULL)
                              THEN 'missing_position' END AS drop_reason
        FROM (SELECT x.*, COALESCE(x.vid_own, g.video_id) AS video_id, g.has_start
              FROM lsv_src x LEFT JOIN lsv_gs g
                ON g.lead_id = x.lead_id AND g.session_id = x.session_id
               AND (g.vid_own = x.vid_own OR (g.vid_own IS NULL AND x.vid_own IS NULL))) y"""),
                    ("lsv_chk", """
        SELECT t.*, u.duration FROM lsv_tag t
        LEFT JOIN lsv_dur u ON u.lead_id = t.lead_id AND u.video_id = t.video_id"""),
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
