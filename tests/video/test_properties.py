"""Property tests: random viewing (play, pause, seek, buffer, rate) through the simulator's events gives
the simulator's own per-second truth, however the events are delivered. DuckDB and PostgreSQL."""
from __future__ import annotations

import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.video.simulate import per_second_counts, simulate
from tests.video.helpers import T0, counts, facts, ingest

ACTION = st.one_of(
    st.tuples(st.just("play"), st.floats(0.5, 35).map(lambda x: round(x, 3))),
    st.tuples(st.just("pause"), st.floats(0.1, 90).map(lambda x: round(x, 3))),
    st.tuples(st.just("seek"), st.floats(0, 1).map(lambda x: round(x, 4))),   # fraction of the duration
    st.tuples(st.just("buffer"), st.floats(0.1, 8).map(lambda x: round(x, 3))),
    st.tuples(st.just("rate"), st.sampled_from([0.5, 1.0, 1.25, 2.0])),
)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def scaled(actions, duration):
    return [(k, round(v * duration, 3)) if k == "seek" else (k, v) for k, v in actions]


def test_the_simulator_truth_is_the_plain_count():
    sim = simulate([("play", 20), ("seek", 5), ("play", 10), ("seek", 40), ("play", 30)], duration=60,
                   start=T0, user_id="u", session_id="s", video_id="v")
    assert sim.intervals == [(0, 20), (5, 15), (40, 60)]
    assert sim.counts(60) == [1] * 5 + [2] * 10 + [1] * 5 + [0] * 20 + [1] * 20
    beats = [e["properties"]["position"] for e in sim.events if e["event"] == "Video Content Playing"]
    assert beats == [10, 20, 15, 50]   # every 10 s of wall time, the timer restarting at each seek
    assert sim.events[-1]["event"] == "Video Playback Completed"
    assert per_second_counts([(0.6, 1.6)], 3) == [0, 1, 0]   # only cells whose middle is covered


@SETTINGS
@given(duration=st.sampled_from([30.0, 60.0, 61.5, 95.0]), actions=st.lists(ACTION, max_size=12),
       start_rate=st.sampled_from([1.0, 1.5]))
def test_random_viewing_gives_the_simulated_heatmap_and_facts(store, duration, actions, start_rate):
    user = f"p-{uuid.uuid4().hex[:10]}"
    sim = simulate(scaled(actions, duration), duration=duration, start=T0, user_id=user, session_id="s1",
                   video_id="vid", rate=start_rate)
    ingest(store, sim.events)
    truth = sim.counts(duration)
    got = counts(store, "vid", user, duration=duration)
    assert (got or [0] * len(truth)) == truth
    f = facts(store, user, "vid")
    assert f["unique_seconds"] == sum(1 for c in truth if c)
    assert f["watch_seconds"] == sum(truth)
    assert f["replayed_seconds"] == sum(1 for c in truth if c >= 2)
    assert f["percent_watched"] == min(100.0, f["unique_seconds"] * 100 / len(truth))
    assert f["completed_100"] == all(truth)
    assert f["furthest_position"] == max((b for _, b in sim.intervals), default=0)


@SETTINGS
@given(duration=st.sampled_from([60.0, 95.0]), actions=st.lists(ACTION, min_size=1, max_size=10),
       seed=st.integers(0, 2**32 - 1), dup_share=st.floats(0, 0.5))
def test_shuffled_split_and_duplicated_delivery_give_the_same_result(store, duration, actions, seed, dup_share):
    rng = random.Random(seed)
    user = f"q-{uuid.uuid4().hex[:10]}"
    sim = simulate(scaled(actions, duration), duration=duration, start=T0, user_id=user, session_id="s1",
                   video_id="vid")
    messages = list(sim.events)
    resent = [dict(m, messageId=m["messageId"] + "-again") for m in messages if rng.random() < dup_share]
    same_id = [m for m in messages if rng.random() < dup_share]
    delivery = messages + resent + same_id
    rng.shuffle(delivery)
    cut = rng.randint(0, len(delivery))
    ingest(store, delivery[:cut])           # two batches, in random order, late ones included
    ingest(store, delivery[cut:])
    truth = sim.counts(duration)
    assert (counts(store, "vid", user, duration=duration) or [0] * len(truth)) == truth
