"""The embedded store checkpoints its WAL rarely (store.duckdb.CHECKPOINT_THRESHOLD), and what a process
committed before it died is there when the store is opened again (the WAL is replayed)."""
import subprocess
import sys
import textwrap

from leadscore.store import open_store

EVENTS = 100_000   # ~20 MB of WAL: more than DuckDB's default threshold (16 MB), far less than ours

WRITER = textwrap.dedent("""
    import os, sys
    from datetime import datetime, timedelta
    from leadscore.events import normalize_batch
    from leadscore.store import open_store
    store = open_store(sys.argv[1])
    t0 = datetime(2026, 11, 24, 12)
    for k in range(10):
        msgs = [{"type": "page", "userId": f"u{i % 5000}", "messageId": f"m{k}-{i}",
                 "timestamp": (t0 + timedelta(seconds=k)).isoformat() + "Z",
                 "properties": {"path": "/pricing", "time_on_page": 40, "title": "Pricing plans"}}
                for i in range(PER_BATCH)]
        store.ingest(normalize_batch(msgs, t0 + timedelta(seconds=k)))
    print(os.path.getsize(sys.argv[1] + ".wal"), flush=True)
    os._exit(0)   # dies without closing the store: no checkpoint at exit
""").replace("PER_BATCH", str(EVENTS // 10))


def test_commits_stay_in_the_wal_until_the_threshold_and_survive_an_unclean_exit(tmp_path):
    path = str(tmp_path / "store.duckdb")
    out = subprocess.run([sys.executable, "-c", WRITER, path], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    wal = int(out.stdout.strip())
    # At DuckDB's default threshold the store would have checkpointed (the WAL emptied) past 16 MB.
    assert 16 * 2**20 < wal < 256 * 10**6
    store = open_store(path)
    try:
        assert store.query("SELECT count(*), count(DISTINCT user_id) FROM events") == [(EVENTS, 5000)]
        assert store.conn.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0] == "244.1 MiB"   # 256 MB
    finally:
        store.close()
