"""The store: one narrow interface over DuckDB (embedded, default) and PostgreSQL (shared server).

Like an httpx transport, a backend only knows how to run SQL and bulk-load rows; ingestion,
identity and traits are written once here, in SQL both engines run.
"""
from __future__ import annotations

import json
import threading
from collections import deque
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from leadscore.events import Event
from leadscore.events.normalize import STORED_EVENT_COLUMNS
from leadscore.store import migrations
from leadscore.store.dialect import Dialect
from leadscore.store.traits import browser_of, flatten_traits


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or refused the write; callers answer 503 and retry later."""


@dataclass
class IngestResult:
    received: int
    stored: int            # new messages (duplicates of stored messageIds are not counted)
    new_message_ids: list[str]
    leads_touched: set[str]
    # The commit numbers (``events.seq``) of the transactions that stored these messages: one per
    # transaction; a merged result (service.writer.merge_results) holds all of its commits'.
    seqs: list[int] = field(default_factory=list)


class Store(ABC):
    dialect: Dialect
    url: str

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Commit numbers of the ingest transactions committed through this store object, newest last
        # (see :meth:`committed_seqs`); maintained by stores that publish them at commit (DuckDB).
        self._seq_commits: deque[int] = deque(maxlen=1 << 16)
        self.committed_seq: int | None = None   # the newest committed ingest's number (None: not tracked)

    # ---- what a backend provides
    @abstractmethod
    def _execute(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    @abstractmethod
    def _fetchall(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> list[tuple]: ...

    @abstractmethod
    def _bulk_insert(self, conn: Any, table: str, columns: Sequence[str], rows: list[tuple],
                     conflict: str = "ignore", returning: str | None = None) -> list[tuple]: ...

    @abstractmethod
    def _fetch_in(self, conn: Any, sql: str, ids: Sequence[str]) -> list[tuple]:
        """Run ``sql`` where ``{ids}`` stands for a relation of the given strings (one column)."""

    @contextmanager
    @abstractmethod
    def transaction(self) -> Iterator[Any]: ...

    @abstractmethod
    def query_arrow(self, sql: str, params: Sequence[Any] | None = None): ...

    @abstractmethod
    def close(self) -> None: ...

    def query_analytic(self, sql: str, relations: dict | None = None):
        """An Arrow table from a large set-based query (the engine's scoring SQL). ``relations``: Arrow
        tables the query reads by name (DuckDB registers them; other stores take none)."""
        if relations:
            raise NotImplementedError(f"{type(self).__name__} reads no registered relations")
        return self.query_arrow(sql)

    # ---- shared behaviour
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.transaction() as conn:
            return self._fetchall(conn, sql, params)

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        table = self.query_arrow(sql, params)
        return table.to_pylist()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.transaction() as conn:
            self._execute(conn, sql, params)

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied; returns their names."""
        applied: list[str] = []
        with self.transaction() as conn:
            self._execute(conn, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
            done = {r[0] for r in self._fetchall(conn, "SELECT version FROM schema_migrations")}
            for version, name, sql in migrations.migration_files():
                if version in done:
                    continue
                rendered = migrations.render(sql, self.dialect.name)
                if rendered is not None:
                    for stmt in migrations.split_statements(rendered):
                        self._execute(conn, stmt)
                self._execute(conn, "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                              (version, name, datetime.utcnow()))
                applied.append(f"{version:04d}_{name}")
            if not self._fetchall(conn, "SELECT 1 FROM ref_disposable_domains LIMIT 1"):
                from disposable_email_domains import blocklist
                self._bulk_insert(conn, "ref_disposable_domains", ("domain",),
                                  [(d,) for d in sorted(blocklist)], conflict="ignore")
        return applied

    def schema_version(self) -> int:
        rows = self.query("SELECT max(version) FROM schema_migrations")
        return rows[0][0] or 0

    # ---- ingestion: every write of one call is one transaction
    def ingest(self, events: Iterable[Event], log_position: tuple[str, int] | None = None) -> IngestResult:
        """Store ``events`` (a stored messageId is skipped) in one transaction. ``log_position``
        (log id, sequence number): the ingestion log entry they end at, recorded in the same
        transaction (``ingest_log_position``) so a restart replays exactly what follows it."""
        events = list(events)
        with self._lock, self.transaction() as conn:
            return self._ingest(conn, events, log_position)

    def ingest_log_position(self, log_id: str) -> int:
        """The sequence number ``log_id`` has been applied up to (0: nothing yet); registers the log."""
        with self._lock, self.transaction() as conn:
            rows = self._fetchall(conn, "SELECT seq FROM ingest_log_position WHERE log_id = ?", (log_id,))
            if rows:
                return int(rows[0][0])
            self._execute(conn, "INSERT INTO ingest_log_position (log_id, seq) VALUES (?, 0)", (log_id,))
            return 0

    def _ingest(self, conn: Any, events: list[Event], log_position: tuple[str, int] | None = None) -> IngestResult:
        if log_position is not None:
            # the row exists (ingest_log_position registered the log): a plain UPDATE, no conflict check
            self._execute(conn, "UPDATE ingest_log_position SET seq = ? WHERE log_id = ?",
                          (log_position[1], log_position[0]))
        if not events:
            return IngestResult(0, 0, [], set())
        # A batch may repeat a messageId (a client retrying inside one batch): keep the first.
        seen: dict[str, Event] = {}
        for ev in events:
            seen.setdefault(ev.message_id, ev)
        unique = list(seen.values())
        self._local_last_seq = None
        new_ids = self._insert_events(conn, unique)
        seqs = [self._local_last_seq] if new_ids and self._local_last_seq is not None else []
        if len(new_ids) == len(unique):
            fresh = unique
        else:
            new_set = set(new_ids)
            fresh = [e for e in unique if e.message_id in new_set]
        touched = self._apply_identity_and_traits(conn, fresh)
        return IngestResult(len(events), len(new_ids), new_ids, touched, seqs)

    def _insert_events(self, conn: Any, events: list[Event], no_duplicates: bool = False) -> list[str]:
        """Insert the events whose messageId is not stored yet; returns their ids (each batch's
        messageIds are already unique). ``no_duplicates``: a plain INSERT, which fails on a stored
        messageId (a backend that pays much for the conflict check tries that first)."""
        if not events:
            return []
        # One commit number per transaction: the score of a lead can then say which messages it
        # counted (leadscore.engine.partial merges a batch into a cache row by it).
        seq = int(self._fetchall(conn, "SELECT nextval('events_seq')")[0][0])
        self._pending_seq(seq)
        rows = [e.stored_row() + (seq,) for e in events]
        columns = (*STORED_EVENT_COLUMNS, "seq")
        if no_duplicates:
            self._bulk_insert(conn, "events", columns, rows, conflict="plain")
            return [e.message_id for e in events]
        inserted = self._bulk_insert(conn, "events", columns, rows, conflict="ignore", returning="message_id")
        return [r[0] for r in inserted]

    # ---- commit numbers: which ingest transactions have committed (DuckDB publishes them at commit)
    def _pending_seq(self, seq: int) -> None:
        if self.committed_seq is not None:
            self._local_seqs().append(seq)
        self._local_last_seq = seq

    def _local_seqs(self) -> list[int]:
        local = getattr(self, "_local", None)
        if local is None:
            return []
        if not hasattr(local, "seqs"):
            local.seqs = []
        return local.seqs

    def _publish_seqs(self, committed: bool) -> None:
        """At the outermost commit (or rollback) of a transaction: its ingest numbers become visible."""
        seqs = self._local_seqs()
        if committed and seqs:
            with self._lock:
                self._seq_commits.extend(seqs)
                self.committed_seq = max(self.committed_seq or 0, *seqs)
        seqs.clear()

    def committed_seqs(self, after: int, upto: int) -> set[int] | None:
        """The commit numbers in (after, upto] of ingest transactions committed through this store
        object; None when it does not track them or no longer holds that far back."""
        if self.committed_seq is None:
            return None
        with self._lock:
            held = list(self._seq_commits)
        if len(held) == self._seq_commits.maxlen and held and held[0] > after:
            return None
        return {s for s in held if after < s <= upto}

    def _apply_identity_and_traits(self, conn: Any, events: list[Event]) -> set[str]:
        lead_rows: dict[str, datetime] = {}
        links: list[tuple[str, str, datetime]] = []       # (alias_id, lead_id, ts)
        traits: dict[tuple[str, str], tuple] = {}          # (lead, key) -> row, newest wins
        acct: dict[tuple[str, str], tuple] = {}

        def put(store: dict, owner: str, key: str, value: Any, ev: Event) -> None:
            text = None if value is None else (value if isinstance(value, str) else json.dumps(value))
            num = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            if num is None and isinstance(value, str):
                try:
                    num = float(value)
                except ValueError:
                    num = None
            if num is not None and num != num:  # NaN is not a number we keep
                num = None
            row = (owner, key, text, num, ev.ts, ev.message_id)
            old = store.get((owner, key))
            if old is None or (ev.ts, ev.message_id) > (old[4], old[5]):
                store[(owner, key)] = row

        for ev in events:
            if ev.user_id:
                lead_rows[ev.user_id] = min(ev.ts, lead_rows.get(ev.user_id, ev.ts))
                if ev.anonymous_id and ev.anonymous_id != ev.user_id:
                    links.append((ev.anonymous_id, ev.user_id, ev.ts))
            owner = ev.user_id or ev.anonymous_id
            if ev.type == "alias" and ev.previous_id and ev.user_id and ev.previous_id != ev.user_id:
                links.append((ev.previous_id, ev.user_id, ev.ts))
            if ev.type == "identify":
                for key, value in flatten_traits(ev.properties).items():
                    put(traits, owner, key, value, ev)
            if ev.type == "group" and ev.group_id:
                for key, value in flatten_traits(ev.properties).items():
                    put(acct, ev.group_id, key, value, ev)
            if ev.group_id and ev.type in ("group", "identify", "track", "page"):
                put(traits, owner, "account_id", ev.group_id, ev)
            ua = ev.context.get("userAgent") if isinstance(ev.context, dict) else None
            if isinstance(ua, str) and ua:
                put(traits, owner, "browser", browser_of(ua), ev)

        if lead_rows:
            self._bulk_insert(conn, "leads", ("lead_id", "created_at"), sorted(lead_rows.items()), conflict="ignore")
        self._link_many(conn, links)
        if traits:
            self._upsert_newest(conn, "lead_traits", "lead_id", list(traits.values()))
        if acct:
            self._upsert_newest(conn, "account_traits", "account_id", list(acct.values()))
        touched = set(lead_rows)
        touched.update(lead for _, lead, _ in links)
        touched.update(owner for owner, _ in traits)
        return self.resolve_leads(conn, touched)

    def _link_many(self, conn: Any, links: list[tuple[str, str, datetime]]) -> None:
        """Record that each alias_id means lead_id, for a whole batch in a few set-based statements.

        An id belongs to the lead it was first linked to (the earliest link wins); chains are kept one
        hop deep (a → b, b → c gives a → c and b → c); a link that would close a cycle is dropped.
        """
        if not links:
            return
        earliest: dict[str, tuple[datetime, str]] = {}
        for alias_id, lead_id, ts in links:
            if alias_id != lead_id and (alias_id not in earliest or (ts, lead_id) < earliest[alias_id]):
                earliest[alias_id] = (ts, lead_id)
        ids = sorted(set(earliest) | {lead for _, lead in earliest.values()})
        mapping: dict[str, tuple[str, datetime]] = {}   # alias → (lead, ts): stored rows, then this batch's
        for alias_id, lead_id, ts in self._fetch_in(
                conn, "SELECT alias_id, lead_id, ts FROM identities WHERE alias_id IN {ids} OR lead_id IN {ids}", ids):
            mapping[alias_id] = (lead_id, ts)
        before = dict(mapping)

        def final(x: str) -> str:
            seen = {x}
            while x in mapping:
                x = mapping[x][0]
                if x in seen:
                    break
                seen.add(x)
            return x

        for alias_id, (ts, lead_id) in sorted(earliest.items(), key=lambda kv: (kv[1][0], kv[0])):
            old = mapping.get(alias_id)
            if old is not None and old[1] <= ts:
                continue  # linked earlier to someone: that link stands
            if final(lead_id) == alias_id:
                continue  # would close a cycle
            mapping[alias_id] = (lead_id, ts)
        flat = {a: (final(a), ts) for a, (_, ts) in mapping.items()}
        changed = [(a, lead, ts) for a, (lead, ts) in flat.items() if before.get(a) != (lead, ts) and a != lead]
        if not changed:
            return
        self._fetch_in(conn, "DELETE FROM identities WHERE alias_id IN {ids} RETURNING alias_id", [a for a, _, _ in changed])
        self._bulk_insert(conn, "identities", ("alias_id", "lead_id", "ts"), changed, conflict="plain")

    def _upsert_newest(self, conn: Any, table: str, owner_col: str, rows: list[tuple]) -> None:
        cols = (owner_col, "key", "value", "num", "ts", "message_id")
        self._bulk_insert(conn, table, cols, rows, conflict=f"newest:{owner_col},key")

    def resolve_leads(self, conn: Any, ids: Iterable[str]) -> set[str]:
        ids = [i for i in ids if i]
        if not ids:
            return set()
        mapped = dict(self._fetch_in(conn, "SELECT alias_id, lead_id FROM identities WHERE alias_id IN {ids}", ids))
        return {mapped.get(i, i) for i in ids}

    def add_leads(self, rows: list[tuple[str, dict[str, Any], datetime]], source: str = "import") -> int:
        """Create or update leads from an import (CSV export of a CRM): (lead_id, traits, as of)."""
        traits: dict[tuple[str, str], tuple] = {}
        for lead_id, values, ts in rows:
            for key, value in flatten_traits(values).items():
                text = None if value is None else str(value)
                try:
                    num = float(value) if value is not None and not isinstance(value, bool) else None
                except (TypeError, ValueError):
                    num = None
                if num is not None and num != num:
                    num = None
                traits[(lead_id, key)] = (lead_id, key, text, num, ts, f"{source}:{lead_id}")
        with self._lock, self.transaction() as conn:
            self._bulk_insert(conn, "leads", ("lead_id", "created_at"),
                              [(lead_id, ts) for lead_id, _, ts in rows], conflict="ignore")
            if traits:
                self._upsert_newest(conn, "lead_traits", "lead_id", list(traits.values()))
                # Traits written without a message: the live rule cache of these leads no longer holds
                # (a merged re-score reads trait rules from it; leadscore.engine.partial).
                leads = sorted(self.resolve_leads(conn, {lead for lead, _ in traits}))
                self._fetch_in(conn, "DELETE FROM live_rule_cache WHERE lead_id IN {ids} RETURNING lead_id", leads)
        return len(rows)


def open_store(url: str | None = None, migrate: bool = True) -> Store:
    """A store from a URL: a DuckDB path (default ``leadscore.duckdb``) or ``postgresql://…``."""
    url = url or "leadscore.duckdb"
    if url.startswith(("postgresql://", "postgres://")):
        from leadscore.store.postgres import PostgresStore
        store: Store = PostgresStore(url)
    else:
        from leadscore.store.duckdb import DuckDBStore
        store = DuckDBStore(url.removeprefix("duckdb://"))
    if migrate:
        store.migrate()
    return store
