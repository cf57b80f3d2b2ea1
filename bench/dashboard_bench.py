"""Dashboard speed: every kind of Leads page request (and one lead's page) with a large scored population.

Figures: server time of each page (its Server-Timing header: query + render) over a real uvicorn
server on loopback, median of repeated requests, and the process CPU per request (server and this
bench's client share the process; DuckDB's worker threads included), for the first page, each filter
(tier, stage, grade, account, score range, search, active within N days), another sort, keyset page 2
and a lead's page. Baseline, measured in the same run: the straightforward way, ranking in Python
(every live score row fetched, sorted, the first 50 enriched) — what a dashboard without keyset
paging and top-N queries would do.

    .venv/bin/python bench/dashboard_bench.py [--leads 100000] [--db bench/out/dashboard-100k.duckdb | postgresql://...]

The DuckDB population is generated once (demo generator, seed 42, scored as of 2026-11-02) and reused;
a postgresql:// store must already hold a scored population.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 11, 2, 12, 0, 0)


def build(path: Path, leads: int) -> None:
    from leadscore.demo.generator import DemoConfig
    from leadscore.demo.load import load_population
    from leadscore.engine.current import refresh_scores
    from leadscore.engine.models_registry import save_model
    from leadscore.model import default_model_path, load_model
    from leadscore.store import open_store

    store = open_store(str(path))
    try:
        t = time.perf_counter()
        load_population(store, DemoConfig(leads=leads, seed=42, end=datetime(2026, 11, 1)))
        print(f"loaded {leads:,} leads in {time.perf_counter() - t:.0f} s", flush=True)
        model = load_model(default_model_path())
        save_model(store, model, AS_OF - timedelta(days=30), activate=True)
        t = time.perf_counter()
        refresh_scores(store, model, AS_OF - timedelta(days=30), cause="model", cause_ref=model.model_version)
        refresh_scores(store, model, AS_OF, cause="time")
        print(f"scored twice in {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        store.close()


def server_ms(client: httpx.Client, url: str, repeat: int) -> tuple[float, float]:
    """Median server time (Server-Timing) and mean process CPU per request, in ms."""
    times = []
    cpu = time.process_time()
    for _ in range(repeat):
        r = client.get(url)
        r.raise_for_status()
        times.append(float(r.headers["server-timing"].split("dur=")[1]))
    return statistics.median(times), (time.process_time() - cpu) * 1000 / repeat


def baseline_ms(store, repeat: int) -> float:
    """Rank in Python: fetch every live score, sort, enrich the top 50 (same enrichment as the page)."""
    from leadscore.service import queries

    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        rows = store.query_dicts("SELECT * FROM lead_scores")
        rows.sort(key=lambda r: (-r["score"], r["lead_id"]))
        queries.enrich(store, [queries._score_row(r) for r in rows[:50]], AS_OF)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--db", default=None, help="a DuckDB file (built when missing) or a postgresql:// URL")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--lead-repeat", type=int, default=3, help="requests of the lead page (it runs an explanation)")
    args = ap.parse_args()
    db = args.db or str(ROOT / "bench" / "out" / f"dashboard-{args.leads // 1000}k.duckdb")
    if not db.startswith("postgresql://") and not Path(db).exists():
        Path(db).parent.mkdir(parents=True, exist_ok=True)
        build(Path(db), args.leads)

    os.environ["LEADSCORE_TIME_RESCORE_SECONDS"] = "0"
    from leadscore.service.app import create_app
    from leadscore.service.server import ServerThread
    from leadscore.service.settings import Settings
    from leadscore.store import open_store

    store = open_store(db)
    try:
        n = store.query("SELECT COUNT(*) FROM lead_scores")[0][0]
        app = create_app(store, Settings(demo=True), installers=("leadscore.web.app",))
        app.state.web_clock = lambda: AS_OF
        with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
            client.get("/leads")  # warm-up (model parse, templates)
            first = client.get("/leads").text
            cursor = re.search(r'id="next-page" href="/leads\?([^"]+)"', first).group(1).replace("&amp;", "&")
            top = re.search(r'data-lead="([^"]+)"', first).group(1)
            account = re.search(r'href="/leads\?account=([^"]+)"', first).group(1)
            smith = client.get("/leads?q=smith").text
            smith_next = re.search(r'id="next-page" href="/leads\?([^"]+)"', smith).group(1).replace("&amp;", "&")
            cases = {
                "first page": "/leads",
                "page 2 (cursor)": "/leads?" + cursor,
                "tier=hot": "/leads?tier=hot",
                "stage=SQL": "/leads?stage=SQL",
                "grade=A1": "/leads?grade=A1",
                "account (top lead's)": f"/leads?account={account}",
                "score 50–60": "/leads?min_score=50&max_score=60",
                "search 'smith'": "/leads?q=smith",
                "search 'smith' page 2": "/leads?" + smith_next,
                "active within 7 days": "/leads?active=7",
                "sort fit ascending": "/leads?sort=fit&order=asc",
                "hot, active 30 d, 'son'": "/leads?tier=hot&active=30&q=son",
                "200 rows": "/leads?limit=200",
            }
            figures = {}
            for name, url in cases.items():
                figures[name] = server_ms(client, url, args.repeat)
                print(f"  {name:<28} {figures[name][0]:8.1f} ms   cpu {figures[name][1]:7.1f} ms", flush=True)
            name = f"lead page ({top})"
            figures[name] = server_ms(client, f"/leads/{top}", args.lead_repeat)
            print(f"  {name:<28} {figures[name][0]:8.1f} ms   cpu {figures[name][1]:7.1f} ms", flush=True)
        base = baseline_ms(store, args.repeat)
    finally:
        store.close()
    backend = "PostgreSQL" if db.startswith("postgresql://") else "DuckDB"
    print(f"dashboard, {backend}, {n:,} scored leads, median of {args.repeat} (lead page: {args.lead_repeat}) "
          "server time and process CPU per request")
    for name, (ms, cpu) in figures.items():
        print(f"  {name:<28} {ms:8.1f} ms   cpu {cpu:7.1f} ms")
    print(f"  baseline: rank in Python     {base:8.1f} ms   (first page ratio baseline/page = {base / figures['first page'][0]:.1f}x)")


if __name__ == "__main__":
    sys.exit(main())
