"""Demo population generation: the vectorised Parquet path and the direct store load, each against a
per-event Python baseline measured in the same run.

    .venv/bin/python bench/gen_bench.py [--leads 1000000] [--workers 2] [--sample 5000] [--load 2000]

- parquet: ``write_population(..., "parquet")`` for --leads leads (wall time, events/s, peak memory
  of the process and its workers) vs. the baseline on --sample leads: the same messages as dicts,
  each normalised with ``normalize_message`` and turned into a row in Python, then written to
  Parquet (what a generator without the columnar path does). The baseline is run on a sample and
  its events/s is what is compared (labelled as such).
- load: ``load_population`` of --load leads into a fresh DuckDB file vs. the JSON path
  (``normalize_batch`` + ``store.ingest`` of the same messages, what ``leadscore ingest`` does) on
  the same leads.

Each part runs in a subprocess of its own so that its peak memory is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def _cpu_s() -> float:
    """CPU seconds of this process and its finished workers: on a shared machine wall time is
    inflated by others' work, CPU time much less so."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def part_parquet(leads: int, workers: int, seed: int) -> dict:
    from leadscore.demo import DemoConfig, write_population

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        written = write_population(DemoConfig(leads=leads, seed=seed), tmp, "parquet", workers=workers)
        took = time.perf_counter() - t
        size = (Path(tmp) / "events.parquet").stat().st_size
    return {"leads": leads, "events": written.events, "seconds": took, "events_per_s": written.events / took,
            "peak_mb": _peak_mb(), "parquet_mb": size / 1e6, "cpu_s": _cpu_s()}


def part_baseline(leads: int, seed: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from leadscore.demo import DemoConfig, iter_messages
    from leadscore.demo.generator import EVENT_SCHEMA
    from leadscore.events import EVENT_COLUMNS, normalize_message

    received = datetime(2026, 11, 1)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        writer = pq.ParquetWriter(Path(tmp) / "events.parquet", EVENT_SCHEMA, compression="zstd")
        rows: list[tuple] = []
        n = 0

        def flush():
            cols = list(zip(*rows))
            writer.write_table(pa.table({c: pa.array(v, EVENT_SCHEMA.field(c).type)
                                         for c, v in zip([*EVENT_COLUMNS, "lead_id"], cols)}, schema=EVENT_SCHEMA))
            rows.clear()

        for msg in iter_messages(DemoConfig(leads=leads, seed=seed)):
            ev = normalize_message(msg, received)
            rows.append((*ev.row(), ev.user_id))  # lead_id: the baseline does not resolve anonymous rows
            n += 1
            if len(rows) >= 200_000:
                flush()
        if rows:
            flush()
        writer.close()
        took = time.perf_counter() - t
    return {"leads": leads, "events": n, "seconds": took, "events_per_s": n / took, "peak_mb": _peak_mb(),
            "cpu_s": _cpu_s()}


def part_load(leads: int, seed: int, json_path: bool) -> dict:
    from leadscore.demo import DemoConfig, iter_messages, load_population
    from leadscore.events import normalize_batch
    from leadscore.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "bench.duckdb"))
        config = DemoConfig(leads=leads, seed=seed)
        t = time.perf_counter()
        if json_path:
            batch: list[dict] = []
            received = datetime(2026, 11, 1)
            events = 0
            for msg in iter_messages(config):
                batch.append(msg)
                if len(batch) >= 50_000:
                    events += store.ingest(normalize_batch(batch, received)).stored
                    batch = []
            if batch:
                events += store.ingest(normalize_batch(batch, received)).stored
        else:
            _, events = load_population(store, config)
        took = time.perf_counter() - t
        store.close()
    return {"leads": leads, "events": events, "seconds": took, "events_per_s": events / took,
            "leads_per_s": leads / took, "peak_mb": _peak_mb(), "cpu_s": _cpu_s()}


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--part", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", type=int, default=5_000)
    ap.add_argument("--load", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--part", nargs="+")
    a = ap.parse_args()
    if a.part:
        kind, *rest = a.part
        if kind == "parquet":
            res = part_parquet(int(rest[0]), int(rest[1]), a.seed)
        elif kind == "baseline":
            res = part_baseline(int(rest[0]), a.seed)
        else:
            res = part_load(int(rest[0]), a.seed, json_path=kind == "load-json")
        print(json.dumps(res))
        return

    print(f"machine: {os.cpu_count()} cores; seed {a.seed}; load average at start {os.getloadavg()[0]:.1f}")
    fast = _run("parquet", str(a.leads), str(a.workers))
    base = _run("baseline", str(a.sample))
    print(f"parquet  {fast['leads']:>10,} leads {fast['events']:>12,} events {fast['seconds']:8.1f} s "
          f"{fast['events_per_s']:>12,.0f} ev/s  peak {fast['peak_mb']:,.0f} MB  file {fast['parquet_mb']:,.0f} MB"
          f"  (workers={a.workers}; {fast['cpu_s']:,.0f} CPU-s, {fast['events'] / fast['cpu_s']:,.0f} ev per CPU-s)")
    print(f"baseline {base['leads']:>10,} leads {base['events']:>12,} events {base['seconds']:8.1f} s "
          f"{base['events_per_s']:>12,.0f} ev/s  peak {base['peak_mb']:,.0f} MB  (per-event Python, sample; "
          f"{base['events'] / base['cpu_s']:,.0f} ev per CPU-s)")
    print(f"ratio: vectorised / per-event baseline = {fast['events_per_s'] / base['events_per_s']:.1f}x events/s wall, "
          f"{(fast['events'] / fast['cpu_s']) / (base['events'] / base['cpu_s']):.1f}x events per CPU-s; "
          f"baseline would take {fast['events'] / base['events_per_s'] / 60:.1f} min for {fast['events']:,} events")
    if a.load:
        fast_l = _run("load", str(a.load))
        base_l = _run("load-json", str(a.load))
        print(f"load     {fast_l['leads']:>10,} leads {fast_l['events']:>12,} events {fast_l['seconds']:8.1f} s "
              f"{fast_l['events_per_s']:>12,.0f} ev/s  peak {fast_l['peak_mb']:,.0f} MB  (load_population, DuckDB)")
        print(f"json     {base_l['leads']:>10,} leads {base_l['events']:>12,} events {base_l['seconds']:8.1f} s "
              f"{base_l['events_per_s']:>12,.0f} ev/s  peak {base_l['peak_mb']:,.0f} MB  (normalize_batch + ingest)")
        print(f"ratio: load_population / JSON ingest = {base_l['seconds'] / fast_l['seconds']:.1f}x faster (wall), "
              f"{base_l['cpu_s'] / fast_l['cpu_s']:.1f}x less CPU")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
