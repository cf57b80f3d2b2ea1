"""Benchmark: video heatmaps and viewer facts for many generated viewing sessions.

    .venv/bin/python bench/video_bench.py                      # 50,000 sessions (quick)
    .venv/bin/python bench/video_bench.py --sessions 1000000   # the issue's figure

What is measured, each phase in a fresh subprocess (so its peak RSS is its own):
- leadscore: what the product runs on DuckDB (leadscore.video.fast: DuckDB filters the video events
  and hands their typed columns to the compiled per-viewer walk of leadscore.video.kernel, then joins
  the catalog and CTA clicks onto the facts) over the event log as the store holds it: the typed video
  columns ingest fills (video_session_id, video_asset_id, video_position, ...; the JSON properties are
  there too but not read). Heatmap runs and viewer facts of every (viewer, video), in two DuckDB
  TEMP tables (in memory, as the product keeps them; writing them into the file would add ~1.5 CPU-s
  of DuckDB's compression to either path). Loading the compiled kernel (numba's on-disk cache; once per process) is timed apart
  on a tiny input first, and reported;
- the set-based SQL (video_heat_and_views_sql: what PostgreSQL, Spark and the scoring engine run),
  materialised and split into the same two TEMP tables (skip with --no-sql);
- baseline: a straightforward per-event Python loop over the same event log (rows fetched from the
  same DuckDB file, the JSON properties parsed per event as such a loop would, sessions grouped in dicts, a per-second list per viewer and
  video incremented second by second) on a sample of the sessions (--baseline-sessions); its
  sessions/s is what it would do on the full set (the loop is linear in sessions).
All compute the same thing: on the sample, the kernel's heatmap runs and facts must equal the SQL's
row for row, and the loop's totals of unique/watched seconds must equal both.

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
    """This process's peak RSS (VmHWM: ru_maxrss would also count the parent's RSS when it forked)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
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
    con.execute("CREATE TEMP TABLE heat AS SELECT lead_id, video_id, start_sec, end_sec, plays FROM heat_views "
                "WHERE kind = 'run'")
    con.execute("CREATE TEMP TABLE facts AS SELECT * EXCLUDE (kind, start_sec, end_sec, plays) FROM heat_views "
                "WHERE kind = 'view'")
    t_facts = time.perf_counter() - t
    cpu = time.process_time() - c0
    n = con.execute("SELECT count(*), sum(unique_seconds), sum(watch_seconds) FROM facts").fetchone()
    runs = con.execute("SELECT count(*) FROM heat").fetchone()[0]
    con.close()
    return {"seconds_heatmap": t_heat, "seconds_facts": t_facts, "seconds": t_heat + t_facts, "cpu_seconds": cpu,
            "viewer_videos": n[0], "unique_seconds": int(n[1] or 0), "watch_seconds": int(n[2] or 0),
            "heat_runs": runs, "peak_rss_mib": _peak_mib()}


def _warm_kernel() -> float:
    """Import numba and load the compiled kernel (numba's on-disk cache) by running it on a tiny
    event log: once per process."""
    import duckdb

    from leadscore.video.fast import heat_and_views

    con = duckdb.connect()
    con.execute("CREATE TABLE events AS SELECT 'u' AS lead_id, 'track' AS type, 'Video Playback Started' AS event, "
                "TIMESTAMP '2026-10-01 00:00:00' AS ts, 's' AS video_session_id, 'v' AS video_asset_id, "
                "0.0 AS video_position, CAST(NULL AS DOUBLE) AS video_seek_position, 60.0 AS video_total_length, "
                "1.0 AS video_playback_rate")
    con.execute("CREATE TABLE video_catalog AS SELECT 'v' AS video_id, NULL AS title, 60.0 AS duration, "
                "NULL AS category, NULL AS stage")
    t = time.perf_counter()
    import leadscore.video.kernel  # noqa: F401  (numba)
    heat_and_views(con, "events", AS_OF, threads=2)
    con.close()
    return time.perf_counter() - t


def phase_kernel(path: str, threads: int) -> dict:
    import duckdb

    from leadscore.video import fast

    c_load = time.process_time()
    t_load = _warm_kernel()
    cpu_load = time.process_time() - c_load
    con = duckdb.connect(path)
    con.execute(f"SET threads = {threads}")
    con.execute("DROP TABLE IF EXISTS heat; DROP TABLE IF EXISTS facts")
    c0 = time.process_time()
    t = time.perf_counter()
    hv = fast.heat_and_views(con, "events", AS_OF, threads=threads)
    steps = dict(fast.TIMINGS)
    con.register("k_runs", hv.runs)
    con.register("k_views", hv.views)
    con.execute("CREATE TEMP TABLE heat AS SELECT * FROM k_runs")
    con.execute("CREATE TEMP TABLE facts AS SELECT * FROM k_views")
    seconds = time.perf_counter() - t
    cpu = time.process_time() - c0
    con.unregister("k_runs")
    con.unregister("k_views")
    n = con.execute("SELECT count(*), sum(unique_seconds), sum(watch_seconds) FROM facts").fetchone()
    runs = con.execute("SELECT count(*) FROM heat").fetchone()[0]
    con.close()
    return {"seconds": seconds, "cpu_seconds": cpu, "seconds_load": t_load, "cpu_seconds_load": cpu_load,
            "steps": steps, "viewer_videos": n[0], "unique_seconds": int(n[1] or 0), "watch_seconds": int(n[2] or 0),
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
    # the same sample through the SQL and the kernel: the same rows, and the loop's totals
    from leadscore.store.dialect import DUCKDB
    from leadscore.video.facts import VIEW_COLUMNS, video_heatmap_sql, video_views_sql
    from leadscore.video.fast import heat_and_views
    sub = "sample_events"
    heat_cols = ("lead_id", "video_id", "start_sec", "end_sec", "plays")
    t = time.perf_counter()
    sql_runs = sorted(con.execute(f"SELECT {', '.join(heat_cols)} FROM ({video_heatmap_sql(DUCKDB, sub, AS_OF)}) h").fetchall())
    sql_views = sorted(con.execute(f"SELECT {', '.join(VIEW_COLUMNS)} FROM ({video_views_sql(DUCKDB, sub, AS_OF)}) v").fetchall(),
                       key=repr)
    t_sql_sample = time.perf_counter() - t
    hv = heat_and_views(con, sub, AS_OF)
    k_runs = sorted(tuple(r[c] for c in heat_cols) for r in hv.runs.to_pylist())
    k_views = sorted((tuple(r[c] for c in VIEW_COLUMNS) for r in hv.views.to_pylist()), key=repr)
    con.close()
    u, w = VIEW_COLUMNS.index("unique_seconds"), VIEW_COLUMNS.index("watch_seconds")
    return {"sessions": sample, "events": len(rows), "seconds_fetch": t_fetch, "seconds_loop": t_loop,
            "seconds": t_fetch + t_loop, "cpu_seconds": cpu, "unique_seconds": unique, "watch_seconds": watched,
            "sql_unique_seconds": sum(r[u] for r in sql_views), "sql_watch_seconds": sum(r[w] for r in sql_views),
            "kernel_equals_sql": k_runs == sql_runs and k_views == sql_views,
            "sample_runs": len(sql_runs), "sample_views": len(sql_views),
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
    ap.add_argument("--no-sql", action="store_true", help="do not time the SQL reconstruction (PostgreSQL/Spark path)")
    ap.add_argument("--phase", choices=["kernel", "sql", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase == "kernel":
        print(json.dumps(phase_kernel(args.path, args.threads)))
        return
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
    kern = _run_phase("--phase", "kernel", "--path", path, "--threads", str(args.threads))
    sql = None if args.no_sql else _run_phase("--phase", "sql", "--path", path, "--threads", str(args.threads))
    base = _run_phase("--phase", "baseline", "--path", path, "--baseline-sessions", str(sample))
    rate = args.sessions / kern["seconds"]
    cpu_rate = args.sessions / kern["cpu_seconds"]
    base_rate = sample / base["seconds"]
    base_cpu_rate = sample / base["cpu_seconds"]
    steps = ", ".join(f"{k} {w:.2f}/{c:.2f}" for k, (w, c) in kern["steps"].items())
    print(f"leadscore (DuckDB + compiled walk, {args.threads} threads): {args.sessions:,} sessions in "
          f"{kern['seconds']:.2f}s (CPU {kern['cpu_seconds']:.2f}s) = {rate:,.0f} sessions/s ({cpu_rate:,.0f} per CPU-second), "
          f"peak RSS {kern['peak_rss_mib']:,.0f} MiB; {kern['viewer_videos']:,} viewer×video facts, "
          f"{kern['heat_runs']:,} heatmap runs")
    print(f"  steps (wall/CPU s): {steps}; loading the compiled kernel, once per process, not in the figure: "
          f"{kern['seconds_load']:.2f}s (CPU {kern['cpu_seconds_load']:.2f}s)")
    if sql:
        same_out = (sql["viewer_videos"], sql["unique_seconds"], sql["watch_seconds"], sql["heat_runs"]) == (
            kern["viewer_videos"], kern["unique_seconds"], kern["watch_seconds"], kern["heat_runs"])
        print(f"SQL (video_heat_and_views_sql, the PostgreSQL/Spark/engine path, on DuckDB): {sql['seconds']:.2f}s "
              f"(query {sql['seconds_heatmap']:.2f}s + split {sql['seconds_facts']:.2f}s; CPU {sql['cpu_seconds']:.2f}s), "
              f"peak RSS {sql['peak_rss_mib']:,.0f} MiB; same totals as the kernel: {same_out}")
    print(f"baseline Python loop: {sample:,} sessions ({base['events']:,} events) in {base['seconds']:.2f}s "
          f"(fetch {base['seconds_fetch']:.2f}s + loop {base['seconds_loop']:.2f}s; CPU {base['cpu_seconds']:.2f}s) "
          f"= {base_rate:,.0f} sessions/s ({base_cpu_rate:,.0f} per CPU-second), peak RSS {base['peak_rss_mib']:,.0f} MiB")
    same = base["unique_seconds"] == base["sql_unique_seconds"] and base["watch_seconds"] == base["sql_watch_seconds"]
    print(f"sample check: kernel = SQL row for row: {base['kernel_equals_sql']} ({base['sample_runs']:,} runs, "
          f"{base['sample_views']:,} facts); loop totals = SQL: {same} (unique {base['unique_seconds']:,} vs "
          f"{base['sql_unique_seconds']:,}, watched {base['watch_seconds']:,} vs {base['sql_watch_seconds']:,})")
    with_load = args.sessions / (kern["seconds"] + kern["seconds_load"])
    print(f"speed-up: {rate / base_rate:.1f}x wall-clock, {cpu_rate / base_cpu_rate:.1f}x per CPU-second "
          f"(target >= 20x); with the kernel's load counted: {with_load / base_rate:.1f}x wall-clock, "
          f"{args.sessions / (kern['cpu_seconds'] + kern['cpu_seconds_load']) / base_cpu_rate:.1f}x per CPU-second; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not base["kernel_equals_sql"]:
        sys.exit("the kernel and the SQL differ on the sample")


if __name__ == "__main__":
    main()
