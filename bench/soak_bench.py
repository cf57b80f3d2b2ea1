"""Bounded soak (issue 8): a real `leadscore serve` (ingestion + live scoring + API) under a steady
load for a few minutes, checking that nothing errors, memory stays within a stated bound, and score
freshness holds.

    .venv/bin/python bench/soak_bench.py                       # DuckDB, 180 s at 3,000 events/s
    .venv/bin/python bench/soak_bench.py --backend postgres --seconds 120 --rate 2000

Load: open-loop /v1/batch requests of 100 events (the schedule does not wait for the server, so a
stall shows as latency). Every 5 s a probe lead requests a demo; the probe polls /api/leads/{id}
until the new score is readable: that is freshness (event sent → score readable). Server memory is
the process RSS from /proc, sampled every 2 s. The bound: after a 30 s warm-up, RSS may not grow by
more than --rss-growth-mb (default 300 MB) — a leak grows without bound, a cache levels off.
Baseline in the same run: the first 30 s (warm-up) against the rest.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_bench as ib  # noqa: E402  (the load generator's HTTP primitives and server helpers)

ROOT = ib.ROOT


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _batch(start: int, size: int, run: str, leads: int) -> bytes:
    msgs = [b'{"type":"track","userId":"soak-%d","event":"Email Opened","messageId":"%s-%d",'
            b'"timestamp":"2026-11-23T10:00:00.000Z","properties":{"email_id":"e%d"}}'
            % (i % leads, run.encode(), i, i % 7) for i in range(start, start + size)]
    return b'{"batch":[' + b",".join(msgs) + b"]}"


async def _load(port: int, auth: str, seconds: float, rate: float, size: int, run: str, leads: int) -> dict:
    per_s = rate / size
    total = int(seconds * per_s)
    queue: asyncio.Queue = asyncio.Queue()
    lat, statuses = [], {}

    async def scheduler():
        t0 = time.perf_counter()
        for k in range(total):
            delay = t0 + k / per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((k, t0 + k / per_s))
        for _ in range(8):
            queue.put_nowait(None)

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            k, due = item
            status = await ib._exchange(reader, writer, ib._request("/v1/batch", _batch(k * size, size, run, leads), auth))
            lat.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(scheduler(), *(worker() for _ in range(8)))
    return {"latencies": lat, "statuses": statuses, "events": statuses.get(200, 0) * size}


def _probe(port: int, write: str, read: str, seconds: float, out: list, stop: threading.Event) -> None:
    import httpx
    k = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            lead = f"probe-{k}"
            body = {"batch": [{"type": "track", "userId": lead, "event": "Demo Requested", "messageId": f"probe-{uuid.uuid4()}",
                               "timestamp": "2026-11-23T10:00:00Z"}]}
            t0 = time.perf_counter()
            try:
                r = client.post("/v1/batch", json=body, auth=(write, ""))
                if r.status_code != 200:
                    out.append(("error", r.status_code))
                else:
                    while time.perf_counter() - t0 < 30:
                        got = client.get(f"/api/leads/{lead}", auth=(read, ""))
                        if got.status_code == 200 and got.json().get("score", 0) >= 50:
                            out.append(("fresh", time.perf_counter() - t0))
                            break
                        time.sleep(0.02)
                    else:
                        out.append(("stale", 30.0))
            except httpx.HTTPError as exc:  # a timeout is a failed probe, not the end of probing
                out.append(("error", type(exc).__name__))
            k += 1
            stop.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["duckdb", "postgres"], default="duckdb")
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--rate", type=float, default=3000, help="events per second")
    ap.add_argument("--leads", type=int, default=5000, help="distinct leads the load touches")
    ap.add_argument("--rss-growth-mb", type=float, default=300)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from leadscore.service.auth import create_key
    from leadscore.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    url, drop = ib.fresh_store(args.backend, tmp)
    store = open_store(url)
    write = create_key(store, "write", datetime(2026, 11, 23), name="soak").token
    read = create_key(store, "read", datetime(2026, 11, 23), name="soak-read").token
    store.close()
    port = ib._free_port()
    env = {**__import__("os").environ, "LEADSCORE_WRITE_RATE": "1000000", "LEADSCORE_WRITE_BURST": "1000000",
           "LEADSCORE_READ_RATE": "1000000", "LEADSCORE_READ_BURST": "1000000"}
    proc = ib.start_server(url, port, env)
    samples: list[tuple[float, float]] = []
    probes: list = []
    stop = threading.Event()
    try:
        import httpx
        t0 = time.monotonic()

        def sampler():
            while not stop.is_set():
                samples.append((time.monotonic() - t0, _rss_mb(proc.pid)))
                stop.wait(2)
        threading.Thread(target=sampler, daemon=True).start()
        prober = threading.Thread(target=_probe, args=(port, write, read, args.seconds, probes, stop), daemon=True)
        prober.start()
        auth = base64.b64encode(f"{write}:".encode()).decode()
        res = asyncio.run(_load(port, auth, args.seconds, args.rate, 100, uuid.uuid4().hex[:8], args.leads))
        stop.set()
        prober.join(40)
        alive = proc.poll() is None
        live = httpx.get(f"http://127.0.0.1:{port}/api/live", auth=(read, ""), timeout=10).json() if alive else {}
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    drop()
    lat = sorted(res["latencies"])
    q = statistics.quantiles(lat, n=100)
    fresh = sorted(v for kind, v in probes if kind == "fresh")
    warm = [r for t, r in samples if t <= 30]
    after = [r for t, r in samples if t > 30]
    growth = (max(after) - max(warm)) if warm and after else float("nan")
    report = {
        "backend": args.backend, "seconds": args.seconds, "target_events_per_s": args.rate,
        "achieved_events_per_s": round(res["events"] / args.seconds), "statuses": res["statuses"],
        "batch_latency_p50_ms": round(q[49] * 1000, 1), "batch_latency_p99_ms": round(q[98] * 1000, 1),
        "probes": len(probes), "probe_failures": [p for p in probes if p[0] != "fresh"],
        "freshness_p50_s": round(statistics.median(fresh), 3) if fresh else None,
        "freshness_max_s": round(fresh[-1], 3) if fresh else None,
        "rss_warmup_max_mb": round(max(warm), 1) if warm else None, "rss_max_mb": round(max(r for _, r in samples), 1),
        "rss_growth_after_warmup_mb": round(growth, 1), "rss_bound_mb": args.rss_growth_mb,
        "server_alive": alive, "live_stats_freshness": live.get("freshness_seconds"), "live_errors": live.get("errors"),
        "machine": ib._load(),
    }
    print(json.dumps(report, indent=2))
    ok = (alive and set(res["statuses"]) == {200} and probes and not report["probe_failures"]
          and growth <= args.rss_growth_mb)
    print("SOAK", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
