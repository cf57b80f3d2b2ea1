"""A simple player simulator: viewing actions → the Video Spec events a tracker sends, plus the truth.

Used by the property tests (the truth is a per-second count computed independently of the SQL) and
by the benchmark and demo data (many generated sessions). It emits what leadscore-video.js emits:
Playback Started + Content Started, a ``Video Content Playing`` heartbeat every ``heartbeat_s`` of
wall time while playing (the timer restarts at every event), Paused/Resumed (+ a heartbeat right
after Resumed), Seek Started/Completed, Buffer Started/Completed, Rate Changed, Completed at the end.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

# Actions: ("play", wall_seconds) ("pause", wall_seconds) ("seek", to_position) ("rate", rate)
# ("buffer", wall_seconds). Play continues at the current rate until the time is up or the end.
Action = tuple[str, float]


@dataclass
class SimSession:
    events: list[dict[str, Any]] = field(default_factory=list)
    intervals: list[tuple[float, float]] = field(default_factory=list)  # played [from, to) positions

    def counts(self, duration: float) -> list[int]:
        return per_second_counts(self.intervals, duration)


def cells(duration: float) -> int:
    """Number of one-second cells of a video: k counts when k + 0.5 < duration."""
    return max(1, math.ceil(duration - 0.5)) if duration > 0 else 0


def per_second_counts(intervals: Iterable[tuple[float, float]], duration: float) -> list[int]:
    """The plain per-second truth: a cell k is played once per interval that contains k + 0.5."""
    out = [0] * cells(duration)
    for a, b in intervals:
        for k in range(len(out)):
            if a <= k + 0.5 < b:
                out[k] += 1
    return out


def simulate(actions: Iterable[Action], *, duration: float, start: datetime, user_id: str,
             session_id: str, video_id: str, heartbeat_s: float = 10.0, start_position: float = 0.0,
             rate: float = 1.0, id_prefix: str | None = None) -> SimSession:
    """Play ``actions`` and return the Segment messages (track calls) and the played intervals."""
    sim = SimSession()
    prefix = id_prefix or f"{user_id}-{session_id}"
    now = 0.0          # wall seconds since start
    last_event = 0.0   # the heartbeat timer restarts at each event
    pos = min(max(start_position, 0.0), duration)
    playing = False
    ended = False
    seg_start = pos

    def emit(name: str, **props: Any) -> None:
        nonlocal now, last_event
        if sim.events and now <= last_event:  # keep client timestamps strictly increasing (1 ms)
            now = last_event + 0.001
        asset_key = "asset_id" if name.startswith("Video Content") else "content_asset_id"
        body = {"session_id": session_id, asset_key: video_id, "position": round(pos, 6),
                "total_length": duration, "playback_rate": rate, **props}
        sim.events.append({
            "type": "track", "event": name, "userId": user_id,
            "messageId": f"{prefix}-{len(sim.events)}",
            "timestamp": (start + timedelta(seconds=round(now, 6))).isoformat() + "Z",
            "properties": body,
        })
        last_event = now

    def close_segment() -> None:
        nonlocal seg_start
        if pos > seg_start:
            sim.intervals.append((round(seg_start, 6), round(pos, 6)))
        seg_start = pos

    def advance(wall: float) -> None:
        """Play for ``wall`` seconds, with heartbeats; stop at the end of the video."""
        nonlocal now, pos, playing, ended
        remaining = wall
        while remaining > 1e-9 and playing:
            step = min(remaining, heartbeat_s - (now - last_event))
            to_end = (duration - pos) / rate
            if to_end <= step:
                now += to_end
                pos = duration
                close_segment()
                emit("Video Content Completed")
                emit("Video Playback Completed")
                playing, ended = False, True
                return
            now += step
            pos = round(pos + step * rate, 6)
            remaining -= step
            if now - last_event >= heartbeat_s - 1e-9:
                emit("Video Content Playing")

    emit("Video Playback Started")
    emit("Video Content Started")
    playing = True
    seg_start = pos
    for kind, value in actions:
        if ended:
            break
        if kind == "play":
            if not playing:
                emit("Video Playback Resumed")
                playing = True
                seg_start = pos
                emit("Video Content Playing")
            advance(value)
        elif kind == "pause":
            if playing:
                close_segment()
                emit("Video Playback Paused")
                playing = False
            now += value
        elif kind == "buffer":
            if playing:
                close_segment()
                emit("Video Playback Buffer Started")
                now += value
                emit("Video Playback Buffer Completed")
                seg_start = pos
            else:
                now += value
        elif kind == "seek":
            target = min(max(float(value), 0.0), duration)
            if playing:
                close_segment()
            emit("Video Playback Seek Started", seek_position=round(target, 6))
            now += 0.05
            pos = target
            seg_start = pos
            emit("Video Playback Seek Completed")
            if pos >= duration:
                playing = False
        elif kind == "rate":
            if playing:
                close_segment()
            rate = float(value)
            emit("Video Playback Rate Changed")
            seg_start = pos
        else:
            raise ValueError(f"unknown action {kind!r}")
    if not ended:
        if playing:
            close_segment()
        emit("Video Playback Exited")
    return sim


def random_actions(rng: random.Random, duration: float, n: int) -> list[Action]:
    """A plausible random viewing: mostly play, some pauses, seeks (back and forward), rate changes."""
    out: list[Action] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.55:
            out.append(("play", round(rng.uniform(1, 40), 3)))
        elif r < 0.7:
            out.append(("pause", round(rng.uniform(0.5, 60), 3)))
        elif r < 0.88:
            out.append(("seek", round(rng.uniform(0, duration), 3)))
        elif r < 0.95:
            out.append(("buffer", round(rng.uniform(0.2, 5), 3)))
        else:
            out.append(("rate", rng.choice((0.5, 1.0, 1.25, 1.5, 2.0))))
    return out
