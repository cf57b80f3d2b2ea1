"""Batch scoring at scale: the engine (compiled SQL on DuckDB over Parquet) against the floor (a
hand-written DuckDB query of the same rules) and a vectorised pandas version, in the same run.

    .venv/bin/python -m bench.scale_bench [--leads 20000] [--data /tmp/leadscore-bench]
        [--memory-limit 3GB] [--threads 2] [--sample 10000] [--pandas-max-events 20000000]
        [--repeat 1] [--growth 20000,60000,100000] [--skip-default] [--typed] [--only-incremental] [--only-growth] [--runs 1]

1. The demo population of --leads leads is generated once as Parquet (DATA/leads-N/events.parquet;
   reused when present). 1,000,000 leads make ~48,000,000 events.
2. Agreement: on a sample of --sample leads the engine, the floor and pandas must give the same
   score, fit, engagement, tier and stage on every lead (to 1e-6), or the benchmark fails.
   The three-way comparison uses bench/playbook.yaml: the default model's playbook rules without
   its per-second video reconstruction (which a hand-written or pandas version could not reasonably
   repeat); the default model itself is timed too, engine only.
3. Full re-score of every lead, each implementation in a process of its own: wall time, events/s and
   the process's peak RSS (DuckDB runs with memory_limit = --memory-limit and spills to a temp
   folder beyond it). pandas runs on a lead sample when the log has more than --pandas-max-events
   events; its time is then scaled to the whole log and labelled so. --repeat N: the three run in turn
   N times (the default model once), each reported by its median run, and the ratios are the medians'.
4. Incremental (leadscore.engine.state): a full run as of t1 (the log's end) writing its state, then
   a new Parquet file in the log's folder with messages of 1% of the leads in the hour after t1, and
   an incremental run as of t2 = t1 + 1 h (reads the new file only, re-scores the changed leads from
   the state, returning their rows), against a full run of the whole folder as of t2
   (bench/playbook.yaml with its half-lives written as decay steps: an exponential decay changes
   every visitor's points every hour). Checked equal on every lead and column: the whole table the
   state holds after the run (read after the timing, its own time reported) and the rows the run
   returned. Work folder: DATA/incremental-N. --runs K: K - 1 more runs follow, each with a new file of
   another 1% of the leads' messages in the next hour, timed one by one (every 8th compacts the state:
   leadscore.engine.state.COMPACT_EVERY); the last one's whole table is checked against a full run.
5. --growth: the engine's time at several population sizes (linear growth check); --only-growth runs
   only these points.
--typed: everything runs on the typed log instead (properties and context as STRUCT columns, as a
warehouse export keeps them): DATA/leads-N/events-typed.parquet, converted once from the JSON log
(leadscore.engine.typed_log; reused when present); the floor and pandas read its fields directly.
Figures print as a table and as JSON (the last line).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "bench" / "playbook.yaml"
DEFAULT = ROOT / "models" / "default.yaml"
AS_OF = datetime(2026, 11, 1)          # the demo year's end: every generated event is at or before it


# ----------------------------------------------------------------------------- children (one per figure)
def _peak_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across
    exec, so a child started by a large parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> None:
    """Start this process's VmHWM again from its current RSS (Linux: clear_refs 5), to measure one step."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _stepped_playbook():
    import yaml

    from leadscore.engine.incremental import half_lives_as_steps
    from leadscore.model import parse_model
    raw = half_lives_as_steps(yaml.safe_load(PLAYBOOK.read_text()))
    raw["name"] = "playbook_stepped"
    return parse_model(yaml.safe_dump(raw), "playbook_stepped.yaml")


def child(kind: str, a: dict) -> dict:
    from leadscore.engine.parquet import open_duckdb
    files, as_of = a["files"], datetime.fromisoformat(a["as_of"])
    tmp = a.get("temp_dir")
    if kind == "engine":
        from leadscore.engine.parquet import score_parquet
        from leadscore.model import load_model
        m = load_model(a["model"])
        conn = open_duckdb(a["memory_limit"], a["threads"], tmp)   # as the floor: the connection is not timed
        t = time.perf_counter()
        frame = score_parquet(m, files[0] if len(files) == 1 else Path(files[0]).parent, as_of, conn=conn,
                              partitions=a.get("partitions"))
        return {"seconds": time.perf_counter() - t, "leads": len(frame), "peak_mb": _peak_mb()}
    if kind == "floor":
        from bench.scale_floor import floor_sql
        conn = open_duckdb(a["memory_limit"], a["threads"], tmp)
        t = time.perf_counter()
        n = len(conn.sql(floor_sql(files, as_of, typed=a.get("typed", False))).fetchall())
        return {"seconds": time.perf_counter() - t, "leads": n, "peak_mb": _peak_mb()}
    if kind == "pandas":
        from bench.scale_pandas import pandas_scores
        leads = set(a["leads"]) if a.get("leads") else None
        t = time.perf_counter()
        n = len(pandas_scores(files, as_of, leads, typed=a.get("typed", False)))
        return {"seconds": time.perf_counter() - t, "leads": n, "peak_mb": _peak_mb()}
    if kind == "incremental":
        from leadscore.engine.parquet import score_parquet
        from leadscore.engine.state import score_with_state
        m = _stepped_playbook()
        t1 = as_of
        t2 = t1 + timedelta(hours=float(a["hours"]))
        opts = dict(memory_limit=a["memory_limit"], threads=a["threads"], temp_dir=tmp)
        work = Path(a["work"])
        log, new = _incremental_log(files[0], work, t1, t2)
        peaks = {}
        _reset_peak()
        t = time.perf_counter()
        first = score_with_state(m, log, work / "state", t1, **opts)       # the full run, writing the state
        state_s, first_full = time.perf_counter() - t, first.full
        del first
        peaks["state_full"] = _peak_mb()
        os.replace(new, log / new.name)                                     # the new messages land as a new file
        _reset_peak()
        t = time.perf_counter()
        inc = score_with_state(m, log, work / "state", t2, **opts)   # returns the re-scored leads' rows
        inc_s = time.perf_counter() - t
        peaks["incremental"] = _peak_mb()
        t = time.perf_counter()
        inc_all = inc.frame                                                 # every lead, read from the state
        read_s = time.perf_counter() - t
        _reset_peak()
        t = time.perf_counter()
        full = score_parquet(m, log, t2, **opts)
        full_s = time.perf_counter() - t
        peaks["full"] = _peak_mb()
        # The whole table the state now holds, and the rows the run returned, against a full run's.
        same = _compare(full, inc_all, all_columns=True)
        same += [f"returned rows: {d}" for d in _compare(full[full["lead_id"].isin(inc.rows["lead_id"])], inc.rows,
                                                         all_columns=True)]
        if len(inc.rows) != inc.rescored:
            same.append(f"returned {len(inc.rows)} rows for {inc.rescored} re-scored leads")
        series = []
        hours = float(a["hours"])
        for k in range(2, int(a.get("runs", 1)) + 1):
            # Run k: another 1% of the leads, new messages in the k-th hour (their own file).
            tk = t1 + timedelta(hours=hours * k)
            f = _new_messages(files[0], work / f"part-{k:04d}.parquet", tk - timedelta(hours=hours), tk, 100, 7 + k,
                              f"new{k}-")
            os.replace(f, log / f.name)
            t = time.perf_counter()
            run = score_with_state(m, log, work / "state", tk, **opts)
            series.append({"run": run.run, "seconds": time.perf_counter() - t, "rescored": run.rescored,
                           "full": run.full, "compacted": run.compacted})
        if series:
            # The last run's whole table (read from the state) against a full run at its instant.
            same += [f"run {run.run}: {d}" for d in _compare(score_parquet(m, log, tk, **opts), run.frame,
                                                             all_columns=True)]
        return {"series": series, "full_seconds": full_s, "state_full_seconds": state_s, "seconds": inc_s, "read_all_seconds": read_s,
                "rescored": inc.rescored,
                "why": inc.why, "new_rows": inc.new_rows, "incremental_full": inc.full, "leads": len(full),
                "first_full": first_full, "identical": not same and not inc.full, "mismatch": same[:5],
                "state_mb": round((work / "state" / "state.duckdb").stat().st_size / 2**20),
                "peak_mb_by_run": {k: round(v) for k, v in peaks.items()}, "peak_mb": max(peaks.values())}
    if kind == "agree":
        import duckdb
        import pandas as pd

        from bench.scale_floor import floor_sql
        from bench.scale_pandas import pandas_scores
        from leadscore.engine.parquet import score_parquet
        from leadscore.model import load_model
        sample = sorted(a["leads"])
        engine = score_parquet(load_model(PLAYBOOK), files[0], as_of, leads=sample)
        conn = duckdb.connect()
        conn.register("sample_leads", pd.DataFrame({"lead_id": sample}))
        floor = conn.sql(floor_sql(files, as_of, leads="sample_leads", typed=a.get("typed", False))).df()
        pandas = pandas_scores(files, as_of, set(sample), typed=a.get("typed", False))
        return {"leads": len(engine), "floor": _compare(engine, floor), "pandas": _compare(engine, pandas),
                "scored": int((engine["score"] != 0).sum()), "peak_mb": _peak_mb()}
    raise SystemExit(f"unknown child {kind!r}")


def _incremental_log(src: str, work: Path, t1: datetime, t2: datetime, share: int = 100) -> tuple[Path, Path]:
    """A log folder holding the log (linked) as consumed at t1, and beside it a new Parquet file of
    messages at t2: 1 lead in ``share`` (by hash) repeats its three latest messages (new message ids)
    at instants spread over (t1, t2]. Returns (the folder, the new file, to move into the folder)."""
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    log = work / "log"
    log.mkdir(parents=True)
    os.symlink(os.path.abspath(src), log / "part-0000.parquet")
    return log, _new_messages(src, work / "part-0001.parquet", t1, t2, share, 7, "new-")


def _new_messages(src: str, new: Path, t1: datetime, t2: datetime, share: int, bucket: int, tag: str) -> Path:
    """The leads with hash(lead_id) % share == bucket repeat their three latest messages of ``src``
    (message ids prefixed with ``tag``) at instants spread over (t1, t2], written to ``new``."""
    import duckdb
    span = int((t2 - t1).total_seconds() * 1e6) - 1
    at = f"TIMESTAMP '{t1:%Y-%m-%d %H:%M:%S}' + to_microseconds(CAST(1 + abs(hash(message_id)) % {span} AS BIGINT))"
    duckdb.connect().execute(
        f"COPY (SELECT * EXCLUDE (rn) REPLACE ('{tag}' || message_id AS message_id, {at} AS ts, {at} AS received_at) "
        f"FROM (SELECT *, row_number() OVER (PARTITION BY lead_id ORDER BY ts DESC, message_id) AS rn "
        f"FROM read_parquet('{src}') WHERE hash(lead_id) % {int(share)} = {int(bucket)}) WHERE rn <= 3) "
        f"TO '{new}' (FORMAT parquet)")
    return new


def _compare(a, b, all_columns: bool = False) -> list[str]:
    """Differences between two score frames (lead by lead); empty when they agree."""
    import numpy as np
    a = a.sort_values("lead_id").reset_index(drop=True)
    b = b.sort_values("lead_id").reset_index(drop=True)
    if list(a["lead_id"]) != list(b["lead_id"]):
        return [f"lead sets differ: {len(a)} vs {len(b)} leads"]
    cols = list(a.columns) if all_columns else ["score", "fit", "engagement", "tier", "stage"]
    out = []
    for col in cols:
        x, y = a[col], b[col]
        if x.dtype.kind == "f":
            bad = ~np.isclose(x.to_numpy(float), y.to_numpy(float), atol=1e-6, rtol=0, equal_nan=True)
        else:
            bad = (x.astype(str) != y.astype(str)).to_numpy()
        if bad.any():
            out.append(f"{col}: {int(bad.sum())} leads differ, e.g. "
                       f"{list(zip(a['lead_id'][bad][:3], x[bad][:3], y[bad][:3]))}")
    return out


# ----------------------------------------------------------------------------- parent
FLOOR = "floor: hand-written DuckDB (playbook)"
ENGINE = "engine: compiled SQL (playbook)"
DEFAULT_ENGINE = "engine: compiled SQL (default model)"


def _summary(label: str, results: list[dict], events: int, note: str) -> dict:
    """One implementation's row: its median run (the lower middle one of an even count), every run's
    seconds, and the highest peak memory of its runs."""
    median = statistics.median_low(r["seconds"] for r in results)
    return {"implementation": label, "seconds": round(median, 2), "events_per_s": round(events / median),
            "peak_mb": round(max(r["peak_mb"] for r in results)), "note": note,
            "runs": [round(r["seconds"], 2) for r in results]}


def _run_child(kind: str, args: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:   # lead samples: too long for argv
        json.dump(args, f)
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.scale_bench", "--child", kind, "--args", f.name],
                              cwd=ROOT, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_population(data: Path, leads: int) -> Path:
    from leadscore.demo import DemoConfig, write_population
    out = data / f"leads-{leads}"
    path = out / "events.parquet"
    if not path.exists():
        t = time.perf_counter()
        w = write_population(DemoConfig(leads), out, "parquet", workers=2)
        print(f"generated {w.leads:,} leads / {w.events:,} events in {time.perf_counter() - t:.0f} s → {path}", flush=True)
    return path


def ensure_typed(path: Path, memory_limit: str, threads: int, temp_dir: str) -> Path:
    """The typed log beside a JSON log (events-typed.parquet), converted once."""
    from leadscore.engine.parquet import open_duckdb
    from leadscore.engine.typed_log import convert_to_typed
    typed = path.with_name("events-typed.parquet")
    if not typed.exists():
        res = convert_to_typed(path, typed, conn=open_duckdb(memory_limit, threads, temp_dir))
        print(f"converted {res.rows:,} events to a typed log in {res.seconds:.0f} s → {typed}", flush=True)
    return typed


def _events(path: Path) -> int:
    import pyarrow.parquet as pq
    return pq.ParquetFile(path).metadata.num_rows


def _sample(path: Path, n: int) -> list[str]:
    """n lead ids spread over the log (ordered by a hash, so the same sample every run)."""
    import duckdb
    rows = duckdb.connect().sql(
        f"SELECT lead_id FROM (SELECT DISTINCT lead_id FROM read_parquet('{path}') WHERE lead_id IS NOT NULL) "
        f"ORDER BY hash(lead_id), lead_id LIMIT {int(n)}").fetchall()
    return [r[0] for r in rows]


def _incremental(ns, common: dict, data: Path, leads: int) -> dict:
    inc = _run_child("incremental", {**common, "hours": ns.incremental_hours, "runs": ns.runs,
                                     "work": str(data / f"incremental-{leads}{'-typed' if ns.typed else ''}")})
    print(f"  incremental ({ns.incremental_hours:g} h later, a new file of {inc['new_rows']:,} messages): re-scored "
          f"{inc['rescored']:,} of {inc['leads']:,} leads ({100 * inc['rescored'] / inc['leads']:.2f}%: {inc['why']}) "
          f"in {inc['seconds']:.2f} s vs a full run {inc['full_seconds']:.2f} s = "
          f"{100 * inc['seconds'] / inc['full_seconds']:.1f}% of it (returning the re-scored leads' rows; every lead's "
          f"row read from the state after it: {inc['read_all_seconds']:.2f} s; the first run, full and writing the "
          f"{inc['state_mb']:,} MB state: {inc['state_full_seconds']:.2f} s; peak MB by run {inc['peak_mb_by_run']}); "
          f"identical to the full run: {inc['identical']}" + ("" if inc["identical"] else f" {inc['mismatch']}"), flush=True)
    if inc["series"]:
        runs = ", ".join(f"run {r['run']}{' (compacting)' if r['compacted'] else ''}{' FULL' if r['full'] else ''}: "
                         f"{r['seconds']:.2f} s = {100 * r['seconds'] / inc['full_seconds']:.1f}%" for r in inc["series"])
        print(f"  later runs, each a new hour of another 1% of the leads: {runs}; the last one's table identical "
              f"to a full run: {inc['identical']}", flush=True)
    return inc


def _growth(ns, common: dict, data: Path, temp: str) -> list[dict]:
    """The engine's full re-score at each --growth population (generated once, like --leads): seconds, peak
    memory and µs per event, each point's µs per event also as a multiple of the first point's."""
    growth = []
    for g in [int(x) for x in ns.growth.split(",") if x.strip()]:
        gp = ensure_population(data, g)
        if ns.typed:
            gp = ensure_typed(gp, ns.memory_limit, ns.threads, temp)
        ge = _events(gp)
        res = _run_child("engine", {**common, "files": [str(gp)], "model": str(PLAYBOOK)})
        us = 1e6 * res["seconds"] / ge
        growth.append({"leads": g, "events": ge, "seconds": round(res["seconds"], 2), "peak_mb": round(res["peak_mb"]),
                       "us_per_event": round(us, 3), "vs_first": round(us / (growth[0]["us_per_event"] if growth else us), 2)})
        print(f"  growth: {ge:>12,} events {res['seconds']:>9.2f} s  {us:.3f} µs/event (×{growth[-1]['vs_first']:.2f} "
              f"the first point's)  {res['peak_mb']:,.0f} MB", flush=True)
    return growth


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--leads", type=int, default=20_000)
    p.add_argument("--events", type=int, default=None,
                   help="target events instead of --leads (the demo makes ~48 events per lead)")
    p.add_argument("--data", default=os.environ.get("LEADSCORE_BENCH_DATA", str(Path(tempfile.gettempdir()) / "leadscore-bench")))
    p.add_argument("--memory-limit", default="3GB")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sample", type=int, default=10_000)
    p.add_argument("--pandas-max-events", type=int, default=20_000_000)
    p.add_argument("--incremental-hours", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=1,
                   help="incremental runs in a series (each a new hour of messages of another 1%% of the leads); "
                        "the last one is checked against a full run")
    p.add_argument("--repeat", type=int, default=1,
                   help="full re-scores of each implementation, in turn (floor, engine, pandas, floor, ...); "
                        "each reported by its median run")
    p.add_argument("--growth", default="", help="comma-separated lead counts for the linear-growth points")
    p.add_argument("--skip-default", action="store_true", help="do not time the default model (video rules)")
    p.add_argument("--typed", action="store_true",
                   help="run on the typed log (properties/context as STRUCT columns), converted once from the JSON log")
    p.add_argument("--only-incremental", action="store_true",
                   help="run only the incremental measurement (4.), with its own full runs for reference")
    p.add_argument("--only-growth", action="store_true",
                   help="run only the growth points (5.): the engine at each --growth population")
    p.add_argument("--child")
    p.add_argument("--args", help="(internal) the child's arguments, a JSON file")
    ns = p.parse_args(argv)
    if ns.repeat < 1:
        p.error(f"--repeat {ns.repeat}: give 1 or more runs")
    if ns.child:
        print(json.dumps(child(ns.child, json.loads(Path(ns.args).read_text())), default=str))
        return 0

    leads = ns.leads if ns.events is None else max(1, round(ns.events / 48))
    data = Path(ns.data)
    temp = str(data / "spill")
    path = ensure_population(data, leads)
    if ns.typed:
        path = ensure_typed(path, ns.memory_limit, ns.threads, temp)
    n_events = _events(path)
    common = {"files": [str(path)], "as_of": AS_OF.isoformat(), "memory_limit": ns.memory_limit,
              "threads": ns.threads, "temp_dir": temp, "typed": ns.typed}
    print(f"log: {path} ({'typed: STRUCT properties/context' if ns.typed else 'JSON-text properties/context'}) — "
          f"{leads:,} leads, {n_events:,} events; DuckDB memory_limit {ns.memory_limit}, "
          f"{ns.threads} threads; as of {AS_OF:%Y-%m-%d}", flush=True)

    if ns.only_incremental:
        inc = _incremental(ns, common, data, leads)
        print(json.dumps({"leads": leads, "events": n_events, "typed": ns.typed, "incremental": inc}, default=str))
        return 0 if inc["identical"] else 1
    if ns.only_growth:
        print(json.dumps({"typed": ns.typed, "growth": _growth(ns, common, data, temp)}, default=str))
        return 0
    sample = _sample(path, min(ns.sample, leads))
    agree = _run_child("agree", {**common, "leads": sample})
    ok = not agree["floor"] and not agree["pandas"]
    print(f"agreement on {agree['leads']:,} sampled leads ({agree['scored']:,} with a non-zero score): "
          f"engine = floor: {'yes' if not agree['floor'] else agree['floor']}; "
          f"engine = pandas: {'yes' if not agree['pandas'] else agree['pandas']}", flush=True)
    if not ok:
        print("FAILED: the three implementations disagree")
        return 1

    # Each implementation's runs, one process each. With --repeat N the three run in turn N times (floor,
    # engine, pandas, floor, ...), so that a slow spell of the machine falls on all of them, and each is
    # reported by its median run; the ratios are those of the medians.
    runs: dict[str, list[dict]] = {}
    pandas_label = "pandas, vectorised (playbook)"
    notes = {DEFAULT_ENGINE: "with the video reconstruction rules", pandas_label: ""}

    def record(label: str, res: dict, measured: str = "") -> None:
        runs.setdefault(label, []).append(res)
        print(f"  {label:<38} {res['seconds']:>9.2f} s {round(n_events / res['seconds']):>12,} ev/s "
              f"{res['peak_mb']:>7,.0f} MB  {notes.get(label, '')}{measured}", flush=True)

    pandas_args, scale = common, 1.0
    if n_events > ns.pandas_max_events:
        pl = _sample(path, max(1, int(leads * ns.pandas_max_events / n_events)))
        scale, pandas_args = leads / len(pl), {**common, "leads": pl}
        notes[pandas_label] = f"SCALED ×{scale:.1f} from a {len(pl):,}-lead sample"
    for k in range(ns.repeat):
        record(FLOOR, _run_child("floor", common))
        record(ENGINE, _run_child("engine", {**common, "model": str(PLAYBOOK)}))
        if k == 0 and not ns.skip_default:
            record(DEFAULT_ENGINE, _run_child("engine", {**common, "model": str(DEFAULT)}))
        res = _run_child("pandas", pandas_args)
        record(pandas_label, {"seconds": res["seconds"] * scale, "peak_mb": res["peak_mb"] * scale},
               f" ({res['seconds']:.1f} s, {res['peak_mb']:.0f} MB measured)" if scale != 1.0 else "")
    rows = [_summary(label, results, n_events, notes.get(label, "")) for label, results in runs.items()]
    for row in rows:
        if len(row["runs"]) > 1:
            print(f"  median of {len(row['runs'])}: {row['implementation']:<38} {row['seconds']:>9.2f} s "
                  f"(runs {', '.join(f'{x:.2f}' for x in row['runs'])}) {row['peak_mb']:>7,} MB peak", flush=True)
    floor, engine, pd_row = (next(r for r in rows if r["implementation"] == label)
                             for label in (FLOOR, ENGINE, pandas_label))
    inc = _incremental(ns, common, data, leads)
    growth = _growth(ns, common, data, temp)
    ratios = {"engine_vs_floor": round(engine["seconds"] / floor["seconds"], 2),
              "pandas_vs_engine": round(pd_row["seconds"] / engine["seconds"], 2),
              "incremental_share": round(inc["seconds"] / inc["full_seconds"], 4)}
    print(f"engine / floor = {ratios['engine_vs_floor']}× (target ≤ 1.5×); pandas / engine = "
          f"{ratios['pandas_vs_engine']}× (target ≥ 5×); incremental = {100 * ratios['incremental_share']:.1f}% of a "
          f"full run (target ≤ 5%)", flush=True)
    print(json.dumps({"leads": leads, "events": n_events, "typed": ns.typed, "rows": rows, "incremental": inc, "growth": growth,
                      "ratios": ratios, "agreement_sample": agree["leads"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
