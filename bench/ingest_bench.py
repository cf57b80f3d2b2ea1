"""Ingestion benchmark: a real `leadscore serve` process and a load generator process on loopback.

    .venv/bin/python bench/ingest_bench.py                 # DuckDB and PostgreSQL, all scenarios
    .venv/bin/python bench/ingest_bench.py --backend duckdb --seconds 10

Scenarios (each against a fresh store):
  batch      /v1/batch, 500 events per request, 8 connections as fast as they go → events/s, latency
  track      /v1/track at a fixed 1,000 requests/s (open loop: latency counted from the scheduled send
             instant, so a stalled server cannot hide its queueing) → achieved rate, p50/p99
Modes (--modes, each scenario runs in each, in the same run):
  log        what `leadscore serve` runs: acknowledged once fsynced in the durable ingestion log,
             applied to the store behind it (LEADSCORE_INGEST_LOG in a temporary directory); /v1/* is
             answered by the ingestion process the server starts (service/frontend.py)
  log1       the same in one process (LEADSCORE_INGEST_PROCESS=0): the previous design, for comparison
  commit     acknowledged after the store's group commit (LEADSCORE_INGEST_LOG=off)
  one        baseline: one transaction per request (the straightforward service of PERFORMANCE.md)
The server runs with --ingest-only (no live scoring, REST API or dashboard installers) unless --full.
"server CPU" counts the `leadscore serve` process and its children (the ingestion process).
After the load, the backlog (acknowledged, not yet in the store) and the time the server takes to
store it are measured: "stored/s" is the events acknowledged over the load time plus that drain,
the rate the store sustained.

The load generator speaks HTTP/1.1 over raw asyncio streams (keep-alive, Content-Length) instead of
httpx: on a 2-core machine the generator must cost far less CPU than the server it measures, and
httpx spends ~0.5 ms of CPU per request.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("LEADSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


# ---------------------------------------------------------------- load generator (own process)
def _request(path: str, body: bytes, auth: str) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Closed(Exception):
    """The server closed the connection (or it broke) before answering."""


async def _exchange(reader, writer, data: bytes) -> int:
    try:
        writer.write(data)
        line = await reader.readline()
    except OSError as exc:
        raise Closed(str(exc)) from None
    if not line:
        raise Closed("connection closed")
    status = int(line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def _track_body(i: int, run: str) -> bytes:
    return (b'{"type":"track","userId":"u%d","event":"Page Viewed","messageId":"%s-%d",'
            b'"timestamp":"2026-11-23T10:00:00.000Z","properties":{"path":"/pricing","scroll_depth":60},'
            b'"context":{"library":{"name":"analytics-python","version":"2.4.0"}}}' % (i % 5000, run.encode(), i))


def _batch_body(start: int, size: int, run: str, anon: bool) -> bytes:
    msgs = []
    for i in range(start, start + size):
        extra = b',"anonymousId":"a%d"' % (i % 5000) if anon else b""
        msgs.append(b'{"type":"track","userId":"u%d"%s,"event":"Page Viewed","messageId":"%s-%d",'
                    b'"timestamp":"2026-11-23T10:00:00.000Z","properties":{"path":"/pricing","scroll_depth":60}}'
                    % (i % 5000, extra, run.encode(), i))
    return b'{"sentAt":"2026-11-23T10:00:01.000Z","batch":[' + b",".join(msgs) + b"]}"


async def _closed_loop_batches(port, auth, seconds, conns, size, run, anon):
    counter = iter(range(0, 10**12, size))
    lat, statuses, events = [], {}, 0
    stop_at = time.perf_counter() + seconds

    async def worker():
        nonlocal events
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            data = _request("/v1/batch", _batch_body(next(counter), size, run, anon), auth)
            t0 = time.perf_counter()
            try:
                status = await _exchange(reader, writer, data)
            except Closed:
                status = 0
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            lat.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                events += size
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return {"elapsed": time.perf_counter() - t0, "latencies": lat, "statuses": statuses, "events": events}


async def _open_loop_track(port, auth, seconds, rate, conns, run):
    queue: asyncio.Queue = asyncio.Queue()
    lat, statuses = [], {}
    total = int(seconds * rate)

    async def scheduler():
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((i, due))
        for _ in range(conns):
            queue.put_nowait(None)

    give_up = time.perf_counter() + 3 * seconds   # an overloaded server is not waited for forever

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            item = await queue.get()
            if item is None:
                break
            i, due = item
            if time.perf_counter() > give_up:
                statuses["not sent"] = statuses.get("not sent", 0) + 1
                continue
            try:
                status = await _exchange(reader, writer, _request("/v1/track", _track_body(i, run), auth))
            except Closed:
                status = 0
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            lat.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(scheduler(), *(worker() for _ in range(conns)))
    return {"elapsed": time.perf_counter() - t0, "latencies": lat, "statuses": statuses, "events": statuses.get(200, 0)}


def _generator(kind, port, token, seconds, out, anon):
    auth = base64.b64encode(f"{token}:".encode()).decode()
    run = uuid.uuid4().hex[:8]
    try:
        if kind == "batch":
            res = asyncio.run(_closed_loop_batches(port, auth, seconds, conns=8, size=500, run=run, anon=anon))
        else:
            res = asyncio.run(_open_loop_track(port, auth, seconds, rate=1000, conns=64, run=run))
    except Exception as exc:  # noqa: BLE001 - report to the parent instead of leaving it waiting
        res = {"error": repr(exc)}
    out.put(res)


# ---------------------------------------------------------------- the server (own process)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) and of its live descendants, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        total += sum(cpu_seconds(int(child)) for child in children)
    return total


def _load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def fresh_store(backend: str, tmp: Path) -> tuple[str, callable]:
    """A new store URL (a DuckDB file, or a fresh PostgreSQL schema) and a function that drops it."""
    if backend == "duckdb":
        path = tmp / f"bench-{uuid.uuid4().hex[:6]}.duckdb"
        return str(path), lambda: None
    import psycopg
    from urllib.parse import quote
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")

    def drop():
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")
    sep = "&" if "?" in PG else "?"
    return f"{PG}{sep}options={quote(f'-csearch_path={schema}')}", drop


def start_server(url: str, port: int, env: dict | None = None, *args: str) -> subprocess.Popen:
    """`leadscore serve` on 127.0.0.1:port as a process, returned once /healthz answers."""
    import httpx

    exe = str(Path(sys.executable).parent / "leadscore")
    proc = subprocess.Popen([exe, "--db", url, "serve", "--port", str(port), *args], env=env or dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)


def _run(backend: str, kind: str, mode: str, seconds: float, tmp: Path, anon: bool = False, full: bool = False) -> dict:
    import httpx

    sys.path.insert(0, str(ROOT / "src"))
    from leadscore.service.auth import create_key
    from leadscore.store import open_store
    from datetime import datetime

    url, drop = fresh_store(backend, tmp)
    store = open_store(url)
    token = create_key(store, "write", datetime(2026, 11, 23), name="bench").token
    store.close()
    port = _free_port()
    env = {**os.environ, "LEADSCORE_WRITE_RATE": "1000000", "LEADSCORE_WRITE_BURST": "1000000",
           "LEADSCORE_INGEST_LOG": str(tmp / f"log-{uuid.uuid4().hex[:6]}") if mode in ("log", "log1") else "off"}
    if mode == "log1":
        env["LEADSCORE_INGEST_PROCESS"] = "0"     # the log, in one process
    if mode == "one":
        env["LEADSCORE_MAX_GROUP_EVENTS"] = "1"   # every request its own transaction
    proc = start_server(url, port, env, *(() if full else ("--ingest-only",)))
    try:
        cpu0 = cpu_seconds(proc.pid)
        out: mp.Queue = mp.Queue()
        gen = mp.Process(target=_generator, args=(kind, port, token, seconds, out, anon))
        gen.start()
        res = out.get(timeout=seconds + 300)
        gen.join()
        if "error" in res:
            raise RuntimeError(f"the load generator failed: {res['error']}")
        stats = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        res["backlog"] = stats["pending_events"]
        t0 = time.perf_counter()

        def behind(stats: dict) -> bool:
            return bool(stats["pending_events"]) or stats.get("applied_seq", 0) < stats.get("logged_seq", 0)
        was_behind = behind(stats)
        while behind(stats) and time.perf_counter() - t0 < 300:   # until the backlog is stored
            time.sleep(0.05)
            stats = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        res["drain"] = time.perf_counter() - t0 if was_behind else 0.0
        res["server_cpu"] = cpu_seconds(proc.pid) - cpu0
        res["commits"] = stats["commits"]
        res["writer_busy"] = stats["writer_busy_seconds"]
        res["log_commits"] = stats.get("log_commits")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    check = open_store(url)
    res["stored"] = check.query("SELECT count(*) FROM events")[0][0]
    check.close()
    drop()
    return res


def _summary(res: dict) -> dict:
    lat = sorted(res["latencies"]) or [float("nan")]
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return {"events_per_s": res["events"] / res["elapsed"], "requests_per_s": len(lat) / res["elapsed"],
            "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "max_ms": lat[-1] * 1000,
            "statuses": res["statuses"], "commits": res["commits"], "stored": res["stored"],
            "writer_busy": res["writer_busy"] / (res["elapsed"] + res["drain"]),
            "backlog": res["backlog"], "drain_s": res["drain"], "log_commits": res["log_commits"],
            "stored_per_s": res["events"] / (res["elapsed"] + res["drain"]),
            "cpu_us_per_event": res["server_cpu"] / max(res["events"], 1) * 1e6,
            "cpu_share": res["server_cpu"] / (res["elapsed"] + res["drain"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["duckdb", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-baseline", action="store_true", help="leave out the one-commit-per-request mode")
    ap.add_argument("--modes", default="log,commit,one", help="comma-separated: log, log1, commit, one (see above)")
    ap.add_argument("--full", action="store_true", help="the whole service (live scoring, REST API), not --ingest-only")
    ap.add_argument("--kinds", default="batch,track", help="comma-separated: batch, track")
    ap.add_argument("--anon", action="store_true", help="batch events also carry an anonymousId (identity links)")
    args = ap.parse_args()
    backends = ["duckdb", "postgres"] if args.backend == "both" else [args.backend]
    modes = [m for m in args.modes.split(",") if m and not (args.no_baseline and m == "one")]
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    print(f"machine: {os.cpu_count()} cores; {args.seconds:g} s per scenario")
    for backend in backends:
        for kind in args.kinds.split(","):
            for mode in modes:
                r = _summary(_run(backend, kind, mode, args.seconds, tmp, args.anon, args.full))
                print(f"{backend:8s} {kind:5s} {mode:6s}: {r['events_per_s']:7.0f} events/s acknowledged "
                      f"({r['requests_per_s']:5.0f} req/s), stored/s {r['stored_per_s']:7.0f}  "
                      f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  backlog at end {r['backlog']} "
                      f"(stored in {r['drain_s']:.1f} s)  commits {r['commits']}"
                      + (f" log fsyncs {r['log_commits']}" if r["log_commits"] is not None else "")
                      + f"  writer busy {r['writer_busy']:.0%}  server CPU {r['cpu_us_per_event']:.0f} µs/event "
                      f"({r['cpu_share']:.2f} cores)  stored {r['stored']}  statuses {r['statuses']}  [{_load()}]",
                      flush=True)


if __name__ == "__main__":
    main()
