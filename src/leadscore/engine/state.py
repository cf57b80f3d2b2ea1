"""Incremental scoring of a Parquet event log from the state its last run persisted (issue #7).

A full run with a state directory writes ``DIR/state.duckdb``, one DuckDB file holding

* ``ev``: the rule-read rows (``Compiled.events_sql``: lead, message, ts, type, event, name and the
  properties the rules read, already extracted to text) of every message, whatever its time;
* ``trait_rows`` / ``account_rows``: (owner, key, value, ts, message_id) of the lead traits the model
  reads (identify traits, ``account_id`` from group ids when the model reads a lead's account,
  ``browser`` from user agents) and of the
  accounts' traits (group calls): for each (owner, key) only the newest row at or before the run's
  instant is kept, plus every later row, which is all a later instant can pick from;
* ``population``: every lead id of the log; ``video_ev``: the video events' typed columns (only for
  a model with video rules); ``ev``, ``trait_rows`` and ``video_ev`` are clustered by lead (in the
  log's order when it is, else sorted: ``_cluster``);
* ``lead_next``: per lead, the first instant after the run's at which its score can change with no
  new message: its next message consumed ahead of its time, its next edge crossing (``next_change_sql``);
* ``scores``: the last result, one row per lead; ``files``: the log's files consumed (absolute path,
  size, mtime in ns: a file rewritten with the same size and mtime would go unnoticed); ``meta``:
  the model version, the instant, the log, a digest of the other inputs (video catalog,
  disposable-domain list) and of the staging SQL, and the run number; ``rescored``: the last
  incremental run's leads and why (empty after a full run).

A later run with that state reads only the log's new files (new messages land as new Parquet files:
time-partitioned exports, our own writer), stages their rows the same way and appends them, finds
the leads whose score can have changed from the state alone (never the raw log):

* every lead with a message in a new file (new leads, new events, late arrivals, new traits);
* every lead whose ``lead_next`` instant is reached: a staged message or trait in ``(t1, t2]`` (consumed
  before its time had come), or an event that time moved across an edge of the model: a window, a
  decay step, an inactivity threshold or a stage's ``within`` (``leadscore.engine.incremental``'s
  edges; a rule with a continuous half-life decay re-scores every lead with a matching event, so
  write decays as steps where incremental runs matter: ``incremental.half_lives_as_steps``);
* when the model reads account traits, every member of an account with a new group call (or one
  consumed before its time);

re-scores those leads from a copy of their rows (the same compiled query, over views of them; the copy is
made under a memory limit sized to it on a connection of the run's own: ``_copy_memory``), and
replaces their rows of ``scores`` and ``lead_next``. It returns the re-scored leads' rows
(``StateRun.rows``, in a full run's order: score descending, then lead_id), not the whole table: reading
a million rows back from ``scores`` cost more than the rest of a 1%-changed run. The whole table, which
equals a full run of the whole log at the new instant on every lead and column
(tests/engine/test_state.py, JSON and typed logs), is read from the state on demand
(``StateRun.frame``; ``StateRun.top(n)`` for the first n leads only).

A full run is made instead, with the reason, when there is no state, the model version, the log's
path, the other inputs or the engine's staging differ, the instant is earlier than the state's, or a consumed file was
changed or removed (a rewritten file's messages cannot be told apart from the ones already staged).

Crash safety: a full run writes ``state.duckdb.new`` (rewritten as ``.new.sorted`` when its rows need
sorting) and renames it over ``state.duckdb`` only once it is complete and checkpointed (a rename is
atomic; a leftover ``.new`` or ``.new.sorted`` is removed by the next full run). An incremental run
writes only temp tables until everything is computed, then makes all its changes to the state (rows
appended, scores and lead_next replaced, files, instant) in one DuckDB transaction: a crash before the
commit leaves the previous state (DuckDB ignores an uncommitted transaction's WAL records when it next
opens the file), a crash after it the new one; the file is checkpointed right after the commit (without
merging row groups but every ``COMPACT_EVERY``-th run: ``_checkpoint``). A run that fails (an unreadable
new file, say) leaves the state as it was (tests/engine/test_state.py). Two runs on one state at once:
DuckDB's file lock refuses the second.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from leadscore.engine.compile import Sources, compile_model
from leadscore.engine.incremental import _edges, _match, _ts, video_event_match
from leadscore.engine.parquet import (ORDER, PREDICTIONS_SCHEMA, _newest, _run, _trait_rows_sql, copy_scores,
                                      browser_table, catalog_table, check_columns, disposable_table, lead_range_sql,
                                      log_access, log_relation, log_rows, log_views, memory_limit_bytes,
                                      model_trait_keys, open_duckdb, parquet_files, register_log,
                                      rows_per_range)
from leadscore.engine.score import _frame, to_naive_utc
from leadscore.model.schema import Model
from leadscore.store.dialect import DUCKDB, quote_literal

# 2: no account_id trait rows for a model that never reads a lead's account (format 1 kept one per lead).
STATE_FORMAT = 2
STATE_FILE = "state.duckdb"
# The instant the rows are staged for: every message, whatever its time (a later run may reach it).
UNBOUNDED = datetime(9999, 12, 31)
STATE_SOURCES = Sources(events="ls_s_events", traits="ls_s_traits", account_traits="ls_s_account_traits",
                        population="ls_s_population", catalog="video_catalog", predictions="lead_predictions")


COMPACT_EVERY = 8    # incremental runs between two checkpoints that merge row groups (see _checkpoint)


@dataclass
class StateRun:
    """One run's outcome. ``rows``: the leads this run scored, in a full run's order (every lead for
    a full run; the re-scored leads for an incremental one, whose other leads keep the rows they had).
    ``frame``: every lead, as a full run of the whole log as of the run's instant gives; for an
    incremental run it is read from the state file on first use (a full run's is ``rows``), so a run
    whose caller needs only the changed leads does not read back the whole table. ``top(n)``: the
    first n leads of ``frame`` without reading the rest; ``write(out)``: ``frame`` to a Parquet file,
    written by DuckDB from the state. All three refuse once a later run has changed the state (its
    scores are then of another instant)."""

    rows: pd.DataFrame
    full: bool                          # True: a full run (the reason says why); False: incremental
    reason: str
    rescored: int                       # leads scored by this run (all of them for a full run)
    leads: int                          # leads in the result
    new_files: list[str] = field(default_factory=list)   # log files read by this run
    new_rows: int = 0                   # messages in them
    why: dict[str, int] = field(default_factory=dict)    # incremental: re-scored leads per cause
    model: Model | None = field(default=None, repr=False)
    state: Path | None = None           # the state file the run left
    run: int = 0                        # the state's run number after this run (0: a full run)
    run_id: str = ""                    # this run's id in the state's meta (a later run writes its own)
    compacted: bool = False             # incremental: its checkpoint merged row groups (see _checkpoint)
    _all: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def frame(self) -> pd.DataFrame:
        if self._all is None:
            self._all = self._read(None)
        return self._all

    def top(self, n: int) -> pd.DataFrame:
        if self._all is not None:
            return self._all.head(n)
        return self._read(max(0, int(n)))

    def write(self, out: str | Path) -> int:
        """Every lead's row (``frame``) to the Parquet file ``out``; returns the number of leads. For an
        incremental run DuckDB writes them from the state file (``engine.parquet.copy_scores``: the frame's
        columns, types and order), so the whole table never comes to Python; a full run's rows are in hand."""
        if self.full or self._all is not None:
            self.frame.to_parquet(out, index=False)
            return len(self.frame)
        with self._this_runs_state() as conn:
            return copy_scores(conn, self.model, "scores", out)

    @contextmanager
    def _this_runs_state(self):
        """The state file, read-only, refused once a later run has changed it."""
        import duckdb
        with duckdb.connect(str(self.state), read_only=True) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("run_id") != self.run_id:
                raise RuntimeError(f"{self.state} has moved on (run {meta.get('run')} as of {meta.get('as_of')}) since "
                                   f"this run (run {self.run}): its scores are no longer this run's")
            yield conn

    def _read(self, limit: int | None) -> pd.DataFrame:
        if self.full:
            return self.rows
        with self._this_runs_state() as conn:
            sql = f"SELECT * FROM scores {ORDER}" + ("" if limit is None else f" LIMIT {limit}")
            return _frame(self.model, conn.sql(sql).to_arrow_table())


def state_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / STATE_FILE


def score_with_state(model: Model, events_path: str | Path, state_dir: str | Path, as_of: datetime,
                     catalog: str | Path | None = None, conn=None, memory_limit: str | None = None,
                     threads: int | None = None, temp_dir: str | None = None,
                     partitions: int | None = None, stage: bool | None = None) -> StateRun:
    """Score a Parquet event log (a folder of files, or one file) as of ``as_of``, incrementally from
    the state in ``state_dir`` when it allows, else fully (writing the state); see the module doc.
    A full run's ``partitions``: how many lead ranges it scores one after the other (None: as many as
    memory needs, ``_full``; the ranges: ``_lead_ranges``); it scores
    from the rows it has just staged for the state, or with ``stage=False`` straight from the log's
    files (slower: measured on 200,000 leads / 9.6M typed messages, 14.1 s against 11.7 s, as the
    log is read twice). Either way the state is written."""
    as_of = to_naive_utc(as_of)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(state_dir)
    log = os.path.abspath(str(events_path))
    files = {os.path.abspath(f): _stat(f) for f in parquet_files(events_path)}
    own = conn is None
    conn = conn or open_duckdb(memory_limit, threads, temp_dir)
    # How to put back the memory limit of a connection of our own once an incremental run's copies are made
    # (``_copy_memory``); a caller's connection keeps its limit (DuckDB reads it back only rounded).
    restore = (f"SET memory_limit = {quote_literal(memory_limit)}" if memory_limit else "RESET memory_limit") \
        if own else None
    try:
        refs = _register_references(conn, events_path, catalog) + "/" + _staging_fingerprint(model)
        why = f"no state in {state_dir} yet"
        if path.exists():
            _run(conn, f"ATTACH {quote_literal(str(path))} AS st")
            try:
                why = _full_needed(conn, model, as_of, log, refs, files)
                if why is None:
                    return _incremental(conn, model, as_of, log, files, path, restore)
            finally:
                _run(conn, "DETACH DATABASE IF EXISTS st")
        return _full(conn, model, as_of, log, refs, files, path, why, partitions, catalog, stage)
    finally:
        if own:
            conn.close()


# ----------------------------------------------------------------------------- inputs
def _stat(f: str) -> tuple[int, int]:
    s = os.stat(f)
    return s.st_size, s.st_mtime_ns


def _register_references(conn, events_path, catalog) -> str:
    """The video catalog, disposable domains and (empty) predictions as temp tables, as
    ``parquet.register_log`` makes them; returns a fingerprint of their contents (a change to them
    changes scores without a new message, so it forces a full run)."""
    tables = {"video_catalog": catalog_table(events_path, catalog), "ref_disposable_domains": disposable_table(),
              "lead_predictions": PREDICTIONS_SCHEMA.empty_table()}
    digest = hashlib.sha256()
    for name, table in tables.items():
        conn.register("ls_ref_arrow", table)
        _run(conn, f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM ls_ref_arrow")
        conn.unregister("ls_ref_arrow")
        digest.update(name.encode())
        digest.update(repr(table.to_pylist()).encode())
    return digest.hexdigest()[:16]


def _staging_fingerprint(model: Model) -> str:
    """A digest of the SQL that stages a JSON log's rows for ``model``: another version of the engine
    that extracts or names them otherwise cannot append to this state's tables."""
    views = log_views(DUCKDB, "raw", _ts(DUCKDB, UNBOUNDED), True, model_trait_keys(model), None).views
    events = compile_model(model, DUCKDB, UNBOUNDED, sources=Sources(events="ls_events")).events_sql
    return hashlib.sha256(repr((STATE_FORMAT, views, events)).encode()).hexdigest()[:16]


def _full_needed(conn, model: Model, as_of: datetime, log: str, refs: str,
                 files: dict[str, tuple[int, int]]) -> str | None:
    """Why the state cannot be carried forward to ``as_of`` (None: it can)."""
    try:
        meta = dict(_run(conn, "SELECT key, value FROM st.meta"))
        consumed = _run(conn, "SELECT path, size, mtime_ns FROM st.files")
    except Exception as exc:  # noqa: BLE001 - a file that is not a state (or an older format)
        return f"the state file cannot be read ({str(exc).splitlines()[0]})"
    if meta.get("format") != str(STATE_FORMAT):
        return f"the state has format {meta.get('format')}, this version writes {STATE_FORMAT}"
    if meta.get("model_version") != model.model_version:
        return f"the state was scored with model {meta.get('model_version')}, not {model.model_version}"
    if meta.get("log") != log:
        return f"the state is of the log {meta.get('log')}, not {log}"
    if meta.get("references") != refs:
        if meta.get("references", "").split("/")[-1] != refs.split("/")[-1]:
            return "the engine stages rows differently from when the state was written (leadscore changed)"
        return "the video catalog or the disposable-domain list changed since the state was written"
    last = datetime.fromisoformat(meta["as_of"])
    if as_of < last:
        return f"the instant {as_of:%Y-%m-%d %H:%M:%S} is before the state's ({last:%Y-%m-%d %H:%M:%S})"
    for p, size, mtime in consumed:
        if p not in files:
            return f"{p} was consumed by an earlier run and is gone from the log"
        if files[p] != (size, mtime):
            return f"{p} changed since an earlier run consumed it (size or modification time)"
    return None


# ----------------------------------------------------------------------------- staging
def _stage(conn, model: Model, files: list[str], log: str, prefix: str, compact_at: datetime | None) -> int:
    """The state's rows for the messages of ``files``, as tables ``{prefix}ev``, ``trait_rows``,
    ``account_rows``, ``population`` (and ``video_ev`` for video rules); returns the message count.
    ``compact_at``: keep of each (owner, key)'s trait rows only the newest at or before it and the
    later ones (the rows no instant from it on can pick are dropped)."""
    d = DUCKDB
    into_state = prefix.startswith("st.")        # a full run's tables (else a batch's temp tables)
    create = "CREATE TABLE " if into_state else "CREATE TEMP TABLE "
    raw, types = log_relation(conn, files)
    has_lead = check_columns(log, types)
    access = log_access(conn, log, types)
    far = _ts(d, UNBOUNDED)
    keys = model_trait_keys(model)
    views = log_views(d, raw, far, has_lead, keys, None, access=access)
    for name, sql in views.views:
        _run(conn, f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
    compiled = compile_model(model, d, UNBOUNDED, sources=Sources(events="ls_events", access=access))
    # The text columns typed as text whatever the files say: a column a file holds only nulls of may
    # be read as INTEGER, and the state's table must take a later file's text.
    text = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in ("lead_id", "message_id", "type", "event", "name"))
    _run(conn, f"{create}{prefix}ev AS SELECT * REPLACE ({text}) FROM ({compiled.events_sql}) s")

    def compacted(rows: str) -> str:
        if compact_at is None:
            return rows
        # One pass and a hash aggregate (not a window's sort: a user agent row per message can be most
        # of the log): per (owner, key) the newest row at or before the instant, by (ts, message_id)
        # as ``parquet._newest`` orders them, and the list of the later rows.
        at = _ts(d, compact_at)
        return (f"SELECT owner, key, r.value AS value, r.ts AS ts, r.message_id AS message_id FROM ("
                f"SELECT owner, key, unnest(list_prepend(newest, COALESCE(later, []))) AS r FROM ("
                f"SELECT owner, key, max(s) FILTER (WHERE s.ts <= {at}) AS newest, list(s) FILTER (WHERE s.ts > {at}) "
                f"AS later FROM (SELECT owner, key, {{'ts': ts, 'message_id': message_id, 'value': value}} AS s "
                f"FROM ({rows}) c WHERE ts IS NOT NULL) x GROUP BY owner, key) g) u WHERE r IS NOT NULL")

    def typed_rows(rows: str) -> str:
        return (f"SELECT CAST(owner AS VARCHAR) AS owner, CAST(key AS VARCHAR) AS key, CAST(value AS VARCHAR) AS value, "
                f"ts, CAST(message_id AS VARCHAR) AS message_id FROM ({rows}) r")

    lead_rows = "SELECT owner, key, value, ts, message_id FROM ls_trait_rows"
    if not _reads_account_id(model):
        # Every message's group_id gives an account_id row; a model without account traits never reads it
        # (compile reads it only for the account join), and a quarter of the trait rows then go.
        lead_rows += " WHERE key <> 'account_id'"
    trait_rows = typed_rows(compacted(lead_rows))
    if "browser" in keys:
        # Each message's user agent, its browser named in Python (uap-core) for the few distinct ones;
        # the newest wins among them and the identify traits alike (as ``parquet.lead_ua_sql`` + _newest).
        ua = access.text(d, "context", "userAgent")
        like = "" if access.typed("context") else " AND context LIKE '%userAgent%'"
        ua_rows = (f"SELECT owner, key, value, ts, message_id FROM (SELECT lead_id AS owner, 'browser' AS key, "
                   f"{ua} AS value, ts, message_id FROM ls_events WHERE lead_id IS NOT NULL AND ts <= {far}{like}) u "
                   f"WHERE value IS NOT NULL AND value <> ''")
        _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_ua_rows AS {compacted(ua_rows)}")
        uas = [r[0] for r in _run(conn, "SELECT DISTINCT value FROM ls_ua_rows")]
        conn.register("ls_ua_arrow", browser_table(uas))
        trait_rows += (" UNION ALL SELECT r.owner, r.key, u.browser, r.ts, r.message_id "
                       "FROM ls_ua_rows r JOIN ls_ua_arrow u ON u.ua = r.value")
    # The state's trait rows sorted by lead (a full run; 3M rows at 1M leads, no measurable cost: the whole
    # run 45.2 s against 44.8-46.2 s): an incremental run's copy of a changed lead's rows then reads fewer
    # of their blocks (JSON log, 1M leads: the run 1.40-1.43 against 1.53-1.56 s). A run's own rows are
    # appended as they come, a block of their own.
    order = " ORDER BY owner" if into_state else ""
    _run(conn, f"{create}{prefix}trait_rows AS SELECT * FROM ({trait_rows}) t{order}")
    if "browser" in keys:
        conn.unregister("ls_ua_arrow")
        _run(conn, "DROP TABLE ls_ua_rows")
    acct_keys = {k[len("account."):] for k in keys if k.startswith("account.")}
    acct_rows = _trait_rows_sql(d, "ls_group_msgs", "group_id", acct_keys, access)
    _run(conn, f"{create}{prefix}account_rows AS {typed_rows(compacted(acct_rows))}")
    _run(conn, f"{create}{prefix}population AS SELECT CAST(lead_id AS VARCHAR) AS lead_id FROM ls_population")
    if _uses_video(model):
        # The video reconstruction reads the typed video columns, never the properties/context text.
        _run(conn, f"{create}{prefix}video_ev AS SELECT * REPLACE (CAST(NULL AS VARCHAR) AS properties, "
                   f"CAST(NULL AS VARCHAR) AS context) FROM ls_events WHERE lead_id IS NOT NULL AND type = 'track' "
                   f"AND ts <= {far} AND ({video_event_match()})")
    return sum(log_rows(f) for f in files)


def _reads_account_id(model: Model) -> bool:
    """Whether the compiled query reads a lead's account_id: for the account join (the model reads
    account traits), when a rule or stage names it, or when no lead trait is read at all (the
    traits CTE then pivots account_id alone: ``compile_model``)."""
    named: set[str] = set()
    for rule in model.rules:
        if rule.kind == "trait" and rule.trait is not None:
            named |= rule.trait.referenced()
    for stage in model.stages:
        if stage.when is not None and stage.when.trait is not None:
            named |= stage.when.trait.referenced()
    return "account_id" in named or any(k.startswith("account.") for k in named) or \
        not any(not k.startswith("account.") for k in named)


def _uses_video(model: Model) -> bool:
    return any(r.video for r in model.rules)


# ----------------------------------------------------------------------------- scoring from the state
def _state_views(conn, model: Model, as_of: datetime, scope=None, schema: str = "st.") -> None:
    """Views of the state's tables (``{schema}ev`` ...) as the compiled query's sources (STATE_SOURCES)
    as of ``as_of``; ``scope``: column → a condition on it keeping only some leads (a partition)."""
    at = _ts(DUCKDB, as_of)
    lead = f" AND {scope('lead_id')}" if scope else ""
    owner = f" AND {scope('owner')}" if scope else ""
    keys = model_trait_keys(model)
    acct_keys = {k[len("account."):] for k in keys if k.startswith("account.")}
    views = {
        "ls_s_ev": f"SELECT * FROM {schema}ev WHERE ts <= {at}{lead}",
        "ls_s_traits": _newest(f"(SELECT * FROM {schema}trait_rows WHERE ts <= {at}{owner})", "lead_id", keys),
        "ls_s_account_traits": _newest(f"(SELECT * FROM {schema}account_rows WHERE ts <= {at})", "account_id",
                                       acct_keys),
        "ls_s_population": f"SELECT lead_id FROM {schema}population WHERE TRUE{lead}",
        "ls_s_events": (f"SELECT * FROM {schema}video_ev WHERE TRUE{lead}" if _uses_video(model)
                        else f"SELECT * FROM {schema}ev WHERE FALSE"),
    }
    for name, sql in views.items():
        _run(conn, f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")


def _scores_sql(model: Model, as_of: datetime) -> str:
    return compile_model(model, DUCKDB, as_of, sources=STATE_SOURCES, staged_events="ls_s_ev").sql


def _result(conn, model: Model, table: str = "st.scores") -> pd.DataFrame:
    return _frame(model, conn.sql(f"SELECT * FROM {table} {ORDER}").to_arrow_table())


# ----------------------------------------------------------------------------- the two runs
def _full(conn, model: Model, as_of: datetime, log: str, refs: str, files: dict[str, tuple[int, int]],
          path: Path, why: str, partitions: int | None, catalog, stage: bool | None) -> StateRun:
    """Stage the whole log into a new state file, score every lead from it, then put it in place."""
    new = path.with_name(path.name + ".new")
    for f in (new, Path(f"{new}.wal"), Path(f"{new}.sorted"), Path(f"{new}.sorted.wal")):   # a crashed run's
        f.unlink(missing_ok=True)
    _run(conn, f"ATTACH {quote_literal(str(new))} AS st")
    try:
        rows = _stage(conn, model, sorted(files), log, "st.", as_of)
        _cluster(conn, new, _LEAD_TABLES)
        _run(conn, f"CREATE TABLE st.lead_next AS {next_change_sql(model, as_of)}")
        _run(conn, "CHECKPOINT st")
        if partitions is None:
            # Lead partitions of the size a lead range of the plain run holds (rows_per_range), not the
            # one-pass limit: this run's per-lead state shares memory with the state file's own tables,
            # and at 48M messages one pass ran out of DuckDB's 3 GB.
            partitions = max(1, -(-rows // rows_per_range(memory_limit_bytes(conn))))
        if partitions <= 1 and stage is False:
            sources = register_log(conn, model, log, as_of, catalog)
            _run(conn, f"CREATE TABLE st.scores AS {compile_model(model, DUCKDB, as_of, sources=sources).sql}")
        elif partitions <= 1:
            _state_views(conn, model, as_of, None)
            _run(conn, f"CREATE TABLE st.scores AS {_scores_sql(model, as_of)}")
        for index, bounds in enumerate(_lead_ranges(conn, partitions) if partitions > 1 else []):
            _state_views(conn, model, as_of, lambda col, b=bounds: lead_range_sql(col, b))
            sql = _scores_sql(model, as_of)
            _run(conn, f"CREATE TABLE st.scores AS {sql}" if index == 0 else f"INSERT INTO st.scores BY NAME {sql}")
        _run(conn, "CREATE TABLE st.files (path VARCHAR, size BIGINT, mtime_ns BIGINT, run INTEGER)")
        _insert_files(conn, files, 0)
        _run(conn, "CREATE TABLE st.rescored (lead_id VARCHAR, why VARCHAR)")
        run_id = uuid.uuid4().hex
        meta = {"format": str(STATE_FORMAT), "model_version": model.model_version, "log": log, "references": refs,
                "as_of": as_of.isoformat(), "run": "0", "run_id": run_id}
        _run(conn, "CREATE TABLE st.meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        _run(conn, "INSERT INTO st.meta VALUES " + ", ".join(f"({quote_literal(k)}, {quote_literal(v)})"
                                                            for k, v in meta.items()))
        frame = _result(conn, model)
        _run(conn, "CHECKPOINT st")
    finally:
        _run(conn, "DETACH DATABASE IF EXISTS st")
    # The old file's WAL belongs to the old file: it must not be replayed onto the new one.
    Path(f"{path}.wal").unlink(missing_ok=True)
    os.replace(new, path)
    return StateRun(frame, True, why, len(frame), len(frame), sorted(files), rows, model=model, state=path, run=0,
                    run_id=run_id, _all=frame)


def _lead_ranges(conn, count: int) -> list[tuple[str | None, str | None]]:
    """The full run's lead partitions: ``count`` contiguous lead_id ranges of about as many leads each
    (the state's population cut at its quantiles; the first and last open, so they tile every id).
    A range's scan of ``st.ev`` skips the row groups whose lead_id statistics lie outside it (DuckDB's
    zone maps): when the staged rows are clustered by lead, as they are for a log written lead by lead
    (the demo's, a warehouse table clustered by user), each partition reads about its share of the
    table, where a hash partition read all of it every time (1M leads, 6 partitions: 33 of 185 row
    groups; bench/RESULTS.md). An unclustered log's ranges read every row group, as hash partitions do."""
    fractions = ", ".join(f"{k / count!r}" for k in range(1, count))
    cuts = _run(conn, f"SELECT quantile_disc(lead_id, [{fractions}]) FROM st.population")[0][0] or []
    bounds = [None, *sorted({c for c in cuts if c is not None}), None]
    return list(zip(bounds[:-1], bounds[1:]))


# The state's tables of rows staged in the log's order that an incremental run copies a changed
# lead's rows from, and their lead column (``trait_rows`` is staged sorted: ``_stage``; ``video_ev``
# exists only for a model with video rules).
_LEAD_TABLES = (("ev", "lead_id"), ("video_ev", "lead_id"))


def _overlap(blocks: list[tuple[str, str]]) -> float:
    """Of row groups given by their (min, max) lead, the share of the other groups that one overlaps,
    on average: 0 when they are disjoint (written lead by lead), 1 when each spans every lead (in time
    order). A group overlaps another when their ranges share more than a bound (a lead split across
    two neighbours does not count). Sorted bounds and bisection, not the n² pairs: a log of 10^9
    messages stages ~8,000 row groups."""
    n = len(blocks)
    if n < 2:
        return 0.0
    lows, highs = sorted(lo for lo, _ in blocks), sorted(hi for _, hi in blocks)
    points = Counter(lo for lo, hi in blocks if lo == hi)      # groups of a single lead (one with 100k+ rows)
    # Groups j with lo_j < hi_i, less those wholly at or below lo_i (hi_j <= lo_i), less i itself; for a
    # single-lead group i, the single-lead groups of its lead were subtracted without being counted.
    pairs = sum(bisect_left(lows, hi) - bisect_right(highs, lo) + (points[lo] if lo == hi else -1)
                for lo, hi in blocks)
    return pairs / (n * (n - 1))


def _clustered(conn, table: str, column: str) -> bool:
    """Whether ``st.{table}``'s row groups are clustered by lead, from their statistics of ``column``: a
    group overlaps at most a quarter of the others on average (``_overlap``). A log written lead by lead
    is, though staged by two threads (each writes its own row groups: about one in two then straddles
    the gap between two of the log's row groups, overlapping one to three others); a log in time order
    is not (each group overlaps every other)."""
    blocks = _run(conn, f"SELECT min(CAST(stats['min'] AS VARCHAR)), max(CAST(stats['max'] AS VARCHAR)) "
                        f"FROM pragma_storage_info('st.{table}') WHERE column_name = {quote_literal(column)} "
                        f"AND segment_type <> 'VALIDITY' GROUP BY row_group_id "
                        f"HAVING min(CAST(stats['min'] AS VARCHAR)) IS NOT NULL")
    return _overlap(blocks) <= 0.25


def _cluster(conn, path: Path, tables) -> list[str]:
    """Rewrite the state being written (``st``, the file ``path``) into a fresh file with those of
    ``tables`` (table, lead column; a table the state lacks, as ``video_ev`` without video rules, is
    passed over) that are not clustered by lead sorted by it, as a log exported in
    time order stages them (every row group holding every lead); returns the tables sorted. The full
    run's lead ranges (``_lead_ranges``) then skip the other ranges' row groups, and an incremental
    run copies the changed leads' rows from fewer blocks (1M leads, a time-ordered JSON log: the full
    state run 74-76 against 94 s, the next run 1.45-1.47 against 1.87 s; bench/RESULTS.md). A fresh
    file, not a sorted copy beside the old table: dropping the old left its blocks free in the file
    (1.3 GB against 0.76). A log written lead by lead is left as staged (sorting it again cost 15 s)."""
    present = [r[0] for r in _run(conn, "SELECT table_name FROM duckdb_tables() WHERE database_name = 'st' "
                                        "ORDER BY 1")]
    unsorted = {t: c for t, c in tables if t in present and not _clustered(conn, t, c)}
    if not unsorted:
        return []
    fresh = Path(f"{path}.sorted")
    _run(conn, f"ATTACH {quote_literal(str(fresh))} AS ls_sorted")
    try:
        for name in present:
            order = f" ORDER BY {unsorted[name]}" if name in unsorted else ""
            _run(conn, f"CREATE TABLE ls_sorted.{name} AS SELECT * FROM st.{name}{order}")
        _run(conn, "CHECKPOINT ls_sorted")
    finally:
        _run(conn, "DETACH DATABASE IF EXISTS ls_sorted")
    _run(conn, "DETACH DATABASE st")
    for f in (path, Path(f"{path}.wal")):
        f.unlink(missing_ok=True)
    os.replace(fresh, path)
    _run(conn, f"ATTACH {quote_literal(str(path))} AS st")
    return sorted(unsorted)


def _insert_files(conn, files: dict[str, tuple[int, int]], run: int) -> None:
    if not files:
        return
    conn.register("ls_files_arrow", pa.table({
        "path": pa.array(list(files), pa.string()), "size": pa.array([s for s, _ in files.values()], pa.int64()),
        "mtime_ns": pa.array([m for _, m in files.values()], pa.int64()),
        "run": pa.array([run] * len(files), pa.int32())}))
    _run(conn, "INSERT INTO st.files SELECT * FROM ls_files_arrow")
    conn.unregister("ls_files_arrow")


def _incremental(conn, model: Model, as_of: datetime, log: str, files: dict[str, tuple[int, int]],
                 path: Path, restore: str | None = None) -> StateRun:
    """Stage the new files, find the changed leads, score them from the state, then commit it all to
    the state in one transaction (everything before it writes temp tables only). Returns the re-scored
    leads' rows; the whole table stays in the state (``StateRun.frame`` reads it on demand).
    ``restore``: the statement that puts the connection's memory limit back (see ``_copy_memory``);
    None leaves the limit alone."""
    meta = dict(_run(conn, "SELECT key, value FROM st.meta"))
    t1, run = datetime.fromisoformat(meta["as_of"]), int(meta["run"]) + 1
    run_id = uuid.uuid4().hex
    consumed = {r[0] for r in _run(conn, "SELECT path FROM st.files")}
    new = {p: s for p, s in files.items() if p not in consumed}
    tables = ["ev", "trait_rows", "account_rows", "population"] + (["video_ev"] if _uses_video(model) else [])
    rows = 0
    try:
        # Up to the commit only temp tables are written, and DuckDB checkpoints the temp database too
        # (compressing tables dropped a second later) when a statement commits with them past
        # checkpoint_threshold: 0.2-0.3 s of a 1.9 s run at 1M leads (its profiler's checkpoint_latency).
        # So the threshold is raised until the copies are dropped, before the state's commit, which then
        # runs under the default with little left in the temp database.
        with _setting(conn, "checkpoint_threshold", "1TB"):
            if new:
                rows = _stage(conn, model, sorted(new), log, "ls_b_", None)
            else:
                for t in tables:     # no new files: empty batch tables of the state's shape
                    _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_b_{t} AS SELECT * FROM st.{t} WHERE FALSE")
            _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_changed AS {changed_leads_sql(model, t1, as_of)}")
            why = dict(_run(conn, "SELECT why, count(*) FROM ls_changed GROUP BY why"))
            n = sum(why.values())
            if n:
                # The changed leads' rows, state and new files together, copied once (every rule scans them;
                # their later rows too: they give the leads' next change, see next_change_sql).
                mine = "IN (SELECT lead_id FROM ls_changed)"

                def rows_of(t: str, lead: str) -> str:
                    # The state's rows found by their row ids first: the filter scans only the lead column,
                    # and only the rows found are read whole (~2x faster than filtering whole rows).
                    return (f"SELECT * FROM st.{t} WHERE rowid IN (SELECT rowid FROM st.{t} WHERE {lead} {mine}) "
                            f"UNION ALL BY NAME SELECT * FROM ls_b_{t} WHERE {lead} {mine}")
                copies = {"ev": rows_of("ev", "lead_id"), "trait_rows": rows_of("trait_rows", "owner"),
                          "account_rows": "SELECT * FROM st.account_rows UNION ALL BY NAME SELECT * FROM ls_b_account_rows",
                          "population": f"SELECT DISTINCT lead_id FROM (SELECT lead_id FROM st.population UNION ALL "
                                        f"SELECT lead_id FROM ls_b_population) p WHERE lead_id {mine}"}
                if "video_ev" in tables:
                    copies["video_ev"] = rows_of("video_ev", "lead_id")
                with _copy_memory(conn, restore, n, rows):
                    for t, sql in copies.items():
                        _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_c_{t} AS {sql}")
                _state_views(conn, model, as_of, None, schema="ls_c_")
                _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_fresh AS {_scores_sql(model, as_of)}")
                _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_next AS {next_change_sql(model, as_of, 'ls_c_')}")
                for t in tables:      # scored: the copies go before the commit (see above)
                    _run(conn, f"DROP TABLE IF EXISTS temp.ls_c_{t}")
        _run(conn, "BEGIN TRANSACTION")
        try:
            for t in tables:
                if t == "population":
                    # The new leads: the batch's leads less those the state has (a semi-join probing the
                    # state's million ids against the batch's few, not an anti-join building on the million).
                    _run(conn, "INSERT INTO st.population SELECT lead_id FROM ls_b_population EXCEPT SELECT lead_id "
                               "FROM st.population WHERE lead_id IN (SELECT lead_id FROM ls_b_population)")
                else:
                    _run(conn, f"INSERT INTO st.{t} BY NAME SELECT * FROM ls_b_{t}")
            _run(conn, "DELETE FROM st.rescored")
            _run(conn, "INSERT INTO st.rescored SELECT lead_id, why FROM ls_changed")
            if n:
                _run(conn, "DELETE FROM st.scores WHERE lead_id IN (SELECT lead_id FROM ls_changed)")
                _run(conn, "INSERT INTO st.scores BY NAME SELECT * FROM ls_fresh")
                _run(conn, "DELETE FROM st.lead_next WHERE lead_id IN (SELECT lead_id FROM ls_changed)")
                _run(conn, "INSERT INTO st.lead_next BY NAME SELECT * FROM ls_next")
            _insert_files(conn, new, run)
            _run(conn, f"UPDATE st.meta SET value = {quote_literal(as_of.isoformat())} WHERE key = 'as_of'")
            _run(conn, f"UPDATE st.meta SET value = '{run}' WHERE key = 'run'")
            _run(conn, f"INSERT OR REPLACE INTO st.meta VALUES ('run_id', '{run_id}')")
            _run(conn, "COMMIT")
        except BaseException:
            _run(conn, "ROLLBACK")
            raise
        compacted = run % COMPACT_EVERY == 0
        _checkpoint(conn, compact=compacted)
        fresh = _result(conn, model, "ls_fresh" if n else "st.scores WHERE FALSE")
        leads = _run(conn, "SELECT count(*) FROM st.scores")[0][0]
    finally:
        for t in [*(f"ls_b_{t}" for t in tables), *(f"ls_c_{t}" for t in tables), "ls_changed", "ls_fresh", "ls_next"]:
            _run(conn, f"DROP TABLE IF EXISTS temp.{t}")
    reason = (f"{n} lead(s) re-scored ({', '.join(f'{k}: {v}' for k, v in sorted(why.items()))})" if n
              else "nothing changed")
    return StateRun(fresh, False, reason, n, leads, sorted(new), rows, why, model=model, state=path, run=run,
                    run_id=run_id, compacted=compacted)


# An incremental run's copies read nearly every block of the state's tables once (1% of the leads, at ~90
# leads a vector, touch ~70% of the vectors). Under the connection's whole memory limit DuckDB keeps every
# block it has loaded, each in newly allocated memory: at 1M leads ~600 MB of pages touched for the first time
# (the typed benchmark's run: 236,000 page faults, 1.1-1.3 s of system time). Under a limit sized to what the
# copies hold, it evicts the blocks it has read and loads the next ones into their buffers: 94,000-100,000
# faults, 0.6-0.9 s of system time (bench/RESULTS.md, session 15). The copies' size is estimated from the
# state's rows per lead.
COPY_MEMORY_FLOOR = 128 * 2**20
COPY_ROW_BYTES = 150        # a copied ``ev`` row in a DuckDB temp table (305,753 rows: 44.6 MB)


@contextmanager
def _copy_memory(conn, restore: str | None, changed: int, batch: int = 0):
    """DuckDB's memory limit while the rows of ``changed`` leads are copied out of the state: three times
    what the copies and the new files' ``batch`` rows (temp tables already held) are estimated to take, at
    least COPY_MEMORY_FLOOR, and never above the connection's own limit, which ``restore`` (a SET or RESET
    statement) puts back afterwards; with ``restore`` None, nothing changes. Work beyond the estimate spills
    to DuckDB's temp directory, as any work beyond the limit does; a limit DuckDB cannot lower to (what it
    holds cannot be evicted) leaves the limit as it was."""
    import duckdb
    need = None
    if restore is not None:
        rows, leads = _run(conn, "SELECT sum(estimated_size) FILTER (WHERE table_name = 'ev'), sum(estimated_size) "
                                 "FILTER (WHERE table_name = 'population') FROM duckdb_tables() "
                                 "WHERE database_name = 'st'")[0]
        copied = changed * (rows or 0) // max(leads or 0, 1)
        need = max(COPY_MEMORY_FLOOR, 3 * COPY_ROW_BYTES * (copied + batch))
        limit = memory_limit_bytes(conn)
        if limit is not None and need >= limit:
            need = None
    if need is not None:
        try:
            _run(conn, f"SET memory_limit = '{need}B'")
        except duckdb.Error:
            need = None
    if need is None:
        yield
        return
    try:
        yield
    finally:
        _run(conn, restore)


def _checkpoint(conn, compact: bool) -> None:
    """Checkpoint the state after an incremental run's commit. DuckDB's checkpoint merges a table's
    small trailing row groups into their neighbour (its vacuum tasks), rewriting and recompressing that
    whole row group: at 1M leads, the second run's ~30,000 rows appended to ``ev`` made its checkpoint
    rewrite the 84,000-row row group before them, 0.45 s, and the fifth run's 0.14 s, against 0.03 s for
    writing each run's rows as a row group of their own (measured on a synced 1M-lead state file). So a
    run writes its rows without merging, and every COMPACT_EVERY-th run lets the checkpoint merge the
    small row groups and reclaim the deleted rows of ``scores`` and ``lead_next`` (each run replaces its
    re-scored leads' rows): the tables do not fragment over a long series of runs (a full run rewrites
    them all anyway)."""
    if compact:
        _run(conn, "CHECKPOINT st")
        return
    with _setting(conn, "max_vacuum_tasks", "0"):
        _run(conn, "CHECKPOINT st")


@contextmanager
def _setting(conn, name: str, value: str):
    """The connection's setting ``name`` at ``value`` for the block, then back to what it was."""
    before = _run(conn, f"SELECT current_setting({quote_literal(name)})")[0][0]
    _run(conn, f"SET {name} = {quote_literal(value)}")
    try:
        yield
    finally:
        _run(conn, f"SET {name} = {quote_literal(str(before))}")


def _plus(ts: str, td) -> str:
    return f"({ts} + to_microseconds(CAST({int(round(td.total_seconds() * 1e6))} AS BIGINT)))"


def next_change_sql(model: Model, t: datetime, schema: str = "st.") -> str:
    """(lead_id, next_due, next_edge) from the state's rows in ``{schema}ev`` ...: for each lead, the
    first instant from ``t`` on at which its score can change with no new message: its earliest
    message later than ``t`` (``next_due``: a message consumed before its time, an event or a trait),
    and the earliest instant ≥ t at which one of its events crosses an edge of the model
    (``next_edge``: ts + W for a window, a decay step, an inactivity threshold or a stage's within;
    for a continuous half-life decay, every instant: ``t`` itself). A lead with neither has no row.

    An event at ts crosses an edge at duration D between t1 and t2 exactly when ts + D lies in
    [t1, t2] (both ends kept, as ``incremental.changed_leads_sql``): so a lead needs re-scoring at t2
    when its next_due or next_edge is ≤ t2. Kept per lead, this answers an incremental run from one
    row per lead, not a scan of every event; a lead's row stays right until it is re-scored (all its
    instants after the base lie after t2), and then it is computed again from its rows."""
    T = _ts(DUCKDB, t)
    ev_edges, video_edges = [], []

    def crossing(match: str, td) -> str:
        # ts + D >= T written ts >= T - D: a constant comparison, the sum computed only for the rows past it.
        try:
            since = f"ts >= {_ts(DUCKDB, t - td)}"
        except OverflowError:          # T - D before year 1: every row
            since = "TRUE"
        return f"CASE WHEN {match} AND {since} THEN {_plus('ts', td)} END"
    for rule in model.rules:
        match = _match(rule)
        if match is None:
            continue
        edges = video_edges if rule.video else ev_edges
        if rule.decay is not None and rule.decay.half_life is not None:
            edges.append(f"CASE WHEN {match} THEN GREATEST(ts, {T}) END")   # continuous: changes all the time
            continue
        for edge in _edges(rule):
            edges.append(crossing(match, edge))
    for stage in model.stages:
        w = stage.when
        if w is not None and w.event and w.within is not None:
            ev_edges.append(crossing(f"event IN ({', '.join(quote_literal(e) for e in w.event)})", w.within))
    # Rules with the same match and durations give the same edges (a half-life written as steps, on every page rule).
    ev_edges, video_edges = list(dict.fromkeys(ev_edges)), list(dict.fromkeys(video_edges))
    null = "CAST(NULL AS TIMESTAMP)"

    def rows(table: str, edges: list[str]) -> str:
        edge = f"LEAST({', '.join(edges)})" if edges else null
        return (f"SELECT lead_id, CASE WHEN ts > {T} THEN ts END AS due, {edge} AS edge FROM {schema}{table} "
                f"WHERE ts IS NOT NULL")
    parts = [rows("ev", ev_edges),
             f"SELECT owner AS lead_id, ts AS due, {null} AS edge FROM {schema}trait_rows WHERE ts > {T}"]
    if _uses_video(model):
        parts.append(rows("video_ev", video_edges))
    return (f"SELECT lead_id, min(due) AS next_due, min(edge) AS next_edge FROM ({' UNION ALL '.join(parts)}) c "
            f"WHERE lead_id IS NOT NULL AND (due IS NOT NULL OR edge IS NOT NULL) GROUP BY lead_id")


def changed_leads_sql(model: Model, t1: datetime, t2: datetime) -> str:
    """(lead_id, why) of every lead whose score as of t2 may differ from the state's as of t1, read
    from the state's tables (``st.*``, as of t1: ``lead_next`` for time alone) and the new files'
    staged rows (``ls_b_*``)."""
    T1, T2 = _ts(DUCKDB, t1), _ts(DUCKDB, t2)
    parts = ["SELECT lead_id, 'new messages' AS why FROM ls_b_population",
             f"SELECT lead_id, CASE WHEN next_due <= {T2} THEN 'messages due since the last run' "
             f"ELSE 'crossed a window, decay or inactivity edge' END FROM st.lead_next "
             f"WHERE next_due <= {T2} OR next_edge <= {T2}"]
    if any(k.startswith("account.") for k in model_trait_keys(model)):
        # A group call changes its account's traits, so every member's score: a member is any lead whose
        # staged account_id rows name the account (a superset of the leads whose account it is now).
        accounts = (f"SELECT owner FROM st.account_rows WHERE ts > {T1} AND ts <= {T2} "
                    f"UNION SELECT owner FROM ls_b_account_rows WHERE ts <= {T2}")
        members = "(SELECT owner, key, value FROM st.trait_rows UNION ALL SELECT owner, key, value FROM ls_b_trait_rows)"
        parts.append(f"SELECT owner, 'their account changed' FROM {members} m WHERE key = 'account_id' "
                     f"AND value IN ({accounts})")
    # One row per lead: its first cause in this order.
    order = ["new messages", "messages due since the last run", "their account changed",
             "crossed a window, decay or inactivity edge"]
    rank = "CASE why " + " ".join(f"WHEN {quote_literal(w)} THEN {k}" for k, w in enumerate(order)) + " END"
    return (f"SELECT lead_id, arg_min(why, {rank}) AS why FROM ({' UNION ALL '.join(parts)}) c "
            f"WHERE lead_id IS NOT NULL GROUP BY lead_id")
