"""The embedded store: one DuckDB file (``leadscore.duckdb`` by default)."""
from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import duckdb
import pyarrow as pa

from leadscore.store.base import Store, StoreUnavailable
from leadscore.store.dialect import DUCKDB

_JSON_COLS = {"properties", "context", "groups", "rules"}
# query_arrow fetches Arrow from execute() on purpose (see there): DuckDB's advice to use conn.sql() instead.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)
_SMALL_IN = 32   # up to this many ids, _fetch_in binds them as parameters
# DuckDB 2.0's CTE filter pusher copies the OR of every consumer's filter into a CTE that many read: in the
# scoring query, ``ev`` is read by ~20 rules, so each message then evaluates every rule's condition once more
# (TRY_CASTs and LIKEs included) to drop a handful of rows: 1.1 of 8.7 CPU-s on 200,000 demo leads. The
# scoring query runs without it (typed log 8.7 -> 7.5 CPU-s, JSON 11.3 -> 10.2, same rows).
SCORING_DISABLED_OPTIMIZERS = ("cte_filter_pusher",)
# DuckDB checkpoints the store once its WAL passes this size (DuckDB's default: 16 MB). Live scoring under
# 20,000 events/s writes ~8 MB/s of WAL, so at 16 MB every other pass's commit paid a checkpoint (0.27-0.71 s
# each, bench/RESULTS.md session 7); at 256 MB one comes every ~30 s. bench/freshness_bench.py, 60 s at 20,000
# events/s, each run alone: server freshness p99 5.5 and 6.2 s at 16 MB, 3.4, 4.9 and 4.2 s at 256 MB, writing
# 8-10 s against 6-8 s. The cost: a process that dies uncleanly replays up to this much WAL when it opens the
# store again (200 MB, 1,040,000 page events: 1.1 s), and the rows not yet checkpointed are held in memory until
# then; a clean close checkpoints. tests/store/test_duckdb_checkpoint.py checks the threshold and the replay.
CHECKPOINT_THRESHOLD = "256MB"


def scoring_optimizers(current: str) -> str:
    """The ``disabled_optimizers`` value for the scoring query: ``current``'s plus ours."""
    names = [n.strip() for n in (current or "").split(",") if n.strip()]
    return ",".join(dict.fromkeys([*names, *SCORING_DISABLED_OPTIMIZERS]))


def _newest_update(table: str, keys: str, columns: Sequence[str]) -> str:
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys.split(","))
    return (f"ON CONFLICT ({keys}) DO UPDATE SET {sets} "
            f"WHERE excluded.ts > {table}.ts OR (excluded.ts = {table}.ts AND excluded.message_id > {table}.message_id)")


class DuckDBStore(Store):
    dialect = DUCKDB

    def __init__(self, path: str):
        super().__init__()
        self.url = path
        try:
            self._root = duckdb.connect(path)
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot open DuckDB file {path}: {exc}") from exc
        # Answer an indexed lookup from the index while it matches under 0.5% of the table (default
        # 0.1%): a targeted re-score of a few hundred leads fetches their ~15,000 scattered messages
        # from 4.8M through the index in a third of the time a scan of the log takes.
        self._root.execute("SET index_scan_percentage = 0.005")
        self._root.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        self._local = threading.local()
        # disabled_optimizers is a setting of the whole database, not of a cursor: scoring queries running
        # at once share one change of it, undone when the last ends (query_analytic).
        self._scoring_lock = threading.Lock()
        self._settings = self._root.cursor()   # used under _scoring_lock only
        self._scoring_queries = 0
        self._optimizers_before = ""

    def migrate(self) -> list[str]:
        applied = super().migrate()
        # Commit numbers are tracked from here on (one process owns a DuckDB file).
        self.committed_seq = int(self.query("SELECT COALESCE(max(seq), 0) FROM events")[0][0])
        return applied

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        """A cursor per thread: DuckDB connections are not shared across threads."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._root.cursor()
            self._local.cursor = cur
        return cur

    def _execute(self, conn, sql, params=None):
        return conn.execute(sql, params or [])

    def _fetchall(self, conn, sql, params=None):
        return conn.execute(sql, params or []).fetchall()

    def _fetch_in(self, conn, sql, ids):
        ids = list(ids)
        if 0 < len(ids) <= _SMALL_IN:
            # A few bound parameters: one call into DuckDB instead of three (register, query, unregister).
            # ($1, $2, ...): numbered, so a query naming {ids} twice binds them once
            return conn.execute(sql.replace("{ids}", "(" + ", ".join(f"${i}" for i in range(1, len(ids) + 1)) + ")"),
                                ids).fetchall()
        # A registered Arrow column instead of thousands of bound parameters (slow to plan in DuckDB).
        conn.register("_ids_param", pa.table({"v": pa.array(ids, pa.string())}))
        try:
            return conn.execute(sql.replace("{ids}", "(SELECT v FROM _ids_param)")).fetchall()
        finally:
            conn.unregister("_ids_param")

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        conn = self.conn
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        self._local.depth = 1
        committed = False
        conn.execute("BEGIN TRANSACTION")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
            committed = True
        finally:
            self._local.depth = 0
            self._publish_seqs(committed)

    def _bulk_insert(self, conn, table, columns, rows, conflict="ignore", returning=None):
        if not rows:
            return []
        arrays = list(zip(*rows))
        stage = pa.table({c: pa.array(list(v)) if any(x is not None for x in v) else pa.array(list(v), pa.string())
                          for c, v in zip(columns, arrays)})
        cols = ", ".join(columns)
        select = ", ".join(f"CAST({c} AS JSON)" if c in _JSON_COLS else c for c in columns)
        if conflict == "ignore":
            sql = f"INSERT OR IGNORE INTO {table} ({cols}) SELECT {select} FROM _ls_stage"
        elif conflict.startswith("newest:"):
            sql = f"INSERT INTO {table} ({cols}) SELECT {select} FROM _ls_stage " + _newest_update(table, conflict[7:], columns)
        else:
            sql = f"INSERT INTO {table} ({cols}) SELECT {select} FROM _ls_stage"
        if returning:
            sql += f" RETURNING {returning}"
        # Registered, not read by DuckDB's replacement scan (a Python variable named in the SQL): the
        # scan looks the name up through Python frames, taking the GIL again and again, and in the
        # service each take waits for the busy event loop. Measured beside a spinning Python thread
        # (same run, store.ingest into 100,000 events): the spinning thread got 7-19 % more done with
        # the stage registered, at equal transaction times (100 and 5,000 events); in a bare loop a
        # 100-row INSERT by replacement scan took 83-253 ms against 10-22 ms registered. Alone, the
        # scan was 30-40 % cheaper for small groups (one call into DuckDB instead of three).
        conn.register("_ls_stage", stage)
        try:
            out = conn.execute(sql).fetchall() if returning else conn.execute(sql) and []
        except BaseException:
            try:   # in an aborted transaction this fails too; the next register replaces the name
                conn.unregister("_ls_stage")
            except duckdb.Error:
                pass
            raise
        conn.unregister("_ls_stage")
        return out

    # ---- ingestion: events go in with a plain INSERT, and only a duplicate messageId pays for
    # INSERT OR IGNORE. DuckDB's conflict check costs ~4 ms per statement (measured: 7.1 ms for a
    # one-row INSERT OR IGNORE … RETURNING into events against 3.2 ms plain), more than the rest of
    # a small group's transaction; duplicates are rare (a client's retry), so the group is first
    # written as if it had none, and redone with the conflict check when the primary key says it has.
    def ingest(self, events, log_position=None):
        events = list(events)
        with self._lock:
            if getattr(self._local, "depth", 0):        # inside a caller's transaction: no redo possible
                with self.transaction() as conn:
                    return self._ingest(conn, events, log_position)
            self._local.optimistic = True
            try:
                with self.transaction() as conn:
                    return self._ingest(conn, events, log_position)
            except duckdb.ConstraintException:
                pass                                     # rolled back; redo skipping stored messageIds
            finally:
                self._local.optimistic = False
            with self.transaction() as conn:
                return self._ingest(conn, events, log_position)

    def _insert_events(self, conn, events, no_duplicates=False):
        return super()._insert_events(conn, events, no_duplicates or getattr(self._local, "optimistic", False))

    def query_analytic(self, sql, relations=None):
        with self._scoring_lock:
            if self._scoring_queries == 0:
                self._optimizers_before = self._settings.execute(
                    "SELECT current_setting('disabled_optimizers')").fetchone()[0]
                self._settings.execute(f"SET disabled_optimizers = '{scoring_optimizers(self._optimizers_before)}'")
            self._scoring_queries += 1
        try:
            with self.transaction() as conn:
                for name, table in (relations or {}).items():
                    conn.register(name, table)
                try:
                    return conn.execute(sql).to_arrow_table()
                finally:
                    for name in relations or {}:
                        conn.unregister(name)
        finally:
            with self._scoring_lock:
                self._scoring_queries -= 1
                if self._scoring_queries == 0:
                    self._settings.execute(f"SET disabled_optimizers = '{self._optimizers_before}'")

    def query_arrow(self, sql, params=None):
        # execute(), not the relation API (conn.sql): DuckDB 2.0's relation API tokenizes the SQL text in
        # Python first, ~0.1 s for the ~20 KB scoring query: a third of a live re-score of 50 leads
        # (0.27 -> 0.17 s). The extra copy of the rows it warns about is small at a store query's size.
        with self.transaction() as conn:
            return conn.execute(sql, list(params) if params else None).to_arrow_table()

    def close(self) -> None:
        self._settings.close()
        self._root.close()
