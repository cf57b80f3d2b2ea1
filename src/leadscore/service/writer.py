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

With a durable log (``log=IngestLog``, see ingest_log.py) the acknowledgement no longer waits for
the store: a log thread appends every waiting request's body to the log in one fsynced transaction
and acknowledges them, and the apply thread stores what the log holds in transactions of up to
``max_group_events`` events, each recording the log position it reached. ``pending_events``
(logged or waiting, not yet in the store) is the backlog: beyond ``max_pending_events`` requests get
503. Once the store reports itself unavailable, requests get 503 until a transaction succeeds again,
while the apply thread retries what the log holds. ``flush()`` waits until everything acknowledged
so far is in the store (tests and tools that read right after ingesting).
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
from typing import TYPE_CHECKING, Callable, Sequence

from leadscore.events import Event
from leadscore.store import IngestResult, Store, StoreUnavailable

if TYPE_CHECKING:
    from leadscore.service.ingest_log import IngestLog

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
    record: tuple[str, str, bytes] | None = None   # (kind, received_at ISO, body): what the log keeps
    seq: int = 0                                    # its log sequence number, once logged


#: Builds a logged request's events again (replay): (kind, received_at ISO, body) → events.
Decoder = Callable[[str, str, bytes], list[Event]]


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
                 max_group_events: int = 20_000, log: "IngestLog | None" = None, decode: Decoder | None = None,
                 retry_seconds: float = 0.5, apply_interval: float = 0.1):
        self.store = store
        self.log = log
        self.decode = decode
        self.retry_seconds = retry_seconds
        self.apply_interval = apply_interval   # log mode: seconds between the starts of two store transactions, at least
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
        # ---- log mode
        self._apply_queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._applied = threading.Condition(self._lock)
        self.logged_seq = 0       # the newest sequence number acknowledged (or replayed)
        self.applied_seq = 0      # the newest sequence number in the store
        self.log_commits = 0      # fsynced log transactions
        self.log_busy_seconds = 0.0
        self.store_down: str | None = None   # why the store refused the last transaction, until one succeeds
        self.set_aside = 0        # log entries the store refused for another reason (kept in the log file)
        self.replayed_events = 0  # events applied from the log at start-up
        self._abandon = False     # stop() gave up waiting: leave the rest in the log
        self._discarded_at = 0.0
        if log is not None:
            self._apply_thread = threading.Thread(target=self._run_apply, name="leadscore-apply", daemon=True)

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
        if self.log is not None:
            self._replay()
            self._apply_thread.start()
        self._thread.start()
        self._hook_thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued (with a log: what the log holds, unless the store stays unavailable
        for ``timeout`` seconds; the rest is applied at the next start), then stop the threads."""
        with self._lock:
            self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)
        if self.log is not None:
            self._apply_queue.put(None)
            self._apply_thread.join(timeout)
            if self._apply_thread.is_alive():
                self._abandon = True
                self._apply_thread.join(5)
        self._results.put(None)
        self._hook_thread.join(timeout)

    @property
    def pending_events(self) -> int:
        return self._pending_events

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every request acknowledged so far is in the store; False on timeout."""
        if self.log is None:
            return True   # acknowledged means committed
        with self._applied:
            target = self.logged_seq
            return self._applied.wait_for(lambda: self.applied_seq >= target, timeout)

    def stats(self) -> dict:
        out = {"pending_events": self.pending_events, "commits": self.commits,
               "committed_events": self.committed_events, "writer_busy_seconds": round(self.busy_seconds, 3)}
        if self.log is not None:
            out.update({"log_commits": self.log_commits, "log_busy_seconds": round(self.log_busy_seconds, 3),
                        "logged_seq": self.logged_seq, "applied_seq": self.applied_seq,
                        "store_unavailable": self.store_down, "set_aside": self.set_aside,
                        "replayed_events": self.replayed_events})
        return out

    # ---- the request side
    def submit(self, events: list[Event], record: tuple[str, str, bytes] | None = None) -> Future:
        """Queue validated events; ``record`` (kind, received_at ISO, body) is what the log keeps
        (required with a log). The Future resolves once they are durable (logged, or committed)."""
        n = len(events)
        with self._lock:
            if self._stopping:
                raise WriterStopped("the service is shutting down")
            if self.store_down is not None:
                raise StoreUnavailable(self.store_down)
            if self._pending_events and self._pending_events + n > self.max_pending_events:
                raise QueueFull(f"{self._pending_events} events are waiting to be written")
            self._pending_events += n
        if self.log is not None and record is None:
            raise ValueError("a writer with a log needs the request's record")
        item = _Pending(events, record=record)
        self._queue.put(item)
        return item.future

    # ---- the writer thread
    def _take_group(self, first: _Pending, source: queue.Queue | None = None) -> tuple[list[_Pending], bool]:
        """``first`` and what else waits in ``source`` (the request queue by default), up to
        max_group_events; True as well when the stop marker was met."""
        source = self._queue if source is None else source
        group, size, stop = [first], len(first.events), False
        while size < self.max_group_events:
            try:
                nxt = source.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            group.append(nxt)
            size += len(nxt.events)
        return group, stop

    def _run(self) -> None:
        if self.log is not None:
            return self._run_log()
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

    # ---- log mode: the log thread acknowledges, the apply thread stores
    def _run_log(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            while True:   # everything waiting: one fsync for all of it
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._log_group(group)
        # anything queued after the stop marker (submit refuses new work once stopping)
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
        if rest:
            self._log_group(rest)

    def _log_group(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            seqs = self.log.append([item.record for item in group])
        except StoreUnavailable as exc:
            log.error("%s", exc)
            self._finish(group, error=exc)
            return
        self.log_busy_seconds += time.perf_counter() - started
        self.log_commits += 1
        for item, seq in zip(group, seqs):
            item.seq = seq
            self._apply_queue.put(item)     # queued before acknowledged: flush() after a 200 waits for it
        with self._lock:
            self.logged_seq = seqs[-1]
        for item in group:
            item.future.set_result(None)

    def _replay(self) -> None:
        """Queue the log's entries after the store's recorded position (before any new request)."""
        position = self.store.ingest_log_position(self.log.log_id)
        count = 0
        for seq, kind, received_at, body in self.log.entries_after(position):
            try:
                events = self.decode(kind, received_at, body)
            except Exception as exc:  # noqa: BLE001 - a body that no longer decodes: kept aside, not lost
                log.error("ingestion log entry %d cannot be decoded (%s); set aside", seq, exc)
                self.log.set_aside(seq, f"decode: {exc}")
                self.set_aside += 1
                continue
            item = _Pending(events, record=(kind, received_at, b""), seq=seq)
            item.future.set_result(None)
            self._pending_events += len(events)
            self._apply_queue.put(item)
            self.logged_seq = seq
            count += len(events)
        self.applied_seq = position
        if self.logged_seq < position:
            self.logged_seq = position
        self.replayed_events = count
        if count:
            log.warning("replaying %d events from the ingestion log %s", count, self.log.path)
        self.log.discard_through(position)

    def _run_apply(self) -> None:
        stop = False
        last = 0.0
        while not stop:
            first = self._apply_queue.get()
            if first is None:
                break
            # A transaction costs the store a fixed ~10 ms of CPU whatever its size (DuckDB): under a
            # stream of small requests, gather them for up to apply_interval since the last one.
            wait = self.apply_interval - (time.monotonic() - last)
            if wait > 0 and len(first.events) < self.max_group_events and not self._stopping:
                time.sleep(wait)
            last = time.monotonic()
            group, stop = self._take_group(first, self._apply_queue)
            if not self._apply(group):
                return   # abandoned at stop: the rest stays in the log
        self._discard(force=True)

    def _apply(self, group: list[_Pending]) -> bool:
        """Store a group of logged requests (retrying while the store is unavailable); False if abandoned."""
        events = [ev for item in group for ev in item.events]
        position = (self.log.log_id, group[-1].seq)
        while True:
            started = time.perf_counter()
            try:
                result = self.store.ingest(events, log_position=position)
                break
            except StoreUnavailable as exc:
                with self._lock:
                    if self.store_down is None:
                        log.error("the store is unavailable (%s); retrying every %.1f s, new requests get 503",
                                  exc, self.retry_seconds)
                    self.store_down = f"the store is unavailable: {exc}"
                if self._abandon:
                    return False
                time.sleep(self.retry_seconds)
            except Exception as exc:  # noqa: BLE001 - isolate the culprit, store the rest
                if len(group) > 1:
                    log.warning("a group of %d logged requests failed (%s); applying them one by one", len(group), exc)
                    return all(self._apply([item]) for item in group)
                log.exception("ingestion log entry %d could not be stored; set aside", group[0].seq)
                self.log.set_aside(group[0].seq, repr(exc))
                self.set_aside += 1
                events, result = [], None
                try:   # move the position past it (nothing else to write)
                    self.store.ingest([], log_position=position)
                except Exception:  # noqa: BLE001 - the next group's position covers it
                    log.exception("could not record the log position %d", position[1])
                break
        if events:
            self.busy_seconds += time.perf_counter() - started
            self.commits += 1
            self.committed_events += len(events)
        with self._applied:
            self.store_down = None
            self._pending_events -= sum(len(item.events) for item in group)
            self.applied_seq = position[1]
            self._applied.notify_all()
        if result is not None and self.hooks:
            self._results.put(result)
        self._discard()
        return True

    def _discard(self, force: bool = False) -> None:
        """Delete applied entries from the log, at most about once a second."""
        now = time.monotonic()
        if not force and now - self._discarded_at < 1.0:
            return
        self._discarded_at = now
        try:
            self.log.discard_through(self.applied_seq)
        except Exception:  # noqa: BLE001 - applied entries left in the log are skipped at replay
            log.exception("could not trim the ingestion log")

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
