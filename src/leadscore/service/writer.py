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

With a durable log (``log=IngestLog``, see ingest_log.py) the work is split in two sides:

- ``LogAppender`` acknowledges: its log thread appends every waiting request's body to the log in
  one fsynced transaction, hands the logged requests to the applying side (``deliver``) and answers
  them. It owns every write to the log file while it runs, including deleting what was applied
  (at most once a second, between two appends), so the appends never wait for a lock.
- ``GroupCommitWriter`` applies: ``receive`` queues logged requests in log order; the apply thread
  stores them in transactions of up to ``max_group_events`` events, each recording the log position
  it reached, and after each one ``report``s (applied position, backlog, store state) to the appender.

In one process (``appender=True``, what tests and embedding code get) the two are wired directly.
``leadscore serve`` runs the appender in a separate ingestion process (service/frontend.py) so
that HTTP, validation and the log append never wait for the GIL held by store work; logged requests
and reports then cross a socket, and a sequence number missing from what arrives (an ingestion
process killed between its fsync and its message) is read back from the log.

``pending_events`` (acknowledged or waiting, not yet in the store) is the backlog: beyond
``max_pending_events`` requests get 503. Once the store reports itself unavailable, requests get 503
until a transaction succeeds again, while the apply thread retries what the log holds. ``flush()``
waits until everything acknowledged so far is in the store (tests, erasure, tools that read right
after ingesting).
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

from leadscore.events import Event
from leadscore.store import IngestResult, Store, StoreUnavailable

if TYPE_CHECKING:
    from leadscore.service.ingest_log import IngestLog

log = logging.getLogger("leadscore.service.writer")

Hook = Callable[[IngestResult], None]

SWITCH_INTERVAL = float(os.environ.get("LEADSCORE_SWITCH_INTERVAL", "0.0005"))   # seconds (Python's default: 0.005)


def use_short_switch_interval() -> None:
    """A thread whose database or fsync call returns must take the GIL back from the thread keeping
    it (the event loop, busy with requests), which by default keeps it up to 5 ms. Measured in one
    process, a DuckDB writer beside a busy Python thread: 34-42 small transactions in 2 s at 5 ms,
    72-82 at 0.5 ms, the busy thread keeping 77-85 % of its pace either way. Process-wide; the
    environment variable LEADSCORE_SWITCH_INTERVAL sets it (seconds)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)


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


class Report(NamedTuple):
    """What the applying side tells the acknowledging side after each store transaction."""
    applied_seq: int          # every log entry up to here is in the store (the appender may delete them)
    received_seq: int         # the newest entry the applier has received
    pending_events: int       # events received by the applier and not yet in the store
    store_down: str | None    # why the store refused the last transaction, until one succeeds


#: Builds a logged request's events again (replay): (kind, received_at ISO, body) → events.
Decoder = Callable[[str, str, bytes], list[Event]]


def merge_results(results: Sequence[IngestResult]) -> IngestResult:
    if len(results) == 1:
        return results[0]
    ids: list[str] = []
    leads: set[str] = set()
    seqs: list[int] = []
    for r in results:
        ids.extend(r.new_message_ids)
        leads |= r.leads_touched
        seqs.extend(r.seqs)
    return IngestResult(sum(r.received for r in results), sum(r.stored for r in results), ids, leads, seqs)


def _take(first, source: queue.SimpleQueue, limit: int, size=len) -> tuple[list, bool]:
    """``first`` and what else waits in ``source``, up to ``limit`` (by ``size``); True as well when
    the stop marker (None) was met."""
    group, total, stop = [first], size(first), False
    while total < limit:
        try:
            nxt = source.get_nowait()
        except queue.Empty:
            break
        if nxt is None:
            stop = True
            break
        group.append(nxt)
        total += size(nxt)
    return group, stop


# ---------------------------------------------------------------- the acknowledging side
def _set_all(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(None)


class LogAppender:
    """``submit(events, record)`` → a future resolved once the record is fsynced in the log (an
    asyncio future when submitted from an event loop, else a concurrent one).

    ``deliver(items)`` is called from the log thread with each logged group (``seq`` set), in log
    order, before their futures resolve; ``report(Report)`` is how the applying side tells it what is
    in the store (the backlog, the store's state, what may be deleted from the log)."""

    # Applied entries are deleted at most once a second, the WAL checkpointed at most every 5 s: each
    # costs ~3-5 ms here (a DELETE and its fsync; copying pages and an fsync of the file), during which
    # appends wait. Between two checkpoints the WAL grows by what was appended (~4 MB/s of pages at
    # 1,000 small requests/s); a checkpoint copies each page once, however often it was rewritten.
    MAINTAIN_SECONDS = 1.0
    CHECKPOINT_SECONDS = 5.0

    def __init__(self, log: "IngestLog", deliver: Callable[[list[_Pending]], None], max_pending_events: int = 100_000):
        self.log = log
        self.deliver = deliver
        self.max_pending_events = max_pending_events
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        self._waiting = 0                                  # events submitted, not yet logged
        self._unreported: deque[tuple[int, int]] = deque()  # (seq, events) logged after the report's received_seq
        self._unreported_events = 0
        self._report = Report(0, 0, 0, None)
        self.logged_seq = 0       # the newest sequence number acknowledged
        self.log_commits = 0      # fsynced log transactions
        self.log_busy_seconds = 0.0
        self.discarded_seq = 0
        self._maintained_at = self._checkpointed_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="leadscore-log", daemon=True)

    @property
    def store_down(self) -> str | None:
        return self._report.store_down

    @property
    def pending_events(self) -> int:
        """Submitted or logged, and not yet in the store (as far as the last report tells)."""
        return self._waiting + self._report.pending_events + self._unreported_events

    def start(self) -> "LogAppender":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Log and deliver what is queued (submit refuses new work from now on), then stop."""
        with self._lock:
            self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, events: list[Event], record: tuple[str, str, bytes] | None = None) -> Future:
        if record is None:
            raise ValueError("a writer with a log needs the request's record")
        n = len(events)
        with self._lock:
            if self._stopping:
                raise WriterStopped("the service is shutting down")
            if self._report.store_down is not None:
                raise StoreUnavailable(self._report.store_down)
            pending = self.pending_events
            if pending and pending + n > self.max_pending_events:
                raise QueueFull(f"{pending} events are waiting to be written")
            self._waiting += n
        try:   # from an event loop (the endpoint): an asyncio future, settled with its group (below)
            future = asyncio.get_running_loop().create_future()
        except RuntimeError:
            future = Future()
        item = _Pending(events, future=future, record=record)
        self._queue.put(item)
        return item.future

    @staticmethod
    def _settle(group: list[_Pending], error: BaseException | None = None) -> None:
        """Resolve a group's futures: one wake-up of each event loop for the whole group instead of one
        per request (measured: 16 against 43 µs of CPU per request, futures alone)."""
        by_loop: dict = {}
        for item in group:
            future = item.future
            if isinstance(future, asyncio.Future):
                by_loop.setdefault(future.get_loop(), []).append(future)
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(None)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_all, futures, error)
            except RuntimeError:
                pass   # that loop is closed: nobody waits for these any more

    def report(self, report: Report) -> None:
        with self._lock:
            while self._unreported and self._unreported[0][0] <= report.received_seq:
                self._unreported_events -= self._unreported.popleft()[1]
            self._report = report

    # ---- the log thread
    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=self.MAINTAIN_SECONDS)
            except queue.Empty:
                self._maintain()
                continue
            if first is None:
                break
            group, stop = _take(first, self._queue, sys.maxsize, lambda _: 1)   # everything waiting: one fsync
            self._log_group(group)
            self._maintain()
        rest = []   # anything queued after the stop marker (submit refuses new work once stopping)
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
        events = sum(len(item.events) for item in group)
        try:
            seqs = self.log.append([item.record for item in group])
        except StoreUnavailable as exc:
            log.error("%s", exc)
            with self._lock:
                self._waiting -= events
            self._settle(group, exc)
            return
        self.log_busy_seconds += time.perf_counter() - started
        self.log_commits += 1
        for item, seq in zip(group, seqs):
            item.seq = seq
        with self._lock:
            self._waiting -= events
            for item in group:
                self._unreported.append((item.seq, len(item.events)))
            self._unreported_events += events
            self.logged_seq = seqs[-1]
        try:
            # handed over (or queued to be) before acknowledged; flush() reads the log's newest entry anyway
            self.deliver(group)
        except Exception:  # noqa: BLE001 - durable in the log: the applier reads back what it misses
            log.exception("logged requests %d-%d could not be handed to the store's side", seqs[0], seqs[-1])
        self._settle(group)

    def _maintain(self) -> None:
        """Delete the applied entries and checkpoint the WAL, at most once a second. Done here, between
        two appends, because any other writer of the log file would make an append wait for its lock."""
        applied = self._report.applied_seq
        if applied <= self.discarded_seq or time.monotonic() - self._maintained_at < self.MAINTAIN_SECONDS:
            return
        self._maintained_at = now = time.monotonic()
        checkpoint = now - self._checkpointed_at >= self.CHECKPOINT_SECONDS
        try:
            self.log.discard_through(applied, checkpoint=checkpoint)
            self.discarded_seq = applied
            if checkpoint:
                self._checkpointed_at = now
        except Exception:  # noqa: BLE001 - applied entries left in the log are skipped at replay
            log.exception("could not trim the ingestion log")


# ---------------------------------------------------------------- the applying side (and commit mode)
class GroupCommitWriter:
    """``submit(events)`` → a Future resolved once the events are durable (committed, or logged)."""

    def __init__(self, store: Store, hooks: list[Hook] | None = None, max_pending_events: int = 100_000,
                 max_group_events: int = 20_000, log: "IngestLog | None" = None, decode: Decoder | None = None,
                 retry_seconds: float = 0.5, apply_interval: float = 0.1, appender: bool = True):
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
        self.received_seq = 0     # the newest sequence number received (or replayed)
        self.applied_seq = 0      # the newest sequence number in the store
        self.store_down: str | None = None   # why the store refused the last transaction, until one succeeds
        self.set_aside = 0        # log entries the store refused for another reason (kept in the log file)
        self.replayed_events = 0  # events applied from the log at start-up
        self.recovered_events = 0  # events read back from the log later (an ingestion process that died)
        self._abandon = False     # stop() gave up waiting: leave the rest in the log
        self.reporters: list[Callable[[Report], None]] = []   # told after each store transaction
        self.front_stats: dict = {}   # the ingestion process's counters (log commits ...), when it runs apart
        self._receive_lock = threading.Lock()
        self.appender: LogAppender | None = None
        if log is not None:
            self._apply_thread = threading.Thread(target=self._run_apply, name="leadscore-apply", daemon=True)
            if appender:
                self.appender = LogAppender(log, self.receive, max_pending_events)
                self.reporters.append(self.appender.report)

    # ---- lifecycle
    def start(self) -> "GroupCommitWriter":
        use_short_switch_interval()
        if self.log is not None:
            self._replay()
            self._apply_thread.start()
            if self.appender is not None:
                self.appender.start()
        else:
            self._thread.start()
        self._hook_thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued (with a log: what the log holds, unless the store stays unavailable
        for ``timeout`` seconds; the rest is applied at the next start), then stop the threads."""
        with self._lock:
            self._stopping = True
        if self.log is not None:
            if self.appender is not None:
                self.appender.stop(timeout)
            self._apply_queue.put(None)
            self._apply_thread.join(timeout)
            if self._apply_thread.is_alive():
                self._abandon = True
                self._apply_thread.join(5)
        else:
            self._queue.put(None)
            self._thread.join(timeout)
        self._results.put(None)
        self._hook_thread.join(timeout)

    @property
    def pending_events(self) -> int:
        if self.appender is not None:
            return self._pending_events + self.appender._waiting
        return self._pending_events

    @property
    def logged_seq(self) -> int:
        """The newest sequence number acknowledged (or replayed), as far as this side knows."""
        if self.appender is not None:
            return max(self.appender.logged_seq, self.received_seq)
        return max(self.received_seq, self.front_stats.get("logged_seq", 0))

    @property
    def log_commits(self) -> int:
        return self.appender.log_commits if self.appender is not None else self.front_stats.get("log_commits", 0)

    @property
    def log_busy_seconds(self) -> float:
        return self.appender.log_busy_seconds if self.appender is not None else self.front_stats.get("log_busy_seconds", 0.0)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every request acknowledged so far is in the store; False on timeout."""
        if self.log is None:
            return True   # acknowledged means committed
        # The log holds everything acknowledged, whichever process acknowledged it.
        target = max(self.received_seq, self.log.last_seq())
        with self._applied:
            return self._applied.wait_for(lambda: self.applied_seq >= target, timeout)

    def stats(self) -> dict:
        out = {"pending_events": self.pending_events, "commits": self.commits,
               "committed_events": self.committed_events, "writer_busy_seconds": round(self.busy_seconds, 3)}
        if self.log is not None:
            out.update({"log_commits": self.log_commits, "log_busy_seconds": round(self.log_busy_seconds, 3),
                        "logged_seq": self.logged_seq, "applied_seq": self.applied_seq,
                        "store_unavailable": self.store_down, "set_aside": self.set_aside,
                        "replayed_events": self.replayed_events})
            if self.appender is None:
                out["recovered_events"] = self.recovered_events
                if "pid" in self.front_stats:
                    out["ingest_process"] = {"pid": self.front_stats["pid"], "restarts": self.front_stats["restarts"]}
        return out

    # ---- the request side
    def submit(self, events: list[Event], record: tuple[str, str, bytes] | None = None) -> Future:
        """Queue validated events; ``record`` (kind, received_at ISO, body) is what the log keeps
        (required with a log). The Future resolves once they are durable (logged, or committed)."""
        if self.log is not None:
            if self.appender is None:
                raise WriterStopped("requests are acknowledged by the ingestion process, not here")
            return self.appender.submit(events, record)
        n = len(events)
        with self._lock:
            if self._stopping:
                raise WriterStopped("the service is shutting down")
            if self.store_down is not None:
                raise StoreUnavailable(self.store_down)
            if self._pending_events and self._pending_events + n > self.max_pending_events:
                raise QueueFull(f"{self._pending_events} events are waiting to be written")
            self._pending_events += n
        item = _Pending(events, record=record)
        self._queue.put(item)
        return item.future

    # ---- commit mode: the writer thread
    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            group, stop = _take(first, self._queue, self.max_group_events, lambda item: len(item.events))
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

    # ---- log mode: receiving logged requests
    def receive(self, items: list[_Pending]) -> None:
        """Queue logged requests for the store, in log order. Entries the applier has already received
        are skipped; entries missing before the first (a sequence number skipped: logged by an
        ingestion process that died before handing them over) are read back from the log first."""
        with self._receive_lock:
            items = [item for item in items if item.seq > self.received_seq]
            if not items:
                return
            if items[0].seq > self.received_seq + 1:
                after = self.received_seq
                count = self._queue_from_log(after, items[0].seq - 1)
                if count:
                    self.recovered_events += count
                    log.warning("read %d logged events back from the ingestion log %s (entries %d-%d were "
                                "not handed over)", count, self.log.path, after + 1, items[0].seq - 1)
            self._enqueue(items)

    def catch_up_from_log(self) -> int:
        """Queue what the log holds beyond the newest entry received (the ingestion process stopped or
        died); the events queued."""
        with self._receive_lock:
            count = self._queue_from_log(self.received_seq, None)
        if count:
            self.recovered_events += count
            log.warning("read %d logged events back from the ingestion log %s", count, self.log.path)
        return count

    def _enqueue(self, items: list[_Pending]) -> None:
        with self._lock:
            self._pending_events += sum(len(item.events) for item in items)
            self.received_seq = items[-1].seq
        for item in items:
            self._apply_queue.put(item)

    def _queue_from_log(self, after: int, through: int | None) -> int:
        count = 0
        batch: list[_Pending] = []
        for seq, kind, received_at, body in self.log.entries_after(after):
            if through is not None and seq > through:
                break
            try:
                events = self.decode(kind, received_at, body)
            except Exception as exc:  # noqa: BLE001 - a body that no longer decodes: kept aside, not lost
                log.error("ingestion log entry %d cannot be decoded (%s); set aside", seq, exc)
                self.log.set_aside(seq, f"decode: {exc}")
                self.set_aside += 1
                events = []   # still queued, empty: the recorded position moves past it
            item = _Pending(events, record=(kind, received_at, b""), seq=seq)
            item.future.set_result(None)
            batch.append(item)
            count += len(events)
            if len(batch) >= 256:
                self._enqueue(batch)
                batch = []
        if batch:
            self._enqueue(batch)
        return count

    def _replay(self) -> None:
        """Queue the log's entries after the store's recorded position (before any new request)."""
        position = self.store.ingest_log_position(self.log.log_id)
        self.applied_seq = self.received_seq = position
        count = self._queue_from_log(position, None)
        self.replayed_events = count
        if count:
            log.warning("replaying %d events from the ingestion log %s", count, self.log.path)
        self.log.discard_through(position)

    def report(self) -> Report:
        with self._lock:
            return Report(self.applied_seq, self.received_seq, self._pending_events, self.store_down)

    def _tell(self) -> None:
        report = self.report()
        for reporter in list(self.reporters):
            try:
                reporter(report)
            except Exception:  # noqa: BLE001 - a report lost is replaced by the next one
                log.exception("could not report the applied position to %r", reporter)

    # ---- log mode: the apply thread
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
            group, stop = _take(first, self._apply_queue, self.max_group_events, lambda item: len(item.events))
            if not self._apply(group):
                return   # abandoned at stop: the rest stays in the log
        if self.appender is None or not self.appender._thread.is_alive():
            try:   # no appender runs any more: nothing else writes the log file now
                self.log.discard_through(self.applied_seq)
            except Exception:  # noqa: BLE001 - applied entries left in the log are skipped at replay
                log.exception("could not trim the ingestion log")

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
                    changed = self.store_down is None
                    self.store_down = f"the store is unavailable: {exc}"
                if changed:
                    self._tell()
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
        self._tell()
        with self._applied:
            self._applied.notify_all()
        if result is not None and result.received and self.hooks:
            self._results.put(result)
        return True

    # ---- the hook thread
    def _run_hooks(self) -> None:
        while True:
            first = self._results.get()
            if first is None:
                return
            batch, stop = _take(first, self._results, sys.maxsize, lambda _: 1)
            merged = merge_results(batch)
            for hook in list(self.hooks):
                try:
                    hook(merged)
                except Exception:  # noqa: BLE001 - a failing hook must not stop ingestion
                    log.exception("after_ingest hook %r failed", hook)
            if stop:
                return
