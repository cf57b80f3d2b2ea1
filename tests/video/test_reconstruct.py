"""Reconstruction of played intervals, heatmaps and facts from hand-written event sequences.

Every test runs on DuckDB and on PostgreSQL (the ``store`` fixture)."""
from __future__ import annotations

from datetime import datetime, timedelta

from leadscore.video import read
from tests.video.helpers import AS_OF, T0, Viewer, counts, facts, ingest, runs


def the_issue_scenario(v: Viewer) -> None:
    """Play 0–20, seek back to 5, play to 15, seek to 40, play to the end (60 s video)."""
    v.ev("Video Playback Started", 0, position=0)
    v.ev("Video Content Started", 0.001, position=0)
    v.ev("Video Content Playing", 10, position=10)
    v.ev("Video Content Playing", 20, position=20)
    v.ev("Video Playback Seek Started", 20.01, position=20, seek_position=5)
    v.ev("Video Playback Seek Completed", 20.2, position=5)
    v.ev("Video Content Playing", 30.2, position=15)
    v.ev("Video Playback Seek Started", 30.21, position=15, seek_position=40)
    v.ev("Video Playback Seek Completed", 30.4, position=40)
    v.ev("Video Content Playing", 40.4, position=50)
    v.ev("Video Content Completed", 50.4, position=60)
    v.ev("Video Playback Completed", 50.401, position=60)


def test_seeks_back_and_forward_make_the_expected_heatmap(store):
    v = Viewer()
    the_issue_scenario(v)
    ingest(store, v.messages)
    assert runs(counts(store, "v1", "u1")) == [(0, 5, 1), (5, 15, 2), (15, 20, 1), (20, 40, 0), (40, 60, 1)]
    f = facts(store, "u1", "v1")
    # 0–20 (20 s) + 5–15 (10 s) + 40–60 (20 s): 40 distinct seconds, 50 watched, 10 replayed
    assert (f["unique_seconds"], f["watch_seconds"], f["replayed_seconds"]) == (40, 50, 10)
    assert f["percent_watched"] == 40 * 100 / 60
    assert (f["completed_25"], f["completed_50"], f["completed_75"], f["completed_80"], f["completed_100"]) == (
        True, True, False, False, False)
    assert f["furthest_position"] == 60
    assert f["sessions"] == 1
    assert f["duration"] == 60
    assert f["first_ts"] == T0
    assert f["last_ts"] == T0 + timedelta(seconds=50.4)   # Content Completed ends the last played interval
    assert f["title"] is None and f["stage"] is None
    assert f["cta_clicks"] == 0


def test_pause_and_buffering_do_not_count_and_rate_is_respected(store):
    v = Viewer()
    v.ev("Video Playback Started", 0, position=0, playback_rate=2)
    v.ev("Video Content Playing", 5, position=10, playback_rate=2)      # 5 s at 2x = 10 s of video
    v.ev("Video Playback Paused", 6, position=12, playback_rate=2)
    v.ev("Video Playback Resumed", 300, position=12, playback_rate=2)   # a long pause is not a gap
    v.ev("Video Playback Buffer Started", 302, position=16, playback_rate=2)
    v.ev("Video Playback Buffer Completed", 330, position=16, playback_rate=2)
    v.ev("Video Playback Rate Changed", 332, position=20, playback_rate=1)
    v.ev("Video Playback Paused", 340, position=28, playback_rate=1)
    v.ev("Video Playback Exited", 400, position=28)
    ingest(store, v.messages)
    assert runs(counts(store, "v1", "u1")) == [(0, 28, 1), (28, 60, 0)]
    assert read.reject_counts(store, AS_OF) == {}


def test_a_gap_up_to_the_heartbeat_interval_is_filled_a_longer_one_is_not(store):
    v = Viewer()
    v.ev("Video Playback Started", 0, position=0)
    v.ev("Video Content Playing", 10, position=10)
    # the heartbeat at 20 s was lost: 20 s of silence is longer than the interval → 10–30 not credited
    v.ev("Video Content Playing", 30, position=30)
    v.ev("Video Content Playing", 40.5, position=40.5)   # 10.5 s: within the interval plus jitter
    v.ev("Video Playback Paused", 45, position=45)
    ingest(store, v.messages)
    assert runs(counts(store, "v1", "u1")) == [(0, 10, 1), (10, 30, 0), (30, 45, 1), (45, 60, 0)]
    rejects = read.rejects(store, AS_OF)
    assert [(r["reason"], r["action"], r["ts"]) for r in rejects] == [
        ("heartbeat_gap", "not_credited", T0 + timedelta(seconds=10))]


def test_out_of_order_late_and_duplicated_delivery_change_nothing(store):
    v = Viewer()
    the_issue_scenario(v)
    late = list(reversed(v.messages))
    # a client resends two events under new messageIds, and one message twice under the same id
    again = [dict(late[3], messageId="resent-1"), dict(late[5], messageId="resent-2"), late[0]]
    ingest(store, late[:6])
    ingest(store, again + late[6:])
    assert runs(counts(store, "v1", "u1")) == [(0, 5, 1), (5, 15, 2), (15, 20, 1), (20, 40, 0), (40, 60, 1)]
    assert read.reject_counts(store, AS_OF) == {"duplicate": 2}


def test_several_sessions_add_up_and_as_of_cuts_them(store):
    a = Viewer(session="s1")
    a.ev("Video Playback Started", 0, position=0)
    a.ev("Video Content Playing", 10, position=10)
    a.ev("Video Playback Exited", 12, position=12)
    b = Viewer(session="s2", t0=T0 + timedelta(days=1))
    b.ev("Video Playback Started", 0, position=6)
    b.ev("Video Content Playing", 10, position=16)
    b.ev("Video Playback Paused", 14, position=20)
    ingest(store, a.messages + b.messages)
    assert runs(counts(store, "v1", "u1")) == [(0, 6, 1), (6, 12, 2), (12, 20, 1), (20, 60, 0)]
    f = facts(store, "u1", "v1")
    assert (f["sessions"], f["unique_seconds"], f["watch_seconds"], f["replayed_seconds"]) == (2, 20, 26, 6)
    assert f["first_ts"] == T0 and f["last_ts"] == T0 + timedelta(days=1, seconds=14)
    # as of the end of the first day only the first session (and its events) exist
    first_day = T0 + timedelta(hours=12)
    assert runs(counts(store, "v1", "u1", as_of=first_day)) == [(0, 12, 1), (12, 60, 0)]
    f1 = facts(store, "u1", "v1", as_of=first_day)
    assert (f1["sessions"], f1["unique_seconds"], f1["last_ts"]) == (1, 12, T0 + timedelta(seconds=12))
    # as of mid-first-session the open segment ends at the last event seen
    mid = T0 + timedelta(seconds=11)
    assert facts(store, "u1", "v1", as_of=mid)["unique_seconds"] == 10


def test_impossible_input_is_clamped_or_dropped_and_counted(store):
    v = Viewer(total=30)
    v.ev("Video Playback Started", 0, position=-3)                      # clamped to 0
    v.ev("Video Content Playing", 10, position=10, playback_rate=0)     # rate 0: ignored
    v.ev("Video Content Playing", 20, position=20)
    v.ev("Video Content Playing", 30, position=45)                      # past the end: clamped to 30
    v.ev("Video Content Playing", 31, position=None)                    # no position: dropped
    stray = Viewer(session="ghost")
    stray.ev("Video Content Playing", 5, position=5)                    # a session that never started
    stray.ev("Video Content Playing", 15, position=15)
    nosess = Viewer(session=None)
    nosess.ev("Video Playback Started", 0, position=0)
    novideo = Viewer(session="s9", video=None)
    novideo.ev("Video Playback Started", 0, position=0)
    ingest(store, v.messages + stray.messages + nosess.messages + novideo.messages)
    assert runs(counts(store, "v1", "u1")) == [(0, 30, 1)]
    assert read.reject_counts(store, AS_OF) == {
        "negative_position": 1, "bad_rate": 1, "position_past_end": 1, "missing_position": 1,
        "unknown_session": 3, "missing_video": 1}
    f = facts(store, "u1", "v1")
    assert (f["unique_seconds"], f["percent_watched"], f["completed_100"], f["furthest_position"]) == (30, 100.0, True, 30)


def test_a_jump_without_seek_events_is_not_credited(store):
    v = Viewer()
    v.ev("Video Playback Started", 0, position=0)
    v.ev("Video Content Playing", 10, position=10)
    v.ev("Video Content Playing", 20, position=45)    # 35 s of video in 10 s at 1x: a hidden seek
    v.ev("Video Content Playing", 30, position=55)
    ingest(store, v.messages)
    assert runs(counts(store, "v1", "u1")) == [(0, 10, 1), (10, 45, 0), (45, 55, 1), (55, 60, 0)]
    assert read.reject_counts(store, AS_OF) == {"position_jump": 1}


def test_catalog_duration_title_stage_and_in_video_cta(store):
    store.execute("INSERT INTO video_catalog (video_id, title, duration, category, stage, tags) VALUES "
                  "('v1', 'Product demo', 40, 'demo', 'bottom', 'pricing,demo')")
    v = Viewer(total=41)   # the player reports a slightly different length: the catalog wins
    v.ev("Video Playback Started", 0, position=0)
    v.ev("Video Content Playing", 10, position=10)
    v.ev("Video Content Playing", 20, position=20)
    v.ev("Video Content Playing", 30, position=30)
    v.ev("Video Playback Paused", 32, position=32)
    v.ev("CTA Clicked", 33, position=32, cta_type="meeting")
    other = Viewer(video="v2")
    other.ev("CTA Clicked", 1, position=3, cta_type="button")
    ingest(store, v.messages + other.messages)
    f = facts(store, "u1", "v1")
    assert (f["title"], f["category"], f["stage"], f["duration"]) == ("Product demo", "demo", "bottom", 40)
    assert (f["unique_seconds"], f["percent_watched"]) == (32, 80.0)
    assert (f["completed_75"], f["completed_80"], f["completed_100"]) == (True, True, False)
    assert f["cta_clicks"] == 1
    # a CTA for a video never played makes no fact row of its own
    assert [r["video_id"] for r in read.views(store, AS_OF, lead_id="u1")] == ["v1"]


def test_anonymous_viewing_belongs_to_the_lead_after_identify(store):
    v = Viewer(user=None)
    v.ev("Video Playback Started", 0, position=0)
    v.ev("Video Content Playing", 10, position=10)
    for m in v.messages:
        m.pop("userId")
        m["anonymousId"] = "anon-7"
    ident = {"type": "identify", "userId": "lead-7", "anonymousId": "anon-7", "messageId": "id-7",
             "timestamp": (T0 + timedelta(seconds=60)).isoformat() + "Z", "traits": {"email": "x@y.com"}}
    ingest(store, v.messages + [ident])
    assert runs(counts(store, "v1", "lead-7")) == [(0, 10, 1), (10, 60, 0)]
    assert read.views(store, datetime(2026, 11, 20))[0]["lead_id"] == "lead-7"
