"""The same video SQL on Spark SQL gives exactly what DuckDB gives (heatmaps, facts, rejects)."""
from __future__ import annotations

import random
import shutil
from datetime import timedelta

import pytest

from leadscore.store import open_store
from leadscore.store.dialect import DUCKDB, SPARK
from leadscore.video.facts import video_views_sql
from leadscore.video.reconstruct import (video_columns_sql, video_heatmap_sql, video_intervals_sql,
                                         video_rejects_sql)
from leadscore.video.simulate import random_actions, simulate
from tests.video.helpers import AS_OF, T0, Viewer, ingest

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    pyspark = pytest.importorskip("pyspark")
    if not shutil.which("java"):
        pytest.skip("no Java runtime for Spark")
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[1]").appName("leadscore-video-test")
               .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "2").config("spark.driver.memory", "1g").getOrCreate())
    yield session
    session.stop()
    del pyspark


def _norm(rows):
    out = []
    for r in rows:
        out.append(tuple(round(v, 9) if isinstance(v, float) else v for v in r))
    return sorted(out, key=lambda t: tuple((v is None, str(v)) for v in t))


def test_spark_sql_matches_duckdb(spark, duckdb_url):
    store = open_store(duckdb_url)
    rng = random.Random(3)
    messages = []
    for i in range(12):
        dur = rng.choice([30.0, 60.0, 95.5])
        sim = simulate(random_actions(rng, dur, rng.randint(1, 8)), duration=dur, start=T0 + timedelta(hours=i),
                       user_id=f"u{i % 5}", session_id=f"s{i}", video_id=f"v{i % 3}", rate=rng.choice([1.0, 1.5]))
        messages += sim.events
    bad = Viewer(user="u9", session="sx", total=20)
    bad.ev("Video Playback Started", 0, position=-2)
    bad.ev("Video Content Playing", 10, position=35, playback_rate=0)
    bad.ev("Video Content Playing", 40, position=12)
    bad.ev("CTA Clicked", 41, position=12, cta_type="form")
    ghost = Viewer(user="u9", session="ghost")
    ghost.ev("Video Content Playing", 3, position=3)
    dup = dict(messages[3], messageId="again-1")
    ingest(store, messages + bad.messages + ghost.messages + [dup])
    store.execute("INSERT INTO video_catalog (video_id, title, duration, category, stage, tags) VALUES "
                  "('v1', 'One', 60, 'demo', 'bottom', 'x')")
    events = store.query("SELECT message_id, type, event, ts, CAST(properties AS VARCHAR), lead_id FROM resolved_events")
    catalog = store.query("SELECT video_id, title, duration, category, stage, tags FROM video_catalog")
    spark.createDataFrame(events, "message_id string, type string, event string, ts timestamp, properties string, "
                                  "lead_id string").createOrReplaceTempView("ev_log")
    # the log as Parquet holds it (no typed video columns): Spark derives them from the JSON, as the
    # Parquet/Spark sources do; they must equal what the DuckDB store's ingest wrote
    derived = ", ".join(f"{expr} AS {col}" for col, expr in video_columns_sql(SPARK))
    spark.sql(f"SELECT *, {derived} FROM ev_log").createOrReplaceTempView("ev")
    spark.createDataFrame(catalog, "video_id string, title string, duration double, category string, stage string, "
                                   "tags string").createOrReplaceTempView("video_catalog")
    as_of = f"TIMESTAMP '{AS_OF.isoformat(sep=' ')}'"
    checked = 0
    for build in (video_intervals_sql, video_heatmap_sql, video_views_sql, video_rejects_sql):
        duck = _norm(store.query(build(DUCKDB, "resolved_events", as_of)))
        spk = _norm(tuple(r) for r in spark.sql(build(SPARK, "ev", as_of)).collect())
        assert spk == duck, build.__name__
        assert duck, build.__name__
        checked += len(duck)
    assert checked > 50
    store.close()
