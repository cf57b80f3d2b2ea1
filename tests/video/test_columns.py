"""The typed video columns: filled at ingest, backfilled by migration 0011 for old rows, derived from the
JSON for logs without them (Parquet, Spark), all three by the same rule."""
from __future__ import annotations

from leadscore.events.normalize import VIDEO_COLUMNS, video_values, video_values_from_json
from leadscore.store import migrations
from leadscore.video.reconstruct import video_columns_sql
from tests.video.helpers import ingest

MESSAGES = [
    {"type": "track", "event": "Video Content Playing", "userId": "u1", "messageId": "c1",
     "timestamp": "2026-11-02T09:00:00Z",
     "properties": {"session_id": "s1", "asset_id": "v1", "position": 12.5, "total_length": 60, "playback_rate": 1.5}},
    {"type": "track", "event": "Video Playback Seek Started", "userId": "u1", "messageId": "c2",
     "timestamp": "2026-11-02T09:00:01Z",
     "properties": {"session_id": 7, "content_asset_id": "v2", "asset_id": "other", "position": " 3 ",
                    "seek_position": "1e1", "total_length": "n/a", "playback_rate": True}},
    {"type": "track", "event": "Video Playback Paused", "userId": "u1", "messageId": "c3",
     "timestamp": "2026-11-02T09:00:02Z",
     "properties": {"session_id": None, "content_asset_id": None, "asset_id": "v3", "position": -2}},
    {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "c4", "timestamp": "2026-11-02T09:00:03Z",
     "properties": {"plan": "pro"}},
    {"type": "page", "name": "Pricing", "userId": "u1", "messageId": "c5", "timestamp": "2026-11-02T09:00:04Z",
     "properties": {"position": 4, "session_id": "page-session"}},
]
EXPECTED = {
    "c1": ("s1", "v1", 12.5, None, 60.0, 1.5),
    "c2": ("7", "v2", 3.0, 10.0, None, None),
    "c3": (None, "v3", -2.0, None, None, None),
    "c4": (None,) * 6,
    "c5": (None,) * 6,     # only track events carry them
}
COLS = ", ".join(VIDEO_COLUMNS)


def _typed(store) -> dict:
    return {r[0]: tuple(r[1:]) for r in store.query(f"SELECT message_id, {COLS} FROM events ORDER BY message_id")}


def test_ingest_fills_the_typed_columns(store):
    ingest(store, MESSAGES)
    assert _typed(store) == EXPECTED
    # the demo loader's rows, whose properties are JSON text, give the same
    import json
    for m in MESSAGES:
        assert video_values_from_json(m["type"], json.dumps(m["properties"])) == video_values(m["type"], m["properties"])


def test_the_migration_backfills_old_rows_the_same_way(store):
    ingest(store, MESSAGES)
    store.execute(f"UPDATE events SET {', '.join(f'{c} = NULL' for c in VIDEO_COLUMNS)}")
    assert set(_typed(store).values()) == {(None,) * 6}
    (sql,) = [text for number, _, text in migrations.migration_files() if number == 11]
    statements = migrations.split_statements(migrations.render(sql, store.dialect.name))
    (update,) = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    store.execute(update)
    assert _typed(store) == EXPECTED


def test_the_sql_derivation_from_json_gives_the_same(store):
    ingest(store, MESSAGES)
    derived = ", ".join(expr for _, expr in video_columns_sql(store.dialect))
    rows = store.query(f"SELECT message_id, {derived} FROM events ORDER BY message_id")
    assert {r[0]: tuple(r[1:]) for r in rows} == EXPECTED
