"""The shared store: PostgreSQL through psycopg 3 (COPY for bulk loads)."""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import psycopg
import pyarrow as pa

from leadscore.store.base import Store, StoreUnavailable
from leadscore.store.dialect import POSTGRES

_JSON_COLS = {"properties", "context", "groups", "rules"}
# Tables the ingest path writes, whose rows hold one Python type per column (what an array
# parameter needs): small groups go in as unnest() arrays, larger ones through a staging table.
_UNNEST_TABLES = frozenset({"events", "leads", "identities", "lead_traits", "account_traits"})
_UNNEST_MAX_ROWS = 16
_PLACEHOLDER = re.compile(r"\?(?=(?:[^']*'[^']*')*[^']*$)")  # a ? outside quoted literals


def _pg(sql: str) -> str:
    sql = sql.replace("%", "%%")
    return _PLACEHOLDER.sub("%s", sql)


class PostgresStore(Store):
    dialect = POSTGRES

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self._local = threading.local()
        self._types: dict[str, dict[str, str]] = {}   # table → column → SQL type (for unnest arrays)
        self._connect()

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, connect_timeout=5, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.url} is unavailable: {exc}") from exc
        self._local.conn = conn
        return conn

    @property
    def conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
        return conn

    def _execute(self, conn, sql, params=None):
        return conn.execute(_pg(sql), params or None)

    def _fetchall(self, conn, sql, params=None):
        return conn.execute(_pg(sql), params or None).fetchall()

    def _fetch_in(self, conn, sql, ids):
        # One array parameter instead of one parameter per id.
        return conn.execute(sql.replace("{ids}", "(SELECT unnest(%(ids)s::text[]))"), {"ids": list(ids)}).fetchall()

    def _staged(self) -> dict[str, set[str]]:
        """This connection's staging tables: created (and committed) ones, those used in this transaction."""
        staged = getattr(self._local, "staged", None)
        if staged is None or staged["conn"] is not self._local.conn:
            staged = self._local.staged = {"conn": self._local.conn, "created": set(), "used": set()}
        return staged

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        conn = self.conn
        outermost = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if outermost:
            self._staged()["used"].clear()
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            self._forget_stages()
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        except BaseException:
            self._forget_stages()   # a rolled-back CREATE TEMP TABLE is gone
            raise
        finally:
            if outermost:
                self._staged()["used"].clear()

    def _forget_stages(self) -> None:
        staged = getattr(self._local, "staged", None)
        if staged is not None:
            staged["created"].clear()

    def _bulk_insert(self, conn, table, columns, rows, conflict="ignore", returning=None):
        if not rows:
            return []
        cols = ", ".join(columns)
        if table in _UNNEST_TABLES and len(rows) <= _UNNEST_MAX_ROWS:
            # A small group (the /v1/track load): the rows as one typed array per column, in one
            # statement; COPY's extra round trips cost more than it saves below a few dozen rows.
            types = self._column_types(conn, table, columns)
            source = "unnest(" + ", ".join(f"%s::{t}[]" for t in types) + f") AS s ({cols})"
            try:
                return self._insert_from(conn, table, columns, source, [list(c) for c in zip(*rows)],
                                         conflict, returning)
            except psycopg.DataError as exc:
                # a column mixing Python types (int and float traits, say) cannot be one array
                # parameter; the error is raised while dumping, before anything reached the server
                if "cannot dump lists of mixed types" not in str(exc):
                    raise
        stage = f"_stage_{table}"
        # The staging table lives as long as the connection and empties itself at commit, so it is
        # created and truncated only when needed: a CREATE IF NOT EXISTS and a TRUNCATE (a new
        # relfilenode) cost ~1 ms each, more than a small group's whole INSERT.
        staged = self._staged()
        if stage not in staged["created"]:
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS")
            staged["created"].add(stage)
        if stage in staged["used"]:
            conn.execute(f"TRUNCATE {stage}")
        staged["used"].add(stage)
        with conn.cursor().copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return self._insert_from(conn, table, columns, stage, None, conflict, returning)

    def _insert_from(self, conn, table, columns, source, params, conflict, returning):
        cols = ", ".join(columns)
        keys = {"events": "message_id", "leads": "lead_id", "identities": "alias_id",
                "ref_disposable_domains": "domain"}.get(table)
        if conflict == "ignore":
            tail = f"ON CONFLICT ({keys}) DO NOTHING" if keys else "ON CONFLICT DO NOTHING"
        elif conflict.startswith("newest:"):
            key_cols = conflict[7:]
            sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key_cols.split(","))
            tail = (f"ON CONFLICT ({key_cols}) DO UPDATE SET {sets} WHERE excluded.ts > {table}.ts "
                    f"OR (excluded.ts = {table}.ts AND excluded.message_id > {table}.message_id)")
        else:
            tail = ""
        sql = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {source} {tail}"
        if returning:
            sql += f" RETURNING {returning}"
            return conn.execute(sql, params).fetchall()
        conn.execute(sql, params)
        return []

    def _column_types(self, conn, table: str, columns: Sequence[str]) -> list[str]:
        types = self._types.get(table, {})
        if any(c not in types for c in columns):
            types = dict(conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (table,)).fetchall())
            self._types[table] = types
        return [types[c] for c in columns]

    def query_arrow(self, sql, params=None):
        with self.transaction() as conn:
            cur = conn.execute(_pg(sql), params or None)
            names = [d.name for d in cur.description] if cur.description else []
            rows = cur.fetchall()
        return pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)}) if names else pa.table({})

    def query_analytic(self, sql, relations=None):
        # The scoring query stacks ~200 CTEs whose row counts PostgreSQL cannot estimate; with nested
        # loops allowed it picks them over CTE scans and goes quadratic (2,000 leads: > 300 s with,
        # 4.4 s without, measured). Hash and merge joins are the right plan for this whole-set work.
        # JIT off: the query's cost estimate is high enough to trigger it, and compiling ~80 CTEs took
        # 2.8 s of a 3.5 s re-score of 300 leads (EXPLAIN ANALYZE: "Emission 2549 ms").
        if relations:
            raise NotImplementedError("the PostgreSQL store reads no registered relations")
        with self.transaction() as conn:
            conn.execute("SET LOCAL enable_nestloop = off")
            conn.execute("SET LOCAL jit = off")
            cur = conn.execute(sql)
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
        return pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)})

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
