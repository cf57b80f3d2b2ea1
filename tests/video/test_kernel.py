"""Differential test: the compiled walk (leadscore.video.fast, DuckDB) and the set-based SQL
(video_heatmap_sql / video_views_sql) give identical heatmap runs and viewer facts, on random and
hostile input: play/seek/pause/buffer/rate events with positions that advance, jump, go negative or
past the end, missing positions and seek positions, bad rates, ties, gaps longer than a heartbeat,
duplicates under other messageIds, shuffled delivery, sessions without a start, events without a video
id, a session with two videos, several sessions and viewers, a catalog that knows some videos."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.store import open_store
from leadscore.store.dialect import quote_literal
from leadscore.video.facts import VIEW_COLUMNS, video_views_sql
from leadscore.video.fast import heat_and_views
from leadscore.video.reconstruct import CTA_EVENT, VIDEO_EVENTS, video_heatmap_sql
from tests.video.helpers import RECEIVED, ingest

T0 = datetime(2026, 11, 2, 9, 0, 0)
NAMES = list(VIDEO_EVENTS)
HEAT = ("lead_id", "video_id", "start_sec", "end_sec", "plays")

EVENT = st.fixed_dictionaries({
    "event": st.one_of(st.sampled_from(NAMES), st.sampled_from(["Video Content Playing", "Video Playback Started",
                                                                  "Video Playback Paused", "Video Playback Resumed",
                                                                  CTA_EVENT])),
    "dt": st.sampled_from([0, 0, 0.001, 0.5, 1, 3, 9.5, 10, 10.9, 11, 11.5, 30]),
    "pos": st.sampled_from(["advance", "advance", "advance", "fast", "same", "back", "jump", "none", "negative",
                            "past_end", "zero"]),
    "seek": st.one_of(st.none(), st.floats(-3, 130).map(lambda x: round(x, 2))),
    "rate": st.sampled_from([None, None, None, 1.0, 2.0, 0.5, 0, -1, 20.0]),
    "total": st.sampled_from([None, 60, 61.5, 95, 0]),
    "video": st.sampled_from(["own", "own", "own", "own", "none", "other"]),
    "dup": st.sampled_from([False, False, False, False, True]),
})
SESSION = st.fixed_dictionaries({
    "viewer": st.integers(0, 2),
    "video": st.sampled_from(["va", "vb", "vc"]),
    "start": st.sampled_from([True, True, True, False]),
    "offset": st.floats(0, 3000).map(lambda x: round(x, 3)),
    "events": st.lists(EVENT, max_size=14),
})


def session_messages(tag: str, k: int, s: dict, rng: random.Random) -> list[dict]:
    user = f"{tag}-u{s['viewer']}"
    sid = f"{tag}-s{k}"
    t = T0 + timedelta(seconds=s["offset"])
    pos = 0.0
    out: list[dict] = []

    def msg(name: str, when: datetime, props: dict) -> dict:
        body = {"session_id": sid, **{k: v for k, v in props.items() if v is not None}}
        return {"type": "track", "event": name, "userId": user, "messageId": f"{tag}-{uuid.uuid4().hex[:12]}",
                "timestamp": when.isoformat() + "Z", "properties": body}

    def video_key(name: str) -> str:
        return "asset_id" if name.startswith("Video Content") else "content_asset_id"

    if s["start"]:
        out.append(msg("Video Playback Started", t, {"content_asset_id": s["video"], "position": 0,
                                                     "total_length": 60}))
    for e in s["events"]:
        t = t + timedelta(seconds=e["dt"])
        rate = e["rate"] if e["rate"] is not None else 1.0
        step = {"advance": e["dt"] * (rate if rate > 0 else 1), "fast": e["dt"] * 3 + 5, "same": 0,
                "back": -rng.uniform(0.5, 4), "jump": rng.uniform(10, 50)}
        if e["pos"] in step:
            pos = round(pos + step[e["pos"]], 3)
        elif e["pos"] == "negative":
            pos = -round(rng.uniform(0.1, 3), 3)
        elif e["pos"] == "past_end":
            pos = round(rng.uniform(61, 120), 3)
        elif e["pos"] == "zero":
            pos = 0.0
        video = {"own": s["video"], "none": None, "other": "vz"}[e["video"]]
        props = {"position": None if e["pos"] == "none" else pos, "seek_position": e["seek"],
                 "total_length": e["total"], "playback_rate": e["rate"], video_key(e["event"]): video}
        if e["event"] == CTA_EVENT:
            props = {"content_asset_id": video, "position": props["position"], "cta_type": "button"}
        m = msg(e["event"], t, props)
        out.append(m)
        if e["dup"]:
            out.append(dict(m, messageId=m["messageId"] + "-again"))
        if e["pos"] == "negative":
            pos = 0.0
    return out


@pytest.fixture(scope="module")
def duck(tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("kernel") / "leadscore.duckdb"))
    store.execute("INSERT INTO video_catalog (video_id, title, duration, category, stage) VALUES "
                  "('va', 'A', 60, 'demo', 'bottom'), ('vc', 'C', 95, NULL, NULL)")
    yield store
    store.close()


def sql_results(store, events: str, as_of: str):
    d = store.dialect
    runs = store.query(f"SELECT {', '.join(HEAT)} FROM ({video_heatmap_sql(d, events, as_of)}) h")
    views = store.query(f"SELECT {', '.join(VIEW_COLUMNS)} FROM ({video_views_sql(d, events, as_of)}) v")
    return sorted(runs), sorted(views, key=repr)


def kernel_results(store, events: str, as_of: str, threads: int = 1):
    with store.transaction() as conn:
        hv = heat_and_views(conn, events, as_of, threads=threads)
    runs = [tuple(r[c] for c in HEAT) for r in hv.runs.to_pylist()]
    views = [tuple(r[c] for c in VIEW_COLUMNS) for r in hv.views.to_pylist()]
    return sorted(runs), sorted(views, key=repr)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(sessions=st.lists(SESSION, min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1),
       cut=st.sampled_from([None, 20, 200, 1500]))
def test_the_kernel_and_the_sql_agree(duck, sessions, seed, cut):
    rng = random.Random(seed)
    tag = f"k{uuid.uuid4().hex[:8]}"
    messages = [m for k, s in enumerate(sessions) for m in session_messages(tag, k, s, rng)]
    rng.shuffle(messages)
    half = rng.randint(0, len(messages))
    ingest(duck, messages[:half])          # two deliveries, in random order
    ingest(duck, messages[half:])
    events = f"(SELECT * FROM resolved_events WHERE starts_with(lead_id, {quote_literal(tag + '-')}))"
    as_of = duck.dialect.ts_literal((T0 + timedelta(seconds=cut) if cut else RECEIVED + timedelta(days=30))
                                    .isoformat(sep=" "))
    assert kernel_results(duck, events, as_of) == sql_results(duck, events, as_of)


def test_many_viewers_on_two_threads_agree_with_the_sql(duck):
    """Enough rows for the threaded path (> 100,000 events), sessions from the generator above."""
    rng = random.Random(11)
    tag = f"m{uuid.uuid4().hex[:8]}"
    names = NAMES + ["Video Content Playing"] * 12
    messages = []
    for k in range(9000):
        s = {"viewer": rng.randrange(3000), "video": rng.choice(["va", "vb", "vc"]), "start": rng.random() < 0.95,
             "offset": round(rng.uniform(0, 7200), 3),
             "events": [{"event": rng.choice(names), "dt": rng.choice([0, 0.5, 3, 10, 10, 10, 12]),
                         "pos": rng.choice(["advance"] * 8 + ["back", "jump", "none", "past_end"]),
                         "seek": rng.choice([None, round(rng.uniform(0, 90), 1)]),
                         "rate": rng.choice([None, None, 1.5, 0]), "total": rng.choice([None, 60, 95]),
                         "video": rng.choice(["own"] * 9 + ["none"]), "dup": rng.random() < 0.05}
                        for _ in range(rng.randint(1, 20))]}
        messages += session_messages(tag, k, s, rng)
    ingest(duck, messages)
    assert len(messages) > 100_000
    events = f"(SELECT * FROM resolved_events WHERE starts_with(lead_id, {quote_literal(tag + '-')}))"
    as_of = duck.dialect.ts_literal((RECEIVED + timedelta(days=30)).isoformat(sep=" "))
    sql = sql_results(duck, events, as_of)
    assert kernel_results(duck, events, as_of, threads=2) == sql
    assert len(sql[0]) > 5000 and len(sql[1]) > 5000
