"""The validation process: large request bodies are parsed and validated apart from the ingestion process.

Why. Under /v1/batch the ingestion process (service/frontend.py) spent ~75 % of its time parsing
and validating bodies (JSON, the per-message checks, normalisation) and pickling their events for the
store's process; one GIL then capped it at one core, ~19,000 events/s on the 2-core benchmark
machine, while the store's process had time to spare (bench/RESULTS.md). Bodies of at least
``Settings.validator_bytes`` are therefore sent to this child of the ingestion process, which returns
the outcome: the JSON error, or the body's ``writeKey`` and either the validation error or the events,
already pickled as the store's process reads them. The ingestion process keeps HTTP, keys, the log
append and the acknowledgement, so small requests (/v1/track) never queue behind a large body's
parsing. Nothing changes for the client: the same checks in the same order, the same errors.

If the validation process dies, the requests it held get 503 + Retry-After (they were not logged:
the SDKs resend them) and the ingestion process starts another; until it is up, bodies are validated
in a thread as without it. It dies with the ingestion process (``PR_SET_PDEATHSIG``, and its socket
reaching EOF).

Run as ``python -m leadscore.service.validator CONTROL_FD PARENT_PID`` by ``Validator``.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any

from leadscore.service.frontend import Channel, _event_codec, child_handshake, freeze_heap

log = logging.getLogger("leadscore.service.validator")


class PickledEvents:
    """A request's events as the validation process returned them: pickled rows (what the store's
    process unpickles), and how many. ``len()`` is the number of events, as for a list of them."""

    __slots__ = ("data", "count")

    def __init__(self, data: bytes, count: int):
        self.data, self.count = data, count

    def __len__(self) -> int:
        return self.count


def check_body(kind: str, received_at: datetime, body: bytes, settings) -> tuple:
    """What ``ingest_api.handle`` does to a body between reading it and logging it, with the outcome
    as plain values: ("json", None, status, code, message, errors) when it is not acceptable JSON,
    ("invalid", body_key, status, code, message, errors) when a message is refused, else
    ("ok", body_key, number of events, pickled rows). ``body_key``: the body's ``writeKey`` as sent."""
    from leadscore.service.errors import ApiError
    from leadscore.service.ingest_api import body_depth, parse_json, prepare

    try:
        payload = parse_json(body)
    except ApiError as exc:
        return ("json", None, exc.status, exc.code, exc.message, exc.errors)
    body_key = payload.get("writeKey") if isinstance(payload, dict) else None
    check_strings = b"\\u" in body
    depth = None if check_strings else body_depth(body)
    try:
        events = prepare(payload, kind, received_at, settings, len(body), check_strings, depth)
    except ApiError as exc:
        return ("invalid", body_key, exc.status, exc.code, exc.message, exc.errors)
    encode, _ = _event_codec()
    return ("ok", body_key, len(events), pickle.dumps([encode(ev) for ev in events], protocol=pickle.HIGHEST_PROTOCOL))


def main(argv: list[str] | None = None) -> int:
    control_fd, parent = (int(a) for a in (argv or sys.argv[1:])[:2])
    started = child_handshake(control_fd, parent)
    if started is None:
        return 1
    channel, settings = started
    import leadscore.service.ingest_api  # noqa: F401 - imported before the heap is frozen
    freeze_heap()
    channel.send(("ready",))   # its ~0.7 s of imports done: they do not compete with serving
    while True:
        message = channel.recv()
        if message is None:
            return 0   # the ingestion process is gone, or stopped us
        _, request_id, kind, received_at, body = message
        try:
            outcome = check_body(kind, datetime.fromisoformat(received_at), body, settings)
        except Exception as exc:  # noqa: BLE001 - reported to the ingestion process, which answers 500
            log.exception("validating a request body failed")
            outcome = ("crash", None, 500, "internal_error", f"the request could not be validated: {exc!r}", None)
        channel.send(("done", request_id, outcome))


class ValidatorUnavailable(RuntimeError):
    """The validation process died with the request (or is being restarted)."""


class Validator:
    """The ingestion process's handle on its validation process: ``await check(...)`` → the outcome
    of ``check_body``. Started and stopped from the event loop's thread (the child's parent-death
    signal is bound to the thread that starts it)."""

    def __init__(self, settings, log_level: str = "warning"):
        self.settings = settings
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._channel: Channel | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: asyncio.Future | None = None
        self._stopping = False

    @property
    def ready(self) -> bool:
        return self._channel is not None

    async def start(self, loop: asyncio.AbstractEventLoop, timeout: float = 60.0) -> None:
        """Start it and wait until it is ready (its imports would otherwise compete with the first
        requests for the CPU); bodies are validated in a thread meanwhile, or if it never is."""
        self._loop = loop
        self._started = loop.create_future()
        self._spawn()
        try:
            await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except asyncio.TimeoutError:
            log.error("the validation process was not ready within %.0f s; validating in threads meanwhile", timeout)

    def _spawn(self) -> None:
        if self._stopping:
            return
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-P", "-m", "leadscore.service.validator", str(theirs.fileno()), str(os.getpid())]
        self.proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),))
        theirs.close()
        channel = Channel(ours)
        channel.send(("hello", self.settings))
        threading.Thread(target=self._read, args=(channel, self.proc), name="leadscore-validator-reader",
                         daemon=True).start()

    def _ready(self, channel: Channel) -> None:
        self._channel = channel
        if not self._started.done():
            self._started.set_result(None)

    async def check(self, kind: str, received_at: datetime, body: bytes) -> tuple:
        channel = self._channel
        if channel is None:
            raise ValidatorUnavailable("the validation process is starting")
        request_id = next(self._ids)
        future = self._loop.create_future()
        with self._lock:
            self._waiting[request_id] = future
        try:
            channel.send(("check", request_id, kind, received_at.isoformat(), body))
        except OSError as exc:
            with self._lock:
                self._waiting.pop(request_id, None)
            raise ValidatorUnavailable(f"the validation process is gone: {exc}") from None
        return await future

    def _read(self, channel: Channel, proc: subprocess.Popen) -> None:
        loop = self._loop
        while True:
            try:
                message = channel.recv()
            except (OSError, pickle.UnpicklingError, EOFError):
                message = None
            if message is None:
                break
            if message[0] == "ready":
                loop.call_soon_threadsafe(self._ready, channel)
                continue
            _, request_id, outcome = message
            with self._lock:
                future = self._waiting.pop(request_id, None)
            if future is not None:
                loop.call_soon_threadsafe(_settle, future, outcome, None)
        # it exited: what it held fails (not logged, so the client's retry is safe); start another
        proc.wait()
        channel.close()
        with self._lock:
            if self._channel is channel:
                self._channel = None
            lost, self._waiting = self._waiting, {}
        error = ValidatorUnavailable(f"the validation process exited with {proc.returncode}")
        for future in lost.values():
            loop.call_soon_threadsafe(_settle, future, None, error)
        if not self._stopping:
            log.error("the validation process exited with %s; starting another", proc.returncode)
            self.restarts += 1
            loop.call_soon_threadsafe(loop.call_later, min(0.1 * self.restarts, 5.0), self._spawn)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        channel, proc = self._channel, self.proc
        if channel is not None:
            try:
                channel.sock.shutdown(socket.SHUT_WR)   # EOF: it finishes what it was given, then exits
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _settle(future: asyncio.Future, outcome: Any, error: BaseException | None) -> None:
    if not future.done():
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)


if __name__ == "__main__":
    sys.exit(main())
