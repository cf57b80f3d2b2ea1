"""Outbox throughput: enqueue, webhook delivery and CRM sync, each against a baseline measured in the same run.

    .venv/bin/python bench/outbox_bench.py [--db duckdb|postgres] [--alerts 2000] [--leads 200] [--crm 5000]

- enqueue: alerts/s through ``enqueue_alerts`` (message + fan-out to 2 endpoints, batches of 100 per
  transaction) vs. a plain INSERT of the same rows into a scratch table (baseline = the store's floor).
- webhooks: deliveries/s of ``WebhookWorker.run_once`` to a loopback receiver vs. the same signed POSTs
  sent directly with httpx over the same number of threads (baseline = HTTP floor, no outbox).
- crm: score rows/s from ``enqueue_crm_syncs`` + ``CrmSyncWorker.run_once`` to a loopback HubSpot fake vs.
  the same batch upserts posted directly (baseline).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import httpx
import psycopg

from leadscore.service.crm import CrmSyncWorker, add_crm_target
from leadscore.service.outbox import Alert, enqueue_alerts, enqueue_crm_syncs
from leadscore.service.webhooks import WebhookWorker, add_endpoint, sign_headers
from leadscore.store import open_store

T0 = datetime(2026, 11, 23, 12, 0, 0)
PG = os.environ.get("LEADSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


class Sink:
    """A loopback HTTP server answering 200 (HubSpot-shaped JSON for batch upserts)."""

    def __init__(self):
        sink = self
        self.count = 0
        self.lock = threading.Lock()

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                with sink.lock:
                    sink.count += 1
                out = b""
                if self.path.endswith("/batch/upsert"):
                    inputs = json.loads(raw)["inputs"]
                    out = json.dumps({"status": "COMPLETE", "startedAt": "x", "completedAt": "x", "results": [
                        {"id": str(i), "properties": inp["properties"], "createdAt": "x", "updatedAt": "x"}
                        for i, inp in enumerate(inputs)]}).encode()
                self.send_response(201 if self.path.endswith("/properties/contacts") else 200)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def fresh_store(kind: str):
    if kind == "duckdb":
        d = tempfile.mkdtemp()
        return open_store(os.path.join(d, "bench.duckdb")), lambda: None
    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG}{'&' if '?' in PG else '?'}options={quote(f'-csearch_path={schema}')}"

    def drop():
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")
    return open_store(url), drop


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def bench_enqueue(store, n: int, leads: int) -> tuple[float, float]:
    add_endpoint(store, "https://a.example.com/h", now=T0)
    add_endpoint(store, "https://b.example.com/h", now=T0)
    alerts = [Alert("lead.score_jumped", {"delta": i % 30, "score": 50 + i % 40}, f"l{i % leads}") for i in range(n)]
    t = time.perf_counter()
    for s in range(0, n, 100):
        enqueue_alerts(store, alerts[s:s + 100], now=T0)
    ours = time.perf_counter() - t
    store.execute("CREATE TABLE bench_plain (id VARCHAR, type VARCHAR, lead_id VARCHAR, body VARCHAR, created_at TIMESTAMP)")
    t = time.perf_counter()
    for s in range(0, n, 100):
        with store.transaction() as conn:
            for a in alerts[s:s + 100]:
                store._execute(conn, "INSERT INTO bench_plain VALUES (?, ?, ?, ?, ?)",
                               (uuid.uuid4().hex, a.type, a.lead_id, json.dumps(a.data), T0))
    base = time.perf_counter() - t
    return rate(n, ours), rate(n, base)


def bench_webhooks(store, sink: Sink, concurrency: int) -> tuple[int, float, float]:
    store.execute("UPDATE webhook_endpoints SET url = ?, allow_private = TRUE", (sink.url + "/hooks",))
    pending = store.query("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")[0][0]
    bodies = [r[0] for r in store.query("SELECT m.body FROM webhook_deliveries d JOIN outbox_messages m ON m.seq = d.message_seq")]
    secret = store.query("SELECT secret FROM webhook_endpoints LIMIT 1")[0][0]
    with WebhookWorker(store, allow_private=True, concurrency=concurrency, rng=random.Random(1)) as w:
        t = time.perf_counter()
        report = w.run_once(T0)
        ours = time.perf_counter() - t
    assert report.delivered == pending, report
    client = httpx.Client(timeout=15)

    def post(body: str) -> None:
        h = {"content-type": "application/json", **sign_headers(secret, "msg_x", body, time.time())}
        client.post(sink.url + "/hooks", content=body.encode(), headers=h).raise_for_status()

    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies))
    base = time.perf_counter() - t
    client.close()
    return pending, rate(pending, ours), rate(len(bodies), base)


def bench_crm(store, sink: Sink, n: int) -> tuple[float, float]:
    add_crm_target(store, "hs", "hubspot", now=T0, base_url=sink.url, token="tok")
    store.add_leads([(f"c{i}", {"email": f"c{i}@example.com"}, T0) for i in range(n)])
    rows = [{"lead_id": f"c{i}", "as_of": T0, "score": 50.0 + i % 50, "fit": 20.0, "engagement": 30.0 + i % 50,
             "tier": "warm", "stage": "mql"} for i in range(n)]
    t = time.perf_counter()
    enqueue_crm_syncs(store, rows, now=T0)
    with CrmSyncWorker(store) as w:
        report = w.run_once(T0)
    ours = time.perf_counter() - t
    assert report.synced == n, report
    client = httpx.Client(base_url=sink.url, headers={"authorization": "Bearer tok"}, timeout=30)
    t = time.perf_counter()
    for s in range(0, n, 100):
        client.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": [
            {"idProperty": "email", "id": f"c{i}@example.com", "properties": {"leadscore_score": str(rows[i]["score"])}}
            for i in range(s, min(n, s + 100))]}).raise_for_status()
    base = time.perf_counter() - t
    client.close()
    return rate(n, ours), rate(n, base)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["duckdb", "postgres"], default="duckdb")
    ap.add_argument("--alerts", type=int, default=2000)
    ap.add_argument("--leads", type=int, default=200)
    ap.add_argument("--crm", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    store, drop = fresh_store(args.db)
    sink = Sink()
    try:
        ours, base = bench_enqueue(store, args.alerts, args.leads)
        print(f"[{args.db}] enqueue: {ours:,.0f} alerts/s (x2 endpoints) vs row-at-a-time INSERT {base:,.0f} rows/s  ratio {ours / base:.2f}")
        n, ours, base = bench_webhooks(store, sink, args.concurrency)
        print(f"[{args.db}] webhooks: {n} deliveries over {args.leads} leads x 2 endpoints: {ours:,.0f}/s vs direct httpx "
              f"{base:,.0f}/s  ratio {ours / base:.2f}")
        ours, base = bench_crm(store, sink, args.crm)
        print(f"[{args.db}] crm sync: {ours:,.0f} leads/s (enqueue + coalesce + batch upsert) vs direct batch posts "
              f"{base:,.0f} leads/s  ratio {ours / base:.2f}")
    finally:
        sink.stop()
        store.close()
        drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
