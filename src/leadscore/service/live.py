"""Live scores: every committed batch re-scores the leads it touched, time re-scores the rest.

``install(app)`` puts a ``LiveScorer`` at ``app.state.live`` and
- appends ``LiveScorer.on_ingest`` to ``app.state.after_ingest`` (the group-commit writer calls it from
  its own hook thread after acknowledging, so scoring never delays an acknowledgement; when scoring
  falls behind, the writer merges the waiting batches into one);
- at start-up makes sure a model is active (the shipped default otherwise), re-scores everyone in the
  background when the live scores are missing or were made by another model, and starts the time
  scheduler (``LiveSettings.time_rescore_seconds``; 0 turns it off).

One batch = one transaction: the scores and history (``engine.refresh_scores``, cause ``event``, cause_ref
the lead's own messageIds), the rule cache (``engine.partial``: a batch re-derives only the rules its
messages can move), the alerts the model's ``alerts:`` raise (``leadscore.service.alerts``) with
their webhooks, and one CRM sync item per changed lead are committed together. The model is scored
*before* that transaction (outside the store's lock), so ingestion keeps committing meanwhile.

All re-scores (event, time, model) run under one lock: a slow time or model re-score made as of an
earlier instant can never overwrite a newer event score; they go in chunks of
``LiveSettings.chunk_leads`` so events wait at most one chunk. Scores never go back in time: each
re-score is made as of the latest instant already used (``high_water``) or later.

Time: an event batch is scored as of its receive time (``received_at`` stamped by the ingestion
surface); the scheduler reads the wall clock (``clock``) once per tick; tests call ``rescore_time``
with an explicit ``as_of``.
"""
from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.engine import ScoreChange, partial, refresh_scores
from leadscore.engine.models_registry import active_model, get_model, save_model
from leadscore.model import Model, default_model_path, load_model
from leadscore.service import alerts as alert_rules
from leadscore.service import outbox
from leadscore.store import IngestResult, Store
from leadscore.store.dialect import quote_literal

log = logging.getLogger("leadscore.service.live")

MAX_REFS_PER_LEAD = 20  # messageIds kept in one history row's cause_ref


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class LiveSettings:
    time_rescore_seconds: float = 300.0   # how often the scheduler re-scores for time (0 = never)
    chunk_leads: int = 2000               # leads per transaction in time/model re-scores
    alerts_on_model_change: bool = False  # a model activation re-tiers many leads at once: no webhooks by default
    alerts_on_time: bool = True
    crm_sync: bool = True                 # enqueue a CRM sync item per changed lead
    freshness_samples: int = 200_000      # per-message lags kept for the percentiles
    nice: int = 10                        # how far below the process's CPU priority scoring yields (0: never)
    yield_backlog: int = 0                # backlog (events) from which event passes yield (0: always; on_ingest)
    partial: bool = True                  # re-derive only the rules a batch can move (engine.partial; 0: every rule)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "LiveSettings":
        """``LEADSCORE_TIME_RESCORE_SECONDS=60`` etc."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"LEADSCORE_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls, f.name)
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = type(default)(raw)
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes) -> "LiveSettings":
        return replace(self, **changes)


@dataclass
class LiveReport:
    cause: str
    as_of: datetime | None
    leads: int = 0
    changes: list[ScoreChange] = field(default_factory=list)
    alerts: int = 0
    crm_items: int = 0

    def summary(self) -> dict[str, Any]:
        return {"cause": self.cause, "as_of": self.as_of.isoformat() if self.as_of else None, "leads": self.leads,
                "changes": len(self.changes), "alerts": self.alerts, "crm_items": self.crm_items}


def lower_thread_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by ``nice`` (Linux: each thread has its own nice value; an
    unprivileged thread may lower its priority but not raise it again). With spare CPU it changes nothing."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # not permitted or not supported here: scoring keeps the process's priority
        log.debug("could not lower the scoring thread's priority", exc_info=True)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[k]


# ------------------------------------------------------------------------------------------ SQL bits
def batch_events(store: Store, message_ids: Sequence[str]) -> list[alert_rules.BatchEvent | Any]:
    """(message_id, lead_id, type, event, ts, received_at) of the given messages, lead resolved."""
    if not message_ids:
        return []
    cols = ("SELECT e.message_id, COALESCE(mu.lead_id, e.user_id, ma.lead_id) AS lead_id, e.type, e.event, e.ts, "
            "e.received_at FROM events e {join} LEFT JOIN identities mu ON mu.alias_id = e.user_id "
            "LEFT JOIN identities ma ON ma.alias_id = e.anonymous_id {where}")
    ids = list(message_ids)
    if store.dialect.name == "duckdb" and len(ids) <= 4000:
        # A literal IN list of up to 1,000 ids is answered from the primary-key index (0.04 s for 300 ids
        # in 4.8M events, against 0.44 s for the join below, which scans the log's message ids).
        rows = []
        for k in range(0, len(ids), 1000):
            chunk = ", ".join(quote_literal(i) for i in ids[k:k + 1000])
            rows += store.query(cols.format(join="", where=f"WHERE e.message_id IN ({chunk})"))
        return rows
    if store.dialect.name == "duckdb":
        # One join against a long id list (an IN list per chunk would scan the event log once per chunk).
        with store.transaction() as conn:
            conn.register("_ls_batch_ids", pa.table({"message_id": pa.array(ids, pa.string())}))
            try:
                return conn.execute(cols.format(join="JOIN _ls_batch_ids b ON b.message_id = e.message_id",
                                                where="")).fetchall()
            finally:
                conn.unregister("_ls_batch_ids")
    return store.query(cols.format(join="", where="WHERE e.message_id = ANY(?)"), (ids,))


def window_lows(store: Store, conn: Any, model: Model, changes: Sequence[ScoreChange]) -> dict[tuple[str, str], float]:
    """For each score_jump alert and rising change: the lowest score the lead held in the alert's window
    before this change (0 where the lead had no score at the window's start).

    One query for every (alert, lead) pair (a registered Arrow table on DuckDB, arrays on PostgreSQL)
    instead of two per 500 leads: 7,000 rising leads 0.16 -> 0.01 s on DuckDB."""
    out: dict[tuple[str, str], float] = {}
    rising = [c for c in changes if c.prev_score is None or c.score > c.prev_score]
    jumps = [a for a in model.alerts if a.trigger == "score_jump"]
    if not rising or not jumps:
        return out
    names, leads, starts, ats, prevs = [], [], [], [], []
    for alert in jumps:
        since: dict[datetime, datetime] = {}
        for c in rising:
            start = since.get(c.at)
            if start is None:
                start = since[c.at] = alert_rules.score_jump_since(alert, c.at)
            names.append(alert.name)
            leads.append(c.lead_id)
            starts.append(start)
            ats.append(c.at)
            prevs.append(0.0 if c.prev_score is None else c.prev_score)
    keys = list(range(len(leads)))
    if store.dialect.name == "duckdb":
        # held: the score the lead held at the window's start, which the first history row after the start
        # records as its prev_score (each row holds the score it replaced; NULL: never scored before);
        # inside: the lowest score it took after that start and before this change. Only rows after the
        # earliest start are read (a constant filter the scan prunes by: the table is appended in time order),
        # not the lead's whole history (with 5M rows in score_history the whole-history join took 0.2-0.27 s a call).
        # No row after the start (history written by another path): the change's own previous score.
        conn.register("_ls_jumps", pa.table({"k": pa.array(keys, pa.int64()), "lead_id": pa.array(leads, pa.string()),
                                             "start": pa.array(starts, pa.timestamp("us")),
                                             "at": pa.array(ats, pa.timestamp("us"))}))
        try:
            got = conn.execute(
                "SELECT q.k, count(h.lead_id) AS n, arg_min_null(h.prev_score, (h.changed_at, h.rowid)) AS held, "
                "min(h.score) FILTER (WHERE h.changed_at < q.at) AS inside "
                "FROM _ls_jumps q LEFT JOIN (SELECT rowid, lead_id, changed_at, score, prev_score FROM score_history "
                "WHERE changed_at > ?) h ON h.lead_id = q.lead_id AND h.changed_at > q.start "
                "GROUP BY q.k ORDER BY q.k", [min(starts)]).fetchnumpy()
        finally:
            conn.unregister("_ls_jumps")
        held = np.ma.filled(np.ma.asarray(got["held"], dtype=np.float64), 0.0)
        held = np.where(np.asarray(got["n"]) > 0, held, np.array(prevs, dtype=np.float64))
        inside = np.ma.filled(np.ma.asarray(got["inside"], dtype=np.float64), np.inf)
        lows = np.minimum(held, inside).tolist()   # one value per pair, in the pairs' order (k)
    else:
        # held: the score of the lead's last change at or before the window's start (its index answers it);
        # inside: the lowest score it took after that start and before this change.
        rows = conn.execute(
            "SELECT q.k, (SELECT h.score FROM score_history h WHERE h.lead_id = q.lead_id AND h.changed_at <= q.start "
            "ORDER BY h.changed_at DESC LIMIT 1), (SELECT MIN(h.score) FROM score_history h WHERE h.lead_id = q.lead_id "
            "AND h.changed_at > q.start AND h.changed_at < q.at) "
            "FROM unnest(%s::bigint[], %s::text[], %s::timestamp[], %s::timestamp[]) AS q (k, lead_id, start, at) "
            "ORDER BY q.k", (keys, leads, starts, ats)).fetchall()
        lows = [min(float(h) if h is not None else 0.0, float(i) if i is not None else float("inf")) for _, h, i in rows]
    # in the pairs' order: a later alert of the same name wins, as before
    out.update(zip(zip(names, leads), lows))
    return out


def current_rows(store: Store, conn: Any, leads: Iterable[str]) -> dict[str, dict[str, Any]]:
    leads = sorted(set(leads))
    if not leads:
        return {}
    found = {r[0]: r[1:] for r in store._fetch_in(
        conn, "SELECT lead_id, score, fit, tier, stage, as_of FROM lead_scores WHERE lead_id IN {ids}", leads)}
    out: dict[str, dict[str, Any]] = {}
    for lead in leads:
        if lead in found:
            score, fit, tier, stage, as_of = found[lead]
            out[lead] = {"score": float(score), "fit": float(fit), "tier": tier, "stage": stage, "at": as_of}
    return out


# ------------------------------------------------------------------------------------------ the scorer
class LiveScorer:
    """Keeps ``lead_scores``/``score_history`` current; raises alerts; feeds the CRM outbox."""

    def __init__(self, store: Store, settings: LiveSettings | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.settings = settings or LiveSettings()
        self.clock = clock
        self.lock = threading.RLock()
        self.high_water: datetime | None = None
        self._model: tuple[str, Model] | None = None
        self._lags: deque[float] = deque(maxlen=self.settings.freshness_samples)
        self.counters = {"batches": 0, "yielded_batches": 0, "events": 0, "changes": 0, "alerts": 0, "crm_items": 0,
                         "errors": 0, "partial_leads": 0, "full_leads": 0, "merged_leads": 0, "score_seconds": 0.0,
                         "write_seconds": 0.0}
        # Merged re-scores (engine.partial): every ingest commit after ``_handled`` (a commit number,
        # events.seq) up to the newest pass's has been handed to a pass that succeeded, and a cache row
        # whose watermark is at least ``_merge_floor`` lacks none of its lead's messages up to
        # ``_handled``; a commit a pass never saw (stored by another path) or a failed pass raises the
        # floor past it. Rows from before this scorer started are below the floor: their leads' next
        # pass reads the history once (up to its watermark), and merges from then on.
        self._handled = self._merge_floor = store.committed_seq
        self.activation: dict[str, Any] = {"state": "idle"}
        self.last_time_rescore: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The writer's count of events acknowledged and not yet stored (install sets it; None: reads as 0).
        self.backlog: Callable[[], int] | None = None
        self._yielding: ThreadPoolExecutor | None = None   # the thread event passes yield in (on_ingest)

    # ---- the model
    def model(self) -> Model:
        """The active model (parsed once per version)."""
        rows = self.store.query("SELECT version FROM models WHERE active")
        if not rows:
            raise LookupError("no active model: upload one (POST /api/models) and activate it")
        version = rows[0][0]
        if self._model is None or self._model[0] != version:
            model = active_model(self.store)
            self._model = (version, model)
        return self._model[1]

    def ensure_model(self, now: datetime) -> Model:
        """The active model; the shipped default is saved and activated when none is."""
        if not self.store.query("SELECT 1 FROM models WHERE active"):
            save_model(self.store, load_model(default_model_path()), now, activate=True)
        return self.model()

    def _as_of(self, as_of: datetime) -> datetime:
        if as_of.tzinfo is not None:
            as_of = as_of.astimezone(timezone.utc).replace(tzinfo=None)
        if self.high_water is not None and as_of < self.high_water:
            as_of = self.high_water
        self.high_water = as_of
        return as_of

    # ---- one re-score step: score (no store lock), then one transaction for everything it changes
    def _apply(self, model: Model, as_of: datetime, leads: list[str] | None, cause: str, cause_ref: str | None,
               events: Sequence[alert_rules.BatchEvent] = (), refs: dict[str, str | None] | None = None,
               alerts: bool = True, batch: Any = None, watermark: int | None = None,
               merge_floor: int | None = None) -> LiveReport:
        """``batch`` (DuckDB): the events' rows (``partial.batch_rows``), for merged re-scores from
        ``merge_floor`` (see ``__init__``); ``watermark``: the newest commit counted (default: the
        store's newest, for re-scores that are not a batch's)."""
        messages: dict[str, set[tuple[str, str | None]]] = {}
        ids: dict[str, set[str]] | None = {}
        if watermark is None and not events:
            watermark = self.store.committed_seq
            if self.settings.partial and watermark is not None and watermark == self._handled:
                # Every commit has been handed to a pass: a cache row at or past the floor holds all its
                # lead's messages up to the watermark, so time alone is merged (an empty batch).
                batch, merge_floor = partial.batch_rows(self.store, []), self._merge_floor
        if self.settings.partial and batch is not None and batch.num_rows:
            messages, ids = partial.batch_messages(batch), None   # ids: score_live reads the few it needs
        elif self.settings.partial:
            for e in events:
                messages.setdefault(e.lead_id, set()).add((e.type, e.event))
                ids.setdefault(e.lead_id, set()).add(e.message_id)
        started = time.perf_counter()
        frame, state, paths = partial.score_live(self.store, model, as_of, leads, messages, message_ids=ids,
                                                 watermark=watermark, batch=batch,
                                                 merge_floor=merge_floor if self.settings.partial else None)
        self.counters["score_seconds"] += time.perf_counter() - started
        for path, n in paths.items():
            self.counters[f"{path}_leads"] += n
        report = LiveReport(cause, as_of, leads=len(leads) if leads is not None else len(frame))
        store = self.store
        started = time.perf_counter()
        with store._lock, store.transaction() as conn:
            # refs: each lead's own messageIds as its history row's cause (written with the row)
            changes = refresh_scores(store, model, as_of, leads=leads, cause=cause, cause_ref=cause_ref, frame=frame,
                                     cause_refs=refs)
            partial.save_cache(store, conn, as_of, state, watermark=watermark)
            records: list[alert_rules.AlertRecord] = []
            if alerts and model.alerts:
                intent = {e for a in model.alerts if a.trigger == "high_intent" for e in (a.event or [])}
                hot_events = [e for e in events if e.event in intent and e.lead_id]
                changed = {c.lead_id for c in changes}
                current = current_rows(store, conn, [e.lead_id for e in hot_events if e.lead_id not in changed])
                records = alert_rules.evaluate(model, changes, hot_events,
                                               window_low=window_lows(store, conn, model, changes), current=current)
                report.alerts = alert_rules.store_alerts(conn, store, records, now=as_of)
            if self.settings.crm_sync and changes:
                db = outbox.Sql(conn, store)
                rows = [{"lead_id": c.lead_id, "as_of": c.at, "score": c.score, "fit": c.fit, "engagement": c.engagement,
                         "tier": c.tier, "stage": c.stage, "grade": c.grade, "model_version": model.model_version}
                        for c in changes]
                report.crm_items = outbox.enqueue_crm_syncs(db, rows, now=as_of)
        report.changes = changes
        self.counters["write_seconds"] += time.perf_counter() - started
        self.counters["changes"] += len(changes)
        self.counters["alerts"] += report.alerts
        self.counters["crm_items"] += report.crm_items
        return report

    # ---- events
    def on_ingest(self, result: IngestResult) -> LiveReport | None:
        """The after_ingest hook: re-score the leads of a committed batch.

        Scoring runs in the store's process beside ingestion (the store's apply thread, the ingestion
        process answering /v1/*). A pass runs in a thread ``LiveSettings.nice`` below the process's CPU
        priority once the writer's backlog (``backlog``: events acknowledged and not yet stored) is at
        or above ``LiveSettings.yield_backlog``, else in this thread at the process's priority
        (``yielded_batches`` counts the passes that yielded). The default, 0, always yields: when
        ingestion and scoring want the same cores, acknowledgements go first and scores catch up
        behind them. But a niced scorer also yields to any other work on the machine: an operator
        whose server shares it sets e.g. 5,000 (a quarter second of 20,000 events/s), so that scores
        keep up while ingestion does, at some cost to acknowledgement latency when both compete
        (bench/RESULTS.md, session 11: freshness p99 2.5-3.6 s against 15.9-17.7 s beside two busy
        processes; /v1/track p99 at 1,000 requests/s 11-121 ms against 13-55 ms). Two threads rather
        than one thread's priority moved down and up: an unprivileged thread cannot raise it again."""
        if not result.new_message_ids and not result.leads_touched:
            return None
        args = (result.new_message_ids, result.leads_touched)
        try:
            if self._behind():
                try:
                    future = self._yield_thread().submit(self.process, *args, seqs=result.seqs)
                except RuntimeError:     # stop() shut the thread down meanwhile: the writer drains through here
                    future = None
                if future is not None:
                    self.counters["yielded_batches"] += 1
                    return future.result()
            return self.process(*args, seqs=result.seqs)
        except Exception:
            self.counters["errors"] += 1
            raise

    def _behind(self) -> bool:
        if self.settings.nice <= 0 or self._stop.is_set():   # stopped: the writer drains through the hook thread
            return False
        if self.settings.yield_backlog <= 0:                 # the default: always, no need to ask the writer
            return True
        return (self.backlog() if self.backlog is not None else 0) >= self.settings.yield_backlog

    def _yield_thread(self) -> ThreadPoolExecutor:
        if self._yielding is None:
            self._yielding = ThreadPoolExecutor(1, "leadscore-score-yielding",
                                                initializer=lower_thread_priority, initargs=(self.settings.nice,))
        return self._yielding

    def _prepare(self, message_ids: Sequence[str], leads: Iterable[str], as_of: datetime | None,
                 seqs: Sequence[int] = ()):
        """The batch's size, its messages' receive times (datetime64), its instant, its events resolved to their leads,
        each lead's messageIds, the leads (and with ``seqs``, the commits that stored exactly these
        messages, on DuckDB, the events' whole rows: ``partial.batch_rows``, else None).

        With the rows, the events are only the named ones (track calls: what ``high_intent`` alerts
        read; ``_apply`` takes each lead's messages from the rows) and the rest is done by Arrow, not a
        Python loop over the messages, in the thread that shares the GIL with the one applying the log:
        15,000 messages of 5,000 leads took 0.069 s here, now 0.019 s with the rows' query
        (bench/RESULTS.md, freshness, session 17)."""
        if seqs and self.store.dialect.name == "duckdb" and message_ids:
            return self._prepare_rows(partial.batch_rows(self.store, list(message_ids), seqs), leads, as_of)
        rows = batch_events(self.store, message_ids)
        received = [r[5] for r in rows if r[5] is not None]
        if as_of is None:
            if not received:
                return None
            as_of = max(received)
        received = np.array(received, dtype="datetime64[us]")   # as the rows' column gives them
        events = [alert_rules.BatchEvent(r[0], r[1], r[3], r[2], r[4]) for r in rows if r[1]]
        refs: dict[str, list[str]] = {}
        for ev in sorted(events, key=lambda e: (e.ts, e.message_id)):
            refs.setdefault(ev.lead_id, []).append(ev.message_id)
        touched = sorted(set(leads) | set(refs))
        joined = {lead: ",".join(ids[-MAX_REFS_PER_LEAD:]) or None for lead, ids in refs.items()}
        return len(rows), received, as_of, events, joined, touched, None

    def _prepare_rows(self, table: pa.Table, leads: Iterable[str], as_of: datetime | None):
        received = table.column("received_at").drop_null()
        if as_of is None:
            if not len(received):
                return None
            as_of = pc.max(received).as_py()
        lead = table.column("lead_id")
        mine = table.filter(pc.fill_null(pc.not_equal(lead, ""), False))
        # Each lead's messageIds in (ts, messageId) order: sorted, then listed per lead in that order
        # (a single-threaded group_by keeps the input's order).
        ordered = mine.select(["lead_id", "ts", "message_id"]).sort_by(
            [("lead_id", "ascending"), ("ts", "ascending"), ("message_id", "ascending")])
        listed = ordered.group_by("lead_id", use_threads=False).aggregate([("message_id", "list")]).to_pydict()
        joined = {lead_id: ",".join(ids[-MAX_REFS_PER_LEAD:]) or None
                  for lead_id, ids in zip(listed["lead_id"], listed["message_id_list"])}
        named = mine.filter(pc.is_valid(mine.column("event"))).select(["message_id", "lead_id", "event", "type", "ts"])
        events = [alert_rules.BatchEvent(*r) for r in zip(*named.to_pydict().values())]
        touched = sorted(set(leads) | set(joined))
        return table.num_rows, received.to_numpy(), as_of, events, joined, touched, table

    def process(self, message_ids: Sequence[str], leads: Iterable[str] = (), *,
                as_of: datetime | None = None, seqs: Sequence[int] = ()) -> LiveReport | None:
        """Re-score the leads of stored messages. ``seqs``: the commit numbers that stored them (an
        ``IngestResult``'s): with them, the pass counts messages up to the newest, and merges where
        every commit since the last pass is among them (see ``__init__``)."""
        seqs = [s for s in seqs if s is not None]
        tracked = bool(seqs) and self._handled is not None and self.settings.partial
        prepared = self._prepare(message_ids, leads, as_of, seqs if tracked else ())
        if prepared is None:
            return None
        count, received, as_of, events, refs, touched, table = prepared
        with self.lock:
            model = self.model()
            as_of = self._as_of(as_of)
            watermark = floor = None
            if tracked:
                watermark = max(seqs)
                committed = self.store.committed_seqs(self._handled, watermark)
                if committed is None or not committed <= set(seqs):
                    self._merge_floor = max(self._merge_floor or 0, watermark)   # a commit this pass never saw
                else:
                    floor = self._merge_floor
            try:
                report = self._apply(model, as_of, touched, "event", None, events=events, refs=refs, batch=table,
                                     watermark=watermark, merge_floor=floor)
            except Exception:
                if watermark is not None:   # its leads' cache rows lack this pass's messages
                    self._merge_floor = max(self._merge_floor or 0, watermark)
                    self._handled = max(self._handled, watermark)
                raise
            if watermark is not None:
                self._handled = max(self._handled, watermark)
        done = self.clock()
        self._lags.extend(((np.datetime64(done, "us") - received) / np.timedelta64(1, "s")).tolist())
        self.counters["batches"] += 1
        self.counters["events"] += count
        return report

    # ---- time and model
    def _population(self, as_of: datetime) -> list[str]:
        return [r[0] for r in self.store.query("SELECT lead_id FROM population ORDER BY lead_id")]

    def rescore_all(self, as_of: datetime, cause: str, cause_ref: str | None = None, *, model: Model | None = None,
                    progress: Callable[[int, int], None] | None = None, leads: list[str] | None = None) -> LiveReport:
        """Re-score every lead (or ``leads``) in chunks (each its own transaction); only changed leads are written."""
        total = LiveReport(cause, None)
        alerts = cause == "event" or (cause == "time" and self.settings.alerts_on_time) or \
            (cause == "model" and self.settings.alerts_on_model_change)
        if leads is None:
            leads = self._population(as_of)
        if progress:
            progress(0, len(leads))
        size = max(1, self.settings.chunk_leads)
        for k in range(0, len(leads), size):
            if self._stop.is_set():
                break  # shutting down: the next start-up catches up
            chunk = leads[k:k + size]
            with self.lock:
                m = model or self.model()
                at = self._as_of(as_of)
                part = self._apply(m, at, chunk, cause, cause_ref, alerts=alerts)
            total.as_of = at
            total.leads += len(chunk)
            total.changes.extend(part.changes)
            total.alerts += part.alerts
            total.crm_items += part.crm_items
            if progress:
                progress(min(k + size, len(leads)), len(leads))
        return total

    def rescore_time(self, as_of: datetime) -> LiveReport:
        """Decay steps, window edges and inactivity: re-score the leads time may have moved by ``as_of``
        (``partial.due_leads``: a cached edge passed, a half-life rule with hits, no cache row of the
        active model; everyone when ``partial`` is off), write the changes."""
        leads = None
        if self.settings.partial:
            with self.lock:
                leads = partial.due_leads(self.store, self.model(), self._as_of(as_of))
        report = self.rescore_all(as_of, "time", leads=leads)
        self.last_time_rescore = {**report.summary(), "population": self.store.query("SELECT count(*) FROM population")[0][0]}
        return report

    def activate(self, version: str, now: datetime) -> LiveReport:
        """Make ``version`` the active model and re-score everyone with it (cause 'model'), reporting progress
        in ``self.activation``. Raises KeyError for an unknown version."""
        model = get_model(self.store, version)
        self.activation = {"state": "running", "version": version, "done": 0, "total": None, "started_at": now.isoformat()}

        def progress(done: int, total: int) -> None:
            self.activation.update(done=done, total=total)

        try:
            with self.lock:
                save_model(self.store, model, now, activate=True)
                self._model = None
            report = self.rescore_all(now, "model", version, progress=progress)
        except Exception as exc:
            self.activation.update(state="failed", error=str(exc))
            raise
        self.activation.update(state="done", changed=len(report.changes), tier_changes=sum(c.tier_changed for c in report.changes))
        return report

    def activate_in_background(self, version: str, now: datetime) -> dict[str, Any]:
        get_model(self.store, version)  # unknown version: KeyError now, not in the thread
        if self.activation.get("state") == "running":
            raise RuntimeError(f"model {self.activation.get('version')} is still being activated")
        self.activation = {"state": "running", "version": version, "done": 0, "total": None, "started_at": now.isoformat()}
        self._spawn(lambda: self._activate_logged(version, now), "leadscore-activate")
        return dict(self.activation)

    def _activate_logged(self, version: str, now: datetime) -> None:
        try:
            self.activate(version, now)
        except Exception:  # noqa: BLE001 - reported through self.activation
            log.exception("activating model %s failed", version)

    def catch_up(self, now: datetime) -> LiveReport | None:
        """At start-up: re-score the events acknowledged before a crash but never scored (received after
        their lead's last score), and everyone when live scores are missing or from another model version."""
        model = self.model()
        behind = [r[0] for r in self.store.query(
            "SELECT e.message_id FROM resolved_events e JOIN lead_scores s ON s.lead_id = e.lead_id "
            "WHERE e.received_at > s.as_of ORDER BY e.received_at")]
        if behind:
            self.process(behind)
        stale = self.store.query(
            "SELECT COUNT(*) FROM population p LEFT JOIN lead_scores s ON s.lead_id = p.lead_id "
            "WHERE s.lead_id IS NULL OR s.model_version <> ?", (model.model_version,))[0][0]
        if not stale:
            return None
        self.activation = {"state": "running", "version": model.model_version, "done": 0, "total": None,
                           "started_at": now.isoformat(), "reason": "start-up catch-up"}

        def progress(done: int, total: int) -> None:
            self.activation.update(done=done, total=total)

        report = self.rescore_all(now, "model", model.model_version, progress=progress)
        self.activation.update(state="done", changed=len(report.changes))
        return report

    # ---- status
    def stats(self) -> dict[str, Any]:
        lags = list(self._lags)
        return {
            "model_version": self._model[0] if self._model else None,
            "high_water": self.high_water.isoformat() if self.high_water else None,
            **self.counters,
            "freshness_seconds": {"samples": len(lags), "p50": _percentile(lags, 50), "p99": _percentile(lags, 99),
                                  "max": max(lags) if lags else None},
            "activation": dict(self.activation),
            "last_time_rescore": self.last_time_rescore,
            "time_rescore_seconds": self.settings.time_rescore_seconds,
        }

    def reset_stats(self) -> None:
        self._lags.clear()

    # ---- lifecycle
    def start(self) -> None:
        now = self.clock()
        self.ensure_model(now)
        # Everything allocated so far (modules, the app, the model) lives as long as the process: moved out
        # of the collector's generations, so the collections a pass's many objects trigger do not walk it
        # again each time (bench/live_write_bench.py --no-gc: ~0.05 s of a 7,000-lead pass's write).
        gc.freeze()
        self._spawn(self._catch_up_logged, "leadscore-catch-up")
        if self.settings.time_rescore_seconds > 0:
            self._spawn(self._schedule, "leadscore-time-rescore")

    def _spawn(self, target, name: str) -> None:
        def run() -> None:
            lower_thread_priority(self.settings.nice)
            target()
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _catch_up_logged(self) -> None:
        try:
            self.catch_up(self.clock())
        except Exception:  # noqa: BLE001
            log.exception("start-up re-score failed")
            self.activation.update(state="failed")

    def _schedule(self) -> None:
        while not self._stop.wait(self.settings.time_rescore_seconds):
            try:
                self.rescore_time(self.clock())
            except Exception:  # noqa: BLE001 - try again next tick
                log.exception("time re-score failed")

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._yielding is not None:
            self._yielding.shutdown(wait=True)
        gc.unfreeze()   # what start() froze is collected (and finalized) as usual again
        for thread in self._threads:
            thread.join(timeout)


def install(app) -> None:
    settings = getattr(app.state, "live_settings", None) or LiveSettings.from_env()
    scorer = LiveScorer(app.state.store, settings)
    app.state.live = scorer
    app.state.after_ingest.append(scorer.on_ingest)
    scorer.backlog = lambda: app.state.writer.pending_events
    app.state.on_start.append(lambda app: scorer.start())
    app.state.on_stop.append(lambda app: scorer.stop())
