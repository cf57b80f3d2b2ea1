"""Group commit: one writer thread commits many pending requests in one transaction, then acknowledges each.

A commit per request is what keeps a naive service at ~200 requests/s (bench/RESULTS.md,
PERFORMANCE.md); here requests queue up while the previous transaction commits, and the next
transaction takes all of them (up to ``max_group_events``). Nothing is acknowledged before the
transaction holding it has committed. Requests are validated before they are queued, so one bad
request cannot fail a group; should an unexpected error still fail a group, each request of it is
retried alone so only the culprit fails.

After each commit the writer hands the ``IngestResult`` to a second thread that calls the
``after_ingest`` hooks (live scoring), so a slow hook never delays acknowledgements. When hooks fall
behind, the results waiting for them are merged into one (ids concatenated, leads united).
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

from leadscore.events import Event
from leadscore.store import IngestResult, Store, StoreUnavailable

log = logging.getLogger("leadscore.service.writer")

Hook = Callable[[IngestResult], None]

SWITCH_INTERVAL = float(os.environ.get("LEADSCORE_SWITCH_INTERVAL", "0.0005"))   # seconds (Python's default: 0.005)


class QueueFull(RuntimeError):
    """More events are waiting than ``max_pending_events``; the client should retry later."""


class WriterStopped(RuntimeError):
    """The writer is shutting down and accepts nothing new."""


@dataclass
class _Pending:
    events: list[Event]
    future: Future = field(default_factory=Future)


def merge_results(results: Sequence[IngestResult]) -> IngestResult:
    if len(results) == 1:
        return results[0]
    ids: list[str] = []
    leads: set[str] = set()
    for r in results:
        ids.extend(r.new_message_ids)
        leads |= r.leads_touched
    return IngestResult(sum(r.received for r in results), sum(r.stored for r in results), ids, leads)


class GroupCommitWriter:
    """``submit(events)`` → a Future resolved once the events are durably committed."""

    def __init__(self, store: Store, hooks: list[Hook] | None = None, max_pending_events: int = 100_000,
                 max_group_events: int = 20_000):
        self.store = store
        self.hooks = hooks if hooks is not None else []   # shared with app.state.after_ingest
        self.max_pending_events = max_pending_events
        self.max_group_events = max_group_events
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._pending_events = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._results: queue.SimpleQueue[IngestResult | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="leadscore-writer", daemon=True)
        self._hook_thread = threading.Thread(target=self._run_hooks, name="leadscore-after-ingest", daemon=True)
        self.commits = 0          # transactions committed (for benchmarks and tests)
        self.committed_events = 0
        self.busy_seconds = 0.0   # wall time spent inside store.ingest

    # ---- lifecycle
    def start(self) -> "GroupCommitWriter":
        # Every database call of the writer releases the GIL and must take it back from the event
        # loop's thread, which (busy with requests) keeps it for up to the switch interval: 5 ms by
        # default, several times per transaction. Measured in one process, a DuckDB writer beside a
        # busy Python thread: 34-42 small transactions in 2 s at 5 ms, 72-82 at 0.5 ms, the busy
        # thread keeping 77-85 % of its pace either way. Applies process-wide; the environment
        # variable LEADSCORE_SWITCH_INTERVAL sets it (seconds).
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread.start()
        self._hook_thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop both threads."""
        with self._lock:
            self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._results.put(None)
        self._hook_thread.join(timeout)

    @property
    def pending_events(self) -> int:
        return self._pending_events

    # ---- the request side
    def submit(self, events: list[Event]) -> Future:
        n = len(events)
        with self._lock:
            if self._stopping:
                raise WriterStopped("the service is shutting down")
            if self._pending_events and self._pending_events + n > self.max_pending_events:
                raise QueueFull(f"{self._pending_events} events are waiting to be written")
            self._pending_events += n
        item = _Pending(events)
        self._queue.put(item)
        return item.future

    # ---- the writer thread
    def _take_group(self, first: _Pending) -> tuple[list[_Pending], bool]:
        group, size, stop = [first], len(first.events), False
        while size < self.max_group_events:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            group.append(nxt)
            size += len(nxt.events)
        return group, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            group, stop = self._take_group(first)
            self._commit(group)
        # drain anything queued after the stop marker (submit refuses new work once stopping)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._commit([item])

    def _commit(self, group: list[_Pending]) -> None:
        events = [ev for item in group for ev in item.events]
        started = time.perf_counter()
        try:
            result = self.store.ingest(events)
        except StoreUnavailable as exc:
            self._finish(group, error=exc)
            return
        except Exception as exc:  # noqa: BLE001 - isolate the culprit, acknowledge the rest
            if len(group) == 1:
                log.exception("a request could not be stored")
                self._finish(group, error=exc)
                return
            log.warning("a group of %d requests failed (%s); committing them one by one", len(group), exc)
            for item in group:
                self._commit([item])
            return
        self.busy_seconds += time.perf_counter() - started
        self.commits += 1
        self.committed_events += len(events)
        self._finish(group, result=result)
        if self.hooks:
            self._results.put(result)

    def _finish(self, group: list[_Pending], result: IngestResult | None = None,
                error: BaseException | None = None) -> None:
        with self._lock:
            self._pending_events -= sum(len(item.events) for item in group)
        for item in group:
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)

    # ---- the hook thread
    def _run_hooks(self) -> None:
        while True:
            first = self._results.get()
            if first is None:
                return
            batch, stop = [first], False
            while True:
                try:
                    nxt = self._results.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            merged = merge_results(batch)
            for hook in list(self.hooks):
                try:
                    hook(merged)
                except Exception:  # noqa: BLE001 - a failing hook must not stop ingestion
                    log.exception("after_ingest hook %r failed", hook)
            if stop:
                return
