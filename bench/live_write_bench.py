"""The write side of live scoring passes (everything after the scoring in LiveScorer._apply), part by part.

Copies a scored DuckDB store (e.g. one made by ``freshness_bench.populate``), adds one webhook endpoint
and one CRM target, then runs ``--passes`` live passes of ``--leads`` page events to as many distinct
leads and prints, per pass: the scoring (partial.score_live), the write side (_apply minus it) and its
parts (refresh_scores, which writes each lead's cause with its history row, the rule cache, window_lows,
alerts.evaluate, store_alerts, enqueue_crm_syncs, the commit), then the medians.

    PYTHONPATH=src .venv/bin/python bench/live_write_bench.py --store /tmp/prof/s20k.duckdb --leads 7000 --passes 6

``--no-checkpoint`` raises DuckDB's checkpoint_threshold for the run (no automatic checkpoint inside a
commit); ``--no-gc`` turns Python's cyclic GC off: both show what those cost on top.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta

PARTS = ("refresh", "cache", "lows", "eval", "alerts", "crm", "commit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="a scored DuckDB store (copied, never changed)")
    ap.add_argument("--leads", type=int, default=7000)
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--no-checkpoint", action="store_true")
    ap.add_argument("--no-gc", action="store_true")
    args = ap.parse_args()

    from leadscore.events.normalize import normalize_batch
    import leadscore.service.live as lv
    from leadscore.service.live import LiveScorer, LiveSettings
    from leadscore.store import open_store

    work = tempfile.mkdtemp(prefix="live-write-")
    db = os.path.join(work, "store.duckdb")
    shutil.copy(args.store, db)
    store = open_store(db)
    t0 = datetime(2026, 11, 24, 8)
    store.execute("INSERT INTO webhook_endpoints (endpoint_id, url, secret, event_types, enabled, created_at) "
                  "VALUES ('ep_all', 'https://example.com/a', 'whsec_x', NULL, TRUE, ?)", (t0,))
    store.execute("INSERT INTO crm_targets (name, kind, base_url, enabled, created_at) "
                  "VALUES ('hs', 'hubspot', 'https://api.example.com', TRUE, ?)", (t0,))
    if args.no_checkpoint:
        store.conn.execute("SET checkpoint_threshold = '10GB'")
    live = LiveScorer(store, LiveSettings(time_rescore_seconds=0, crm_sync=True))
    took: dict[str, float] = {}

    def timed(name, f):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                took[name] = time.perf_counter() - t
        return wrapper

    lv.partial.score_live = timed("score", lv.partial.score_live)
    lv.partial.save_cache = timed("cache", lv.partial.save_cache)
    lv.refresh_scores = timed("refresh", lv.refresh_scores)
    lv.window_lows = timed("lows", lv.window_lows)
    lv.alert_rules.evaluate = timed("eval", lv.alert_rules.evaluate)
    lv.alert_rules.store_alerts = timed("alerts", lv.alert_rules.store_alerts)
    lv.outbox.enqueue_crm_syncs = timed("crm", lv.outbox.enqueue_crm_syncs)
    live._apply = timed("apply", live._apply)
    outer_tx = store.transaction

    @contextmanager
    def transaction():  # times the COMMIT of the outermost transaction
        outermost = not getattr(store._local, "depth", 0)
        cm = outer_tx()
        conn = cm.__enter__()
        try:
            yield conn
        except BaseException as exc:
            if not cm.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            t = time.perf_counter()
            cm.__exit__(None, None, None)
            if outermost:
                took["commit"] = took.get("commit", 0.0) + time.perf_counter() - t

    store.transaction = transaction
    live.model()
    if args.no_gc:
        gc.disable()
    rng = random.Random(5)
    everyone = [r[0] for r in store.query("SELECT lead_id FROM population ORDER BY lead_id")]
    writes, scores = [], []
    try:
        for p in range(args.passes):
            now = t0 + timedelta(minutes=10 * p)
            msgs = [{"type": "page", "userId": lead, "name": "Pricing", "properties": {"path": "/pricing"},
                     "messageId": uuid.UUID(int=rng.getrandbits(128)).hex, "timestamp": now.isoformat() + "Z"}
                    for lead in rng.sample(everyone, args.leads)]
            result = store.ingest(normalize_batch(msgs, now))
            took.clear()
            report = live.on_ingest(result)
            write = took["apply"] - took["score"]
            writes.append(write)
            scores.append(took["score"])
            parts = " ".join(f"{k} {took.get(k, 0.0):.3f}" for k in PARTS)
            rest = write - sum(took.get(k, 0.0) for k in PARTS)
            print(f"pass {p}: changes {len(report.changes)} alerts {report.alerts} crm {report.crm_items} "
                  f"score_leads {took['score']:.3f} write {write:.3f} = {parts} rest {rest:.3f}")
        print(f"median of {args.passes}: score_leads {statistics.median(scores):.3f} "
              f"write {statistics.median(writes):.3f} (min {min(writes):.3f}, max {max(writes):.3f})")
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
