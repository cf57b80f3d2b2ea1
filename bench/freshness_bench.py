"""Score freshness under ingestion load, and the read API's speed on a large population.

    .venv/bin/python bench/freshness_bench.py                       # freshness on DuckDB and PostgreSQL
    .venv/bin/python bench/freshness_bench.py --backend duckdb --leads 20000 --seconds 20
    .venv/bin/python bench/freshness_bench.py --backend postgres --leads 5000 --seconds 30 --conns 4 --rate 200 --batch 20
    .venv/bin/python bench/freshness_bench.py --queries --leads 100000 --backend duckdb
    .venv/bin/python bench/freshness_bench.py --backend duckdb --rate 1000 --batch 50 --conns 4 --busy 2
    .venv/bin/python bench/freshness_bench.py --backend duckdb --population /tmp/pop20k.duckdb   # load once, copy after

Freshness (event accepted → new score readable): a store holding a demo population (default model,
every lead scored) is served by a real `leadscore serve` (its ingestion process answers /v1/*; the store's
process applies the ingestion log, scores live and serves the REST API). A load
generator process sends /v1/batch requests of 500 page events to the population's leads over 8
connections as fast as they are answered (the ingestion benchmark's load), or, with --rate R, open loop at R
events/s in requests of --batch events (each event a different lead). Meanwhile a probe sends,
every 250 ms, one message for a new lead and polls GET /api/leads/{id}/history until the change caused
by that messageId is readable: the time from the 200 acknowledgement to that read is the freshness.
The server's own measure (receive time → score committed, every message) is read from /api/live.
--busy K: K CPU-bound processes (busy loops at the default priority) run beside the server during the
load, as another workload on the machine would.
Baseline, same run: one full re-score of the population (what a scorer without per-batch updates
would need at least between an event and its score); ratio = baseline / freshness p99.

Queries (--queries): the read models of leadscore.service.queries on the loaded store, first page of
the lead list (plain, filtered, searched) and the account list, against the straightforward query
(every lead joined with its resolved traits, sorted in SQL, no keyset/index use) in the same run.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
PG = os.environ.get("LEADSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------- stores
sys.path.insert(0, str(ROOT / "bench"))
from ingest_bench import _free_port as free_port  # noqa: E402 - the ingestion benchmark's helpers
from ingest_bench import cpu_seconds, fresh_store, start_server  # noqa: E402


def populate(url: str, leads: int) -> dict:
    """Demo population, default model active, everyone scored. Returns timings and a lead sample."""
    from leadscore.demo.generator import DemoConfig
    from leadscore.demo.load import load_population
    from leadscore.engine.models_registry import save_model
    from leadscore.model import default_model_path, load_model
    from leadscore.service.live import LiveScorer, LiveSettings
    from leadscore.store import open_store

    store = open_store(url)
    t = time.perf_counter()
    n, events = load_population(store, DemoConfig(leads=leads))
    load_s = time.perf_counter() - t
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    save_model(store, load_model(default_model_path()), now, activate=True)
    live = LiveScorer(store, LiveSettings(time_rescore_seconds=0, crm_sync=False))
    t = time.perf_counter()
    live.rescore_all(now, "model", "bench")
    first_s = time.perf_counter() - t
    sample = [r[0] for r in store.query("SELECT lead_id FROM lead_scores ORDER BY lead_id LIMIT 5000")]
    store.close()
    return {"leads": n, "events": events, "load_s": load_s, "first_full_s": first_s, "sample": sample}


def populated(url: str, leads: int, keep: str | None) -> dict:
    """`populate`, or with `keep` (DuckDB only) a copy of the store kept there by an earlier run of the
    same size (populated and kept on the first), so repeated runs skip the load and first scoring."""
    if keep is None:
        return populate(url, leads)
    kept, meta = Path(keep), Path(keep + ".json")
    if not (kept.exists() and meta.exists() and json.loads(meta.read_text())["leads"] == leads):
        kept.unlink(missing_ok=True)
        meta.write_text(json.dumps(populate(str(kept), leads)))
    shutil.copyfile(kept, url)
    return json.loads(meta.read_text())


def full_rescore_seconds(url: str) -> float:
    """Baseline: score the whole population once (nothing written)."""
    from leadscore.engine import score_leads
    from leadscore.engine.models_registry import active_model
    from leadscore.store import open_store

    store = open_store(url)
    model = active_model(store)
    t = time.perf_counter()
    score_leads(store, model, datetime.now(timezone.utc).replace(tzinfo=None))
    out = time.perf_counter() - t
    store.close()
    return out


# ---------------------------------------------------------------- load generator (own process)
PATHS = ("/pricing", "/blog/lead-scoring-101", "/docs/api", "/case-studies/acme", "/")


def _request(method: str, path: str, auth: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _exchange(reader, writer, data: bytes) -> tuple[int, bytes]:
    # like ingest_bench._exchange, but the probe needs the response body too
    writer.write(data)
    status = int((await reader.readline()).split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def _batch(leads: list[str], start: int, size: int, run: str, ts: str) -> bytes:
    msgs = []
    for i in range(start, start + size):
        msgs.append('{"type":"page","userId":"%s","messageId":"%s-%d","timestamp":"%s",'
                    '"properties":{"path":"%s","time_on_page":40}}' % (leads[i % len(leads)], run, i, ts, PATHS[i % len(PATHS)]))
    return ('{"batch":[' + ",".join(msgs) + "]}").encode()


async def _load(port, write_auth, seconds, conns, size, leads, run, rate=0.0):
    """Closed loop (rate 0: each connection sends its next batch when the last is answered) or open
    loop at ``rate`` events/s (each connection on its own schedule; a late batch is sent at once)."""
    counter = iter(range(0, 10**12, size))
    statuses, events = {}, 0
    stop_at = time.perf_counter() + seconds
    interval = conns * size / rate if rate > 0 else 0.0

    async def worker(k):
        nonlocal events
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        due = time.perf_counter() + k * interval / max(conns, 1)
        while time.perf_counter() < stop_at:
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval
            # Milliseconds, as the SDKs send them (a lead's page views within one second were equal
            # times before: a max_count rule's new occurrence then cannot be merged in order).
            ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            status, _ = await _exchange(reader, writer, _request("POST", "/v1/batch", write_auth,
                                                                 _batch(leads, next(counter), size, run, ts)))
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                events += size
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(conns)))
    return {"elapsed": time.perf_counter() - t0, "statuses": statuses, "events": events}


async def _probe(port, write_auth, read_auth, seconds, run, warmup):
    """Every 250 ms: a new lead's first page view; time from its 200 to its readable history row."""
    await asyncio.sleep(warmup)
    fresh, misses = [], 0
    stop_at = time.perf_counter() + seconds - warmup - 1
    k = 0

    async def once(data: bytes) -> tuple[int, bytes]:
        # a connection per request: a probe may wait longer than the server's keep-alive timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await _exchange(reader, writer, data)
        finally:
            writer.close()

    while time.perf_counter() < stop_at:
        k += 1
        lead, mid = f"probe-{run}-{k}", f"probe-{run}-{k}"
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = ('{"batch":[{"type":"page","userId":"%s","messageId":"%s","timestamp":"%s",'
                '"properties":{"path":"/pricing"}}]}' % (lead, mid, ts)).encode()
        status, _ = await once(_request("POST", "/v1/batch", write_auth, body))
        acked = time.perf_counter()
        if status != 200:
            misses += 1
            continue
        while True:
            status, text = await once(_request("GET", f"/api/leads/{lead}/history?limit=1", read_auth))
            if status == 200:
                rows = json.loads(text)
                if rows and mid in (rows[0]["cause_ref"] or ""):
                    fresh.append(time.perf_counter() - acked)
                    break
            if time.perf_counter() - acked > 120:
                misses += 1
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(max(0.0, 0.25 - (time.perf_counter() - acked)))
    return {"fresh": fresh, "misses": misses}


def generator(port, write_token, read_token, seconds, leads, conns, out, rate=0.0, size=500):
    write_auth = "Basic " + base64.b64encode(f"{write_token}:".encode()).decode()
    read_auth = f"Bearer {read_token}"
    run = uuid.uuid4().hex[:8]

    async def main():
        return await asyncio.gather(_load(port, write_auth, seconds, conns, size, leads, run, rate),
                                    _probe(port, write_auth, read_auth, seconds, run, warmup=2.0))
    load, probe = asyncio.run(main())
    out.put({"load": load, "probe": probe})


def _spin(seconds: float) -> None:
    """Another workload on the machine (--busy): one core's worth of CPU, at the default priority."""
    stop_at = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < stop_at:
        x += 1


def freshness(backend: str, leads: int, seconds: float, tmp: Path, conns: int = 8, rate: float = 0.0,
              size: int = 500, busy: int = 0, keep: str | None = None) -> dict:
    import httpx

    from leadscore.service.auth import create_key
    from leadscore.store import open_store

    url, drop = fresh_store(backend, tmp)
    try:
        pop = populated(url, leads, keep)
        baseline = full_rescore_seconds(url)
        store = open_store(url)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        write = create_key(store, "write", now, name="bench").token
        read = create_key(store, "read", now, name="bench").token
        store.close()
        port = free_port()
        env = {**os.environ, "LEADSCORE_WRITE_RATE": "1000000", "LEADSCORE_WRITE_BURST": "1000000",
               "LEADSCORE_READ_RATE": "1000000", "LEADSCORE_READ_BURST": "1000000", "LEADSCORE_CRM_SYNC": "false",
               "LEADSCORE_TIME_RESCORE_SECONDS": "0", "LEADSCORE_INGEST_LOG": str(tmp / f"log-{uuid.uuid4().hex[:6]}")}
        # The real `leadscore serve`: its ingestion process answers /v1/*, the store's process applies,
        # scores and serves the API (bench/ingest_bench.start_server).
        proc = start_server(url, port, env)
        try:
            auth = {"Authorization": f"Bearer {read}"}
            while httpx.get(f"http://127.0.0.1:{port}/api/models/activation", headers=auth).json()["state"] == "running":
                time.sleep(0.2)
            httpx.get(f"http://127.0.0.1:{port}/api/live", headers=auth)
            cpu0 = cpu_seconds(proc.pid)
            q = mp.Queue()
            gen = mp.Process(target=generator, args=(port, write, read, seconds, pop["sample"], conns, q, rate, size))
            gen.start()
            spinners = [mp.Process(target=_spin, args=(seconds,)) for _ in range(busy)]
            for sp in spinners:
                sp.start()
            res = q.get()
            gen.join()
            for sp in spinners:
                sp.join()
            # let the scorer finish the backlog, then read its own measure
            deadline = time.monotonic() + 120
            while True:
                stats = httpx.get(f"http://127.0.0.1:{port}/api/live", headers=auth).json()
                health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
                if health["pending_events"] == 0 and stats["freshness_seconds"]["samples"] >= res["load"]["events"] \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            cpu = cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        drop()
    load, probe = res["load"], res["probe"]
    load["elapsed"] = max(load["elapsed"], 1e-9)
    return {"backend": backend, "leads": pop["leads"], "events_in_store": pop["events"], "load_s": pop["load_s"],
            "baseline_full_rescore_s": baseline, "events_per_s": load["events"] / load["elapsed"],
            "statuses": load["statuses"], "probe_n": len(probe["fresh"]), "probe_misses": probe["misses"],
            "probe_p50": pct(probe["fresh"], 50), "probe_p99": pct(probe["fresh"], 99), "probe_max": max(probe["fresh"] or [float("nan")]),
            "server": stats["freshness_seconds"], "batches": stats["batches"], "yielded": stats.get("yielded_batches", 0), "changes": stats["changes"],
            "partial_leads": stats.get("partial_leads"), "full_leads": stats.get("full_leads"),
            "merged_leads": stats.get("merged_leads", 0),
            "score_s": stats.get("score_seconds"), "write_s": stats.get("write_seconds"),
            "server_cpu_s": cpu, "ratio": baseline / pct(probe["fresh"], 99) if probe["fresh"] else float("nan")}


# ---------------------------------------------------------------- queries
def queries_bench(backend: str, leads: int, tmp: Path, url: str | None, repeat: int = 7) -> dict:
    from leadscore.service import queries
    from leadscore.store import open_store

    drop = lambda: None  # noqa: E731
    if url is None:
        url, drop = fresh_store(backend, tmp)
        populate(url, leads)
    store = open_store(url)
    try:
        as_of = datetime.now(timezone.utc).replace(tzinfo=None)
        n = store.query("SELECT COUNT(*) FROM lead_scores")[0][0]
        some = store.query("SELECT value FROM lead_traits WHERE key = 'account_id' LIMIT 1")
        account = some[0][0] if some else None

        def timed(fn):
            fn()  # warm
            runs = []
            for _ in range(repeat):
                t = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - t)
            return statistics.median(runs)

        first = queries.list_leads(store, as_of=as_of, limit=50)
        cases = {
            "first page (score desc)": lambda: queries.list_leads(store, as_of=as_of, limit=50),
            "second page (cursor)": lambda: queries.list_leads(store, as_of=as_of, limit=50, cursor=first["next_cursor"]),
            "tier=hot": lambda: queries.list_leads(store, as_of=as_of, tier="hot", limit=50),
            "account filter": lambda: queries.list_leads(store, as_of=as_of, account=account, limit=50),
            "search q=ann": lambda: queries.list_leads(store, as_of=as_of, q="ann", limit=50),
            "active within 7 days": lambda: queries.list_leads(store, as_of=as_of, active_within_days=7, limit=50),
            "accounts first page": lambda: queries.list_accounts(store, limit=50),
            "tier what-if": lambda: queries.tier_whatif(store, {"cold": None, "warm": 30, "hot": 90}),
        }
        out = {name: timed(fn) for name, fn in cases.items()}

        def naive():
            # the straightforward read: every lead with its resolved traits, ranked, first 50 in Python
            rows = store.query_dicts(
                "SELECT s.lead_id, s.score, s.tier, t.key, t.value FROM lead_scores s "
                "LEFT JOIN resolved_traits t ON t.lead_id = s.lead_id AND t.key IN ('email', 'name', 'company.name', 'account_id') "
                "ORDER BY s.score DESC, s.lead_id DESC")
            leads = {}
            for r in rows:
                leads.setdefault(r["lead_id"], {"score": r["score"]})[r["key"]] = r["value"]
            return list(leads.items())[:50]
        out["baseline: naive join+sort, first page"] = timed(naive)
        return {"backend": backend, "leads": n, "timings": out}
    finally:
        store.close()
        drop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["duckdb", "postgres", "both"], default="both")
    ap.add_argument("--leads", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--conns", type=int, default=8, help="load connections (0: the probe alone, no load)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="events/s of the load, open loop (0: as fast as answered, the ingestion benchmark's load)")
    ap.add_argument("--batch", type=int, default=500, help="events per load request")
    ap.add_argument("--busy", type=int, default=0,
                    help="CPU-bound processes running beside the server during the load (another workload on the machine)")
    ap.add_argument("--population", default=None, metavar="FILE",
                    help="DuckDB: keep the populated store in FILE and copy it on later runs of the same --leads")
    ap.add_argument("--queries", action="store_true", help="time the read models instead of freshness")
    ap.add_argument("--db", default=None, help="--queries on an existing, scored store")
    args = ap.parse_args()
    backends = ["duckdb", "postgres"] if args.backend == "both" else [args.backend]
    if args.population and backends != ["duckdb"]:
        ap.error("--population keeps a DuckDB file: give --backend duckdb")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if args.queries:
                res = queries_bench(backend, args.leads, Path(tmp), args.db)
                print(f"\n[{backend}] read models on {res['leads']:,} scored leads (median of 7, ms)")
                base = res["timings"]["baseline: naive join+sort, first page"]
                for name, secs in res["timings"].items():
                    print(f"  {name:42s} {secs * 1000:9.1f}   (baseline/this {base / secs:6.1f}x)")
                continue
            res = freshness(backend, args.leads, args.seconds, Path(tmp), args.conns, args.rate, args.batch, args.busy,
                            args.population)
            s = res["server"]
            print(f"\n[{backend}] {res['leads']:,} leads, {res['events_in_store']:,} events loaded in {res['load_s']:.0f} s")
            print(f"  load: {res['events_per_s']:,.0f} events/s accepted, statuses {res['statuses']}, "
                  f"server CPU {res['server_cpu_s']:.1f} s, {res['batches']} scoring batches ({res['yielded']} yielding to ingestion), {res['changes']:,} score changes "
                  + (f"(leads re-scored: {res['merged_leads']:,} merged, {res['partial_leads']:,} partial, {res['full_leads']:,} full; "
                     f"scoring {res['score_s']:.1f} s, writing {res['write_s']:.1f} s)" if res["score_s"] is not None else ""))
            print(f"  freshness (probe: 200 → history row readable, n={res['probe_n']}, misses {res['probe_misses']}): "
                  f"p50 {res['probe_p50'] * 1000:.0f} ms, p99 {res['probe_p99'] * 1000:.0f} ms, max {res['probe_max'] * 1000:.0f} ms")
            print(f"  freshness (server: receive → score committed, n={s['samples']:,}): p50 {(s['p50'] or 0) * 1000:.0f} ms, "
                  f"p99 {(s['p99'] or 0) * 1000:.0f} ms, max {(s['max'] or 0) * 1000:.0f} ms")
            print(f"  baseline: one full re-score of the population {res['baseline_full_rescore_s'] * 1000:.0f} ms; "
                  f"ratio baseline / probe p99 = {res['ratio']:.1f}")


if __name__ == "__main__":
    main()
