"""The live scorer's time tick: how many leads it re-scores, and how long it takes, against re-scoring
everyone (what the scheduler did before the rule cache).

    .venv/bin/python bench/time_tick_bench.py [--leads 20000] [--half-life]

A demo population (DuckDB) is scored by the live scorer with the shipped default model, its half-life
decays written as decay steps (``engine.incremental.half_lives_as_steps``; ``--half-life`` keeps them:
then every lead with a page view moves at every instant and is due on every tick). Then, as of 5 minutes,
1 hour and 1 day later, it counts the leads ``engine.partial.due_leads`` finds; runs one tick 5 minutes
later (``LiveScorer.rescore_time``); and checks that afterwards every lead's stored score equals a full
re-score's at that instant. Baseline, same run: the full re-score of everyone.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    import yaml

    from leadscore.demo.generator import DemoConfig
    from leadscore.demo.load import load_population
    from leadscore.engine import partial, score_leads
    from leadscore.engine.incremental import half_lives_as_steps
    from leadscore.engine.models_registry import save_model
    from leadscore.model import default_model_path, parse_model
    from leadscore.service.live import LiveScorer, LiveSettings
    from leadscore.store import open_store

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=20000)
    ap.add_argument("--half-life", action="store_true", help="keep the default model's half-life decays")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "tick.duckdb"))
        n, events = load_population(store, DemoConfig(leads=args.leads))
        raw = yaml.safe_load(default_model_path().read_text())
        if not args.half_life:
            raw = half_lives_as_steps(raw)
            raw["version"] = "default-stepped"
        model = parse_model(yaml.safe_dump(raw), "model.yaml")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        save_model(store, model, now, activate=True)
        live = LiveScorer(store, LiveSettings(time_rescore_seconds=0, crm_sync=False))
        t = time.perf_counter()
        live.rescore_all(now, "model")
        full_s = time.perf_counter() - t
        moving = store.query("SELECT count(*) FROM live_rule_cache WHERE moving")[0][0]
        print(f"{n:,} leads, {events:,} events; model {model.model_version}"
              f"{' (half-life decays)' if args.half_life else ' (decay steps)'}")
        print(f"  baseline: a full re-score of everyone {full_s:.2f} s; {moving:,} leads hold a half-life rule's hits")
        for dt in (timedelta(minutes=5), timedelta(hours=1), timedelta(days=1)):
            print(f"  due {str(dt):>15} later: {len(partial.due_leads(store, model, now + dt)):,} leads")
        t = time.perf_counter()
        report = live.rescore_time(now + timedelta(minutes=5))
        tick_s = time.perf_counter() - t
        print(f"  tick 5 minutes later: {report.leads:,} leads re-scored in {tick_s:.2f} s ({len(report.changes):,} "
              f"changed); ratio baseline / tick = {full_s / max(tick_s, 1e-9):.1f}")
        full = score_leads(store, model, live.high_water).set_index("lead_id")["score"]
        stored = dict(store.query("SELECT lead_id, score FROM lead_scores"))
        wrong = [lead for lead, score in full.items() if abs(stored[lead] - score) > 1e-9]
        print(f"  after the tick, leads whose stored score differs from a full re-score: {len(wrong)}")
        store.close()
        if wrong:
            sys.exit(1)


if __name__ == "__main__":
    main()
