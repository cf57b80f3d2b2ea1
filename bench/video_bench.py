"""Benchmark: video heatmaps and viewer facts for many generated viewing sessions.

    .venv/bin/python bench/video_bench.py                      # 50,000 sessions (quick)
    .venv/bin/python bench/video_bench.py --sessions 1000000   # the issue's figure

What is measured, each phase in a fresh subprocess (so its peak RSS is its own):
- leadscore: the set-based SQL (leadscore.video.facts / reconstruct) on DuckDB over the event log as the
  store holds it: the typed video columns ingest fills (video_session_id, video_asset_id, video_position,
  ...; the JSON properties are there too but not read). Heatmap runs and the viewer facts of every
  (viewer, video) from one reconstruction (video_heat_and_views_sql), materialised, split into two tables;
- baseline: a straightforward per-event Python loop over the same event log (rows fetched from the
  same DuckDB file, the JSON properties parsed per event as such a loop would, sessions grouped in dicts, a per-second list per viewer and
  video incremented second by second) on a sample of the sessions (--baseline-sessions); its
  sessions/s is what it would do on the full set (the loop is linear in sessions).
Both compute the same thing; the totals of unique/watched seconds over the sample are compared.

Sessions come from the player simulator (leadscore.video.simulate: play/pause/seek/buffer/rate with
heartbeats every 10 s) as a pool of templates, replicated across viewers, videos and days with numpy,
then loaded into DuckDB (the load is not timed).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from leadscore.video.reconstruct import VIDEO_EVENTS  # noqa: E402
from leadscore.video.simulate import random_actions, simulate  # noqa: E402

NAMES = list(VIDEO_EVENTS)
T0 = datetime(2026, 10, 1)
AS_OF = "TIMESTAMP '2026-11-23 00:00:00'"


# ----------------------------------------------------------------------------------------- generation
def templates(n_videos: int, per_video: int, seed: int):
    """Simulated sessions per video: flat arrays + (start, length) per template."""
    rng = random.Random(seed)
    durations = [float(rng.choice([30, 45, 60, 90, 120, 180, 300])) for _ in range(n_videos)]
    cols = {k: [] for k in ("ev", "rel", "pos", "seek", "rate")}
    starts, lengths, tvideo = [], [], []
    for v, dur in enumerate(durations):
        for _ in range(per_video):
            sim = simulate(random_actions(rng, dur, rng.randint(1, 8)), duration=dur, start=T0, user_id="u",
                           session_id="s", video_id=f"v{v}")
            starts.append(len(cols["ev"]))
            lengths.append(len(sim.events))
            tvideo.append(v)
            for e in sim.events:
                p = e["properties"]
                cols["ev"].append(NAMES.index(e["event"]))
                cols["rel"].append((datetime.fromisoformat(e["timestamp"][:-1]) - T0).total_seconds())
                cols["pos"].append(p["position"])
                cols["seek"].append(p.get("seek_position", np.nan))
                cols["rate"].append(p["playback_rate"])
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    return durations, arrays, np.asarray(starts), np.asarray(lengths), np.asarray(tvideo)


def generate(path: str, sessions: int, sample: int, seed: int = 7) -> dict:
    import duckdb

    n_videos = 50
    durations, flat, starts, lengths, tvideo = templates(n_videos, 40, seed)
    rng = np.random.default_rng(seed)
    tid = rng.integers(0, len(starts), sessions)
    n_viewers = max(1, int(sessions * 0.4))                    # ~2.5 sessions per viewer
    viewer = rng.integers(0, n_viewers, sessions)
    offset = rng.uniform(0, 50 * 86400, sessions)               # spread over 50 days
    L = lengths[tid]
    total = int(L.sum())
    sess_of_row = np.repeat(np.arange(sessions), L)
    first = np.cumsum(L) - L
    src = np.repeat(starts[tid], L) + (np.arange(total) - np.repeat(first, L))
    ts_us = (np.repeat(offset, L) + flat["rel"][src]) * 1e6
    base = np.datetime64(T0.isoformat(), "us")
    table = pa.table({
        "sess": sess_of_row.astype(np.int64),
        "viewer": viewer[sess_of_row].astype(np.int64),
        "video": tvideo[tid][sess_of_row].astype(np.int32),
        "ev": flat["ev"][src].astype(np.int8),
        "ts": base + ts_us.astype("timedelta64[us]"),
        "pos": flat["pos"][src],
        "seek": pa.array(flat["seek"][src], from_pandas=True),   # NaN → NULL
        "rate": flat["rate"][src],
    })
    durs = pa.table({"video": np.arange(n_videos, dtype=np.int32), "duration": np.asarray(durations)})
    con = duckdb.connect(path)
    con.register("gen", table)
    con.register("durs", durs)
    names_sql = "[" + ", ".join("'" + n + "'" for n in NAMES) + "]"
    con.execute(f"""
        CREATE TABLE events AS
        SELECT 'm' || CAST(row_number() OVER () AS VARCHAR) AS message_id, 'track' AS type,
               {names_sql}[ev + 1] AS event, ts, 'u' || CAST(viewer AS VARCHAR) AS lead_id, sess,
               CASE WHEN starts_with({names_sql}[ev + 1], 'Video Content')
                    THEN json_object('session_id', 's' || CAST(sess AS VARCHAR), 'asset_id', 'v' || CAST(video AS VARCHAR),
                                     'position', pos, 'total_length', d.duration, 'playback_rate', rate)
                    ELSE json_object('session_id', 's' || CAST(sess AS VARCHAR), 'content_asset_id', 'v' || CAST(video AS VARCHAR),
                                     'position', pos, 'seek_position', seek, 'total_length', d.duration, 'playback_rate', rate)
               END AS properties,
               -- the typed video columns, as the store's ingest fills them (events.normalize.video_values)
               's' || CAST(sess AS VARCHAR) AS video_session_id, 'v' || CAST(video AS VARCHAR) AS video_asset_id,
               pos AS video_position, seek AS video_seek_position, d.duration AS video_total_length,
               rate AS video_playback_rate
        FROM gen JOIN durs d USING (video)""")
    # The baseline's sample, copied out so that fetching it costs a plain scan (no JSON filter).
    con.execute(f"CREATE TABLE sample_events AS SELECT * FROM events WHERE sess < {int(sample)}")
    con.execute("ALTER TABLE events DROP COLUMN sess")
    con.execute("ALTER TABLE sample_events DROP COLUMN sess")
    con.execute("CREATE TABLE video_catalog AS SELECT 'v' || CAST(video AS VARCHAR) AS video_id, "
                "CAST(NULL AS VARCHAR) AS title, duration, CAST(NULL AS VARCHAR) AS category, "
                "CAST(NULL AS VARCHAR) AS stage FROM durs")
    con.close()
    return {"sessions": sessions, "events": total, "viewers_max": n_viewers, "videos": n_videos}


# -------------------------------------------------------------------------------------------- phases
def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_sql(path: str, threads: int) -> dict:
    import duckdb

    from leadscore.store.dialect import DUCKDB
    from leadscore.video.facts import video_heat_and_views_sql

    con = duckdb.connect(path)
    con.execute(f"SET threads = {threads}")
    con.execute("DROP TABLE IF EXISTS heat; DROP TABLE IF EXISTS facts; DROP TABLE IF EXISTS heat_views")
    c0 = time.process_time()
    t = time.perf_counter()
    # one reconstruction for both (video_heat_and_views_sql), materialised, then split into the two tables
    con.execute("CREATE TEMP TABLE heat_views AS " + video_heat_and_views_sql(DUCKDB, "events", AS_OF))
    t_heat = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("CREATE TABLE heat AS SELECT lead_id, video_id, start_sec, end_sec, plays FROM heat_views "
                "WHERE kind = 'run'")
    con.execute("CREATE TABLE facts AS SELECT * EXCLUDE (kind, start_sec, end_sec, plays) FROM heat_views "
                "WHERE kind = 'view'")
    t_facts = time.perf_counter() - t
    cpu = time.process_time() - c0
    n = con.execute("SELECT count(*), sum(unique_seconds), sum(watch_seconds) FROM facts").fetchone()
    runs = con.execute("SELECT count(*) FROM heat").fetchone()[0]
    con.close()
    return {"seconds_heatmap": t_heat, "seconds_facts": t_facts, "seconds": t_heat + t_facts, "cpu_seconds": cpu,
            "viewer_videos": n[0], "unique_seconds": int(n[1] or 0), "watch_seconds": int(n[2] or 0),
            "heat_runs": runs, "peak_rss_mib": _peak_mib()}


RANK = {name: r for name, (r, _) in VIDEO_EVENTS.items()}
STATE = {name: s for name, (_, s) in VIDEO_EVENTS.items()}


def baseline_loop(rows, durations: dict[str, float], gap_limit: float = 11.0, tol: float = 2.0):
    """The straightforward way: one Python step per event, a per-second list per viewer and video."""
    sessions: dict[tuple, list] = {}
    for message_id, event, ts, lead, props_text in rows:
        p = json.loads(props_text)
        sid = p.get("session_id")
        vid = p.get("content_asset_id") or p.get("asset_id")
        if sid is None or vid is None or p.get("position") is None:
            continue
        sessions.setdefault((lead, sid, vid), []).append((ts, RANK[event], float(p["position"]), message_id, event, p))
    counts: dict[tuple, list[int]] = {}
    facts: dict[tuple, dict] = {}
    for (lead, sid, vid), evs in sessions.items():
        evs.sort()
        seen = set()
        dur = durations.get(vid) or max(float(e[5].get("total_length") or 0) for e in evs)
        cells = max(1, int(np.ceil(dur - 0.5)))
        heat = counts.setdefault((lead, vid), [0] * cells)
        f = facts.setdefault((lead, vid), {"sessions": 0, "furthest": 0.0})
        f["sessions"] += 1
        playing, rate, prev = 0, 1.0, None
        for ts, _, pos, _, event, p in evs:
            key = (event, ts, pos, p.get("seek_position"))
            if key in seen:
                continue
            seen.add(key)
            pos = min(max(pos, 0.0), dur)
            if prev is not None and prev[0]:
                p_ts, p_pos, p_rate = prev[1], prev[2], prev[3]
                dt = (ts - p_ts).total_seconds()
                if dt <= gap_limit and p_pos - tol <= pos <= p_pos + p_rate * dt + tol and pos > p_pos:
                    for k in range(max(0, int(np.ceil(p_pos - 0.5))), min(cells, int(np.ceil(pos - 0.5)))):
                        heat[k] += 1                              # second by second
                    f["furthest"] = max(f["furthest"], pos)
            r = p.get("playback_rate")
            if r is not None and 0 < r <= 16:
                rate = r
            s = STATE[event]
            if event == "Video Playback Seek Started":
                playing = 0
            elif s is not None:
                playing = s
                last_state = s
            elif event == "Video Playback Seek Completed":
                playing = last_state
            if s is not None:
                last_state = s
            prev = (playing, ts, pos, rate)
    unique = sum(sum(1 for c in h if c) for h in counts.values())
    watched = sum(sum(h) for h in counts.values())
    return counts, facts, unique, watched


def phase_baseline(path: str, sample: int) -> dict:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    durations = dict(con.execute("SELECT video_id, duration FROM video_catalog").fetchall())
    c0 = time.process_time()
    t = time.perf_counter()
    rows = con.execute("SELECT message_id, event, ts, lead_id, CAST(properties AS VARCHAR) FROM sample_events").fetchall()
    t_fetch = time.perf_counter() - t
    t = time.perf_counter()
    counts, facts, unique, watched = baseline_loop(rows, durations)
    t_loop = time.perf_counter() - t
    cpu = time.process_time() - c0
    loop_peak = _peak_mib()     # before the SQL check below, which runs in this process too
    # the same sample through the SQL, to check both agree
    from leadscore.store.dialect import DUCKDB
    from leadscore.video.facts import video_views_sql
    sub = "sample_events"
    t = time.perf_counter()
    check = con.execute(f"SELECT sum(unique_seconds), sum(watch_seconds) FROM ({video_views_sql(DUCKDB, sub, AS_OF)}) v").fetchone()
    t_sql_sample = time.perf_counter() - t
    con.close()
    return {"sessions": sample, "events": len(rows), "seconds_fetch": t_fetch, "seconds_loop": t_loop,
            "seconds": t_fetch + t_loop, "cpu_seconds": cpu, "unique_seconds": unique, "watch_seconds": watched,
            "sql_unique_seconds": int(check[0] or 0), "sql_watch_seconds": int(check[1] or 0),
            "sql_seconds_same_sample": t_sql_sample, "peak_rss_mib": loop_peak}


def _run_phase(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=50_000)
    ap.add_argument("--baseline-sessions", type=int, default=20_000,
                    help="sessions the Python loop processes (its rate is per session)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--db", help="keep the generated DuckDB file here (default: a temporary file)")
    ap.add_argument("--phase", choices=["sql", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase == "sql":
        print(json.dumps(phase_sql(args.path, args.threads)))
        return
    if args.phase == "baseline":
        print(json.dumps(phase_baseline(args.path, args.baseline_sessions)))
        return

    tmp = tempfile.TemporaryDirectory(prefix="video-bench-")
    path = args.db or os.path.join(tmp.name, "bench.duckdb")
    if os.path.exists(path):
        os.remove(path)
    t = time.perf_counter()
    sample = min(args.baseline_sessions, args.sessions)
    info = generate(path, args.sessions, sample)
    print(f"generated {info['sessions']:,} sessions, {info['events']:,} events in {time.perf_counter() - t:.1f}s "
          f"({info['videos']} videos, up to {info['viewers_max']:,} viewers)")
    sql = _run_phase("--phase", "sql", "--path", path, "--threads", str(args.threads), "--sessions", str(args.sessions))
    base = _run_phase("--phase", "baseline", "--path", path, "--baseline-sessions", str(sample))
    sql_rate = args.sessions / sql["seconds"]
    base_rate = sample / base["seconds"]
    sql_cpu_rate = args.sessions / sql["cpu_seconds"]
    base_cpu_rate = sample / base["cpu_seconds"]
    same = base["unique_seconds"] == base["sql_unique_seconds"] and base["watch_seconds"] == base["sql_watch_seconds"]
    print(f"leadscore SQL (DuckDB, {args.threads} threads): {args.sessions:,} sessions in {sql['seconds']:.2f}s "
          f"(heatmap+facts query {sql['seconds_heatmap']:.2f}s + split {sql['seconds_facts']:.2f}s; CPU {sql['cpu_seconds']:.2f}s) "
          f"= {sql_rate:,.0f} sessions/s ({sql_cpu_rate:,.0f} per CPU-second), peak RSS {sql['peak_rss_mib']:,.0f} MiB; "
          f"{sql['viewer_videos']:,} viewer×video facts, {sql['heat_runs']:,} heatmap runs")
    print(f"baseline Python loop: {sample:,} sessions ({base['events']:,} events) in {base['seconds']:.2f}s "
          f"(fetch {base['seconds_fetch']:.2f}s + loop {base['seconds_loop']:.2f}s; CPU {base['cpu_seconds']:.2f}s) "
          f"= {base_rate:,.0f} sessions/s ({base_cpu_rate:,.0f} per CPU-second), peak RSS {base['peak_rss_mib']:,.0f} MiB")
    print(f"same sample through the SQL (facts only): {base['sql_seconds_same_sample']:.2f}s; results agree: {same} "
          f"(unique {base['unique_seconds']:,} vs {base['sql_unique_seconds']:,}, watched {base['watch_seconds']:,} vs "
          f"{base['sql_watch_seconds']:,})")
    print(f"speed-up: {sql_rate / base_rate:.1f}x wall-clock, {sql_cpu_rate / base_cpu_rate:.1f}x per CPU-second "
          f"(target >= 20x); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
