"""Scoring a Parquet event log with DuckDB, through the same compiled SQL the store runs.

The event log is read where it lies (``read_parquet``): the columns of ``EVENT_COLUMNS`` plus
``lead_id`` (when the file has no ``lead_id``, a message's lead is its ``user_id``, else its
``anonymous_id``). ``properties`` and ``context`` are JSON text or typed STRUCT columns (a
warehouse export's shape); :func:`log_access` picks how a property path is read, with the same
semantics either way (:mod:`leadscore.engine.access`). What the store keeps in tables at ingestion is derived here from the log itself,
as of the scoring instant, by the views of :func:`log_views` (shared with the Spark engine):

* traits: the ``identify`` events' traits, flattened two levels (``company.industry``), the newest
  ``(ts, message_id)`` winning per lead and key (deeper objects stay JSON text); ``account_id`` from
  the ``group_id`` of group/identify/track/page events; ``browser`` from ``context.userAgent``
  (the maintained uap-core rules, applied in Python to the few distinct user agents);
* account traits: the ``group`` events' traits, flattened the same way, per ``group_id``;
* the population: every lead id in the log.

Only messages with ``ts <= as_of`` count, traits included (the store keeps the newest trait
whatever its time, so the two agree for an as-of instant after the last identify).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import pandas as pd
import pyarrow as pa

from leadscore.engine.access import JSON_ACCESS, LOG_JSON_COLUMNS, PropertyAccess, PropertyTypeError, duckdb_shape
from leadscore.engine.compile import Sources, compile_model
from leadscore.engine.score import _frame, frame_select_sql, to_naive_utc
from leadscore.events import EVENT_COLUMNS
from leadscore.video.reconstruct import video_columns_sql
from leadscore.model.schema import Model
from leadscore.store.dialect import DUCKDB, Dialect, quote_literal
from leadscore.store.duckdb import scoring_optimizers

T = TypeVar("T")   # what a caller's ``finish`` makes of the scored rows (score_parquet)
ORDER = "ORDER BY score DESC, lead_id"   # a full run's order of the scored rows (the frame's)

# Relation names the compiled query reads when scoring an event log (registered per run).
LOG_SOURCES = Sources(events="ls_events", traits="ls_traits", account_traits="ls_account_traits",
                      population="ls_population", catalog="video_catalog", predictions="lead_predictions")
CATALOG_SCHEMA = pa.schema([("video_id", pa.string()), ("title", pa.string()), ("duration", pa.float64()),
                            ("category", pa.string()), ("stage", pa.string())])
PREDICTIONS_SCHEMA = pa.schema([("lead_id", pa.string()), ("probability", pa.float64())])
UA_SCHEMA = pa.schema([("ua", pa.string()), ("browser", pa.string())])
TRAIT_TYPES = ("group", "identify", "track", "page")   # messages whose group_id sets the lead's account_id


class EventLogError(ValueError):
    """The Parquet event log cannot be scored (missing file or columns); the message says which."""


def model_trait_keys(model: Model) -> set[str]:
    """Every trait key the model reads (rules and stage conditions), plus account_id."""
    keys = {"account_id"}
    for rule in model.rules:
        if rule.kind == "trait" and rule.trait is not None:
            keys |= rule.trait.referenced()
    for stage in model.stages:
        if stage.when is not None and stage.when.trait is not None:
            keys |= stage.when.trait.referenced()
    return keys


def parquet_files(path: str | Path) -> list[str]:
    """The Parquet files of a log given as a file or a folder (searched recursively)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
        if not files:
            raise EventLogError(f"{path}: no .parquet files in this folder")
        return files
    if not p.exists():
        raise EventLogError(f"{path}: no such event log (a Parquet file or a folder of them)")
    return [str(p)]


def check_columns(path: str | Path, names: Iterable[str]) -> bool:
    """Raise when event-log columns are missing; True when the log carries its own lead_id."""
    names = set(names)
    missing = [c for c in ("message_id", "type", "event", "user_id", "anonymous_id", "group_id", "ts",
                           "properties", "context") if c not in names]
    if missing:
        raise EventLogError(f"{path}: the event log lacks the column(s) {', '.join(missing)} "
                            f"(expected {', '.join(EVENT_COLUMNS)} and optionally lead_id)")
    return "lead_id" in names


@dataclass
class LogViews:
    """View definitions (name, SELECT) in dependency order, over a relation of raw events."""

    views: list[tuple[str, str]]


def _flatten_sql(d: Dialect, src: str, owner: str) -> str:
    """(owner, key, value, ts, message_id) for every trait of ``src``'s messages, two levels flattened.

    JSON access by dialect: DuckDB's json_each gives each member with its JSON type; Spark's
    from_json as map<string,string> gives strings unquoted and nested objects as JSON text."""
    if d.name == "spark":
        lvl1 = (f"SELECT s.{owner} AS owner, s.ts, s.message_id, kv.key AS key, kv.value AS value, "
                f"(kv.value LIKE '{{%' AND from_json(kv.value, 'map<string,string>') IS NOT NULL) AS is_obj "
                f"FROM {src} s LATERAL VIEW explode(from_json(s.properties, 'map<string,string>')) kv AS key, value")
        lvl2 = ("SELECT l.owner, l.ts, l.message_id, concat(l.key, '.', kv.key) AS key, kv.value AS value "
                "FROM lvl1 l LATERAL VIEW explode(from_json(l.value, 'map<string,string>')) kv AS key, value "
                "WHERE l.is_obj")
    else:
        lvl1 = (f"SELECT s.{owner} AS owner, s.ts, s.message_id, j.key AS key, j.value ->> '$' AS value, "
                f"j.type = 'OBJECT' AS is_obj, j.value AS raw "
                f"FROM {src} s, json_each(s.properties) j")
        lvl2 = ("SELECT l.owner, l.ts, l.message_id, l.key || '.' || j.key AS key, j.value ->> '$' AS value "
                "FROM lvl1 l, json_each(l.raw) j WHERE l.is_obj")
    return (f"SELECT owner, key, value, ts, message_id FROM ("
            f"WITH lvl1 AS ({lvl1}), lvl2 AS ({lvl2}) "
            f"SELECT owner, key, value, ts, message_id FROM lvl1 WHERE NOT is_obj "
            f"UNION ALL SELECT owner, key, value, ts, message_id FROM lvl2) f")


def _extract_sql(src: str, owner: str, keys: set[str]) -> str:
    """DuckDB: (owner, key, value, ts, message_id) for the named trait keys only, read by their paths.

    The same rows :func:`_flatten_sql` gives for those keys (a present key, its JSON null included;
    an object is never a value: the store flattens it into its members), without a lateral json_each
    per message and the join DuckDB plans for it: one parse of each message for all the keys. A key
    is its dotted path, as the store's flatten_traits names it at any depth."""
    keys = sorted(k for k in keys if k)
    if not keys:
        return f"SELECT {owner} AS owner, '' AS key, '' AS value, ts, message_id FROM {src} WHERE FALSE"
    paths = ", ".join(quote_literal("$" + "".join(f'."{p}"' for p in k.split("."))) for k in keys)
    names = ", ".join(quote_literal(k) for k in keys)
    return (f"SELECT owner, key, value, ts, message_id FROM ("
            f"SELECT s.{owner} AS owner, s.ts, s.message_id, unnest([{names}]) AS key, "
            f"unnest(json_extract_string(s.properties, [{paths}])) AS value, "
            f"unnest(json_type(s.properties, [{paths}])) AS jtype FROM {src} s) x "
            f"WHERE jtype IS NOT NULL AND jtype <> 'OBJECT'")


def _trait_rows_sql(d: Dialect, src: str, owner: str, keys: set[str] | None,
                    access: PropertyAccess = JSON_ACCESS) -> str:
    if access.typed("properties"):
        return access.trait_rows_sql(d, src, owner, keys)
    if d.name == "duckdb" and keys is not None:
        return _extract_sql(src, owner, keys)
    return _flatten_sql(d, src, owner)


def _newest(rel: str, owner: str, keys: set[str] | None) -> str:
    key_filter = f" WHERE key IN ({', '.join(quote_literal(k) for k in sorted(keys))})" if keys else ""
    # Hand-written row_number rather than arg_max: a newest NULL must win too (the store keeps it),
    # and the shape must run unchanged on Spark; trait rows are few (identify/group messages only).
    return (f"SELECT owner AS {owner}, key, value, CAST(NULL AS DOUBLE) AS num FROM ("
            f"SELECT owner, key, value, row_number() OVER (PARTITION BY owner, key ORDER BY ts DESC, message_id DESC) AS rn "
            f"FROM {rel}{key_filter}) t WHERE rn = 1")


def log_views(d: Dialect, raw: str, as_of_sql: str, has_lead_id: bool, trait_keys: set[str] | None,
              lead_ua: str | None, group_raw: str | None = None, access: PropertyAccess = JSON_ACCESS) -> LogViews:
    """The sources the compiled query reads, as views over ``raw`` (the event log as stored).

    ``trait_keys`` restricts the lead traits derived to those the model reads (None: all);
    ``lead_ua``: a relation (lead_id, ua_ts, ua_mid, browser) with each lead's newest user agent's
    browser up to as_of, or None when the model does not read ``browser``; ``access``: how the
    log's properties/context are read (JSON text, or typed columns: :func:`log_access`)."""
    lead = "lead_id" if has_lead_id else "COALESCE(user_id, anonymous_id)"
    cols = ", ".join(c for c in EVENT_COLUMNS if c != "lead_id")
    # the typed video columns the store fills at ingest, derived from the properties (the log has none)
    video = ", ".join(f"{expr} AS {col}" for col, expr in
                      video_columns_sql(d, text_of=lambda key: access.text(d, "properties", key)))
    views = [("ls_events", f"SELECT {cols}, {video}, {lead} AS lead_id FROM {raw}")]
    views.append(("ls_id_msgs", f"SELECT lead_id, ts, message_id, properties FROM ls_events "
                                f"WHERE type = 'identify' AND lead_id IS NOT NULL AND ts <= {as_of_sql}"))
    # An account's traits may come from any member's group call: with ``group_raw`` (an incremental
    # run, where ``raw`` holds only some leads' messages) they are read from the whole log.
    views.append(("ls_group_msgs", f"SELECT group_id, ts, message_id, properties FROM {group_raw or 'ls_events'} "
                                   f"WHERE type = 'group' AND group_id IS NOT NULL AND ts <= {as_of_sql}"))
    acct_keys = None if trait_keys is None else {k[len("account."):] for k in trait_keys if k.startswith("account.")}
    parts = [_trait_rows_sql(d, "ls_id_msgs", "lead_id", trait_keys, access)]
    parts.append(f"SELECT lead_id AS owner, 'account_id' AS key, group_id AS value, ts, message_id FROM ls_events "
                 f"WHERE group_id IS NOT NULL AND lead_id IS NOT NULL AND ts <= {as_of_sql} "
                 f"AND type IN ({', '.join(quote_literal(t) for t in TRAIT_TYPES)})")
    if lead_ua is not None:
        parts.append(f"SELECT lead_id AS owner, 'browser' AS key, browser AS value, ua_ts AS ts, ua_mid AS message_id "
                     f"FROM {lead_ua}")
    views.append(("ls_trait_rows", " UNION ALL ".join(parts)))
    views.append(("ls_traits", _newest("ls_trait_rows", "lead_id", trait_keys)))
    views.append(("ls_account_traits", _newest(f"({_trait_rows_sql(d, 'ls_group_msgs', 'group_id', acct_keys, access)})",
                                               "account_id", acct_keys)))
    views.append(("ls_population", "SELECT DISTINCT lead_id FROM ls_events WHERE lead_id IS NOT NULL"))
    return LogViews(views)


def lead_ua_sql(d: Dialect, as_of_sql: str, access: PropertyAccess = JSON_ACCESS) -> str:
    """Each lead's newest non-empty context.userAgent up to as_of: (lead_id, ua, ua_ts, ua_mid).

    On JSON text, a LIKE on the raw text skips the messages that cannot carry one before any JSON
    is parsed (a typed context's field is read directly)."""
    ua = access.text(d, "context", "userAgent")
    like = "" if access.typed("context") else " AND context LIKE '%userAgent%'"
    return (f"SELECT lead_id, ua, ts AS ua_ts, message_id AS ua_mid FROM ("
            f"SELECT lead_id, ua, ts, message_id, row_number() OVER (PARTITION BY lead_id ORDER BY ts DESC, message_id DESC) AS rn "
            f"FROM (SELECT lead_id, ts, message_id, {ua} AS ua FROM ls_events "
            f"WHERE lead_id IS NOT NULL AND ts <= {as_of_sql}{like}) u "
            f"WHERE ua IS NOT NULL AND ua <> '') r WHERE rn = 1")


def log_access(conn, path: str | Path, types: dict[str, str]) -> PropertyAccess:
    """How a log's properties/context are read, from its column types (name → DuckDB type text, as
    DESCRIBE gives them): JSON text (VARCHAR/JSON) or typed (STRUCT)."""
    try:
        return PropertyAccess({c: duckdb_shape(c, conn.type(types[c])) for c in LOG_JSON_COLUMNS})
    except PropertyTypeError as exc:
        raise EventLogError(f"{path}: {exc}") from None


def browser_table(user_agents: Iterable[str]) -> pa.Table:
    """ua → browser family, by the store's own rule (leadscore.store.traits.browser_of)."""
    from leadscore.store.traits import browser_of
    uas = sorted({u for u in user_agents if u})
    return pa.table({"ua": pa.array(uas, pa.string()), "browser": pa.array([browser_of(u) for u in uas], pa.string())})


def catalog_table(events_path: str | Path, catalog: str | Path | None) -> pa.Table:
    """The video catalog: the given YAML/CSV file, else ``videos.yaml`` beside the log, else empty."""
    if catalog is None:
        beside = Path(events_path)
        beside = (beside if beside.is_dir() else beside.parent) / "videos.yaml"
        catalog = beside if beside.exists() else None
    if catalog is None:
        return CATALOG_SCHEMA.empty_table()
    from leadscore.video.catalog import load_catalog
    videos = load_catalog(catalog)
    return pa.table({"video_id": [v.video_id for v in videos], "title": [v.title for v in videos],
                     "duration": [float(v.duration) if v.duration is not None else None for v in videos],
                     "category": [v.category for v in videos], "stage": [v.stage for v in videos]},
                    schema=CATALOG_SCHEMA)


def disposable_table() -> pa.Table:
    from disposable_email_domains import blocklist
    return pa.table({"domain": pa.array(sorted(blocklist), pa.string())})


def _read_parquet(files: list[str], union: bool = False) -> str:
    opts = ", union_by_name = true" if union else ""
    return f"read_parquet([{', '.join(quote_literal(f) for f in files)}]{opts})"


def log_relation(conn, files: list[str]) -> tuple[str, dict[str, str]]:
    """The log's relation over its files and its columns' types (name → DuckDB type text, in file
    order). The files of a typed log may each have their own STRUCT fields (a key first sent after a
    file was written): a plain scan would take the first file's type and silently drop the fields
    the others add, so each group of same-typed files is cast to the type uniting them all (by name).
    DuckDB's own ``union_by_name`` is not used for that: projecting into a struct field some files
    lack fails inside DuckDB 2.0 (duckdb/duckdb#24253 and similar internal errors). A cast reads the
    whole struct of those files, not only the fields the rules use; files of one type are read as is."""
    raw = _read_parquet(files)
    types = _describe(conn, raw)
    typed = [c for c in LOG_JSON_COLUMNS if types.get(c, "").startswith("STRUCT(")]
    if len(files) <= 1 or not typed:
        return raw, types
    groups: dict[tuple, list[str]] = {}
    for f in files:
        own = _describe(conn, _read_parquet([f]))
        groups.setdefault(tuple(own.items()), []).append(f)
    if len(groups) == 1:
        return raw, types
    types = _describe(conn, _read_parquet(files, union=True))      # the united types (only described)
    casts = ", ".join(f"CAST({c} AS {types[c]}) AS {c}" for c in typed)
    raw = "(" + " UNION ALL BY NAME ".join(f"SELECT * REPLACE ({casts}) FROM {_read_parquet(g)}"
                                           for g in groups.values()) + ")"
    return raw, types


def _describe(conn, rel: str) -> dict[str, str]:
    return {r[0]: r[1] for r in _run(conn, f"DESCRIBE SELECT * FROM {rel}")}


def _run(conn, sql: str) -> list[tuple]:
    """Run one statement to completion (DuckDB refuses new work while a result is unfetched)."""
    return conn.execute(sql).fetchall()


def open_duckdb(memory_limit: str | None = None, threads: int | None = None, temp_dir: str | None = None):
    """An in-memory DuckDB connection; with memory_limit, work beyond it spills to temp_dir."""
    import duckdb
    conn = duckdb.connect()
    if memory_limit:
        _run(conn, f"SET memory_limit = {quote_literal(memory_limit)}")
    if threads:
        _run(conn, f"SET threads = {int(threads)}")
    if temp_dir:
        os.makedirs(temp_dir, exist_ok=True)
        _run(conn, f"SET temp_directory = {quote_literal(temp_dir)}")
    _run(conn, "SET preserve_insertion_order = false")
    # Parquet footers read once per file, not once per view and scan: each lead range's views and query
    # read the same footers (a 1.2 GB log of 391 row groups: 0.31 -> 0.02 s to register a range's views,
    # 0.45 -> 0.33 s to plan its query).
    _run(conn, "SET parquet_metadata_cache = true")
    _run(conn, f"SET disabled_optimizers = '{scoring_optimizers('')}'")   # see SCORING_DISABLED_OPTIMIZERS
    return conn


def register_events_view(conn, events_path: str | Path, name: str = "ls_all_events") -> str:
    """Only the event-log view (EVENT_COLUMNS + lead_id) over the Parquet files, under ``name``."""
    raw, types = log_relation(conn, parquet_files(events_path))
    has_lead = check_columns(events_path, types)
    views = log_views(DUCKDB, raw, "NULL", has_lead, None, None, access=log_access(conn, events_path, types))
    _run(conn, f"CREATE OR REPLACE TEMP VIEW {name} AS {views.views[0][1]}")
    return name


def lead_part_sql(lead: str, part: tuple[int, int]) -> str:
    """The condition that ``lead`` (an expression) falls in partition ``part`` = (index, count)."""
    index, count = part
    return f"hash({lead}) % {int(count)} = {int(index)}"


def lead_range_sql(lead: str, bounds: tuple[str | None, str | None]) -> str:
    """The condition that ``lead`` (an expression) lies in ``[lo, hi)``; None bounds are open."""
    lo, hi = bounds
    parts = [f"{lead} >= {quote_literal(lo)}" if lo is not None else None,
             f"{lead} < {quote_literal(hi)}" if hi is not None else None]
    return " AND ".join(p for p in parts if p) or f"{lead} IS NOT NULL"


def lead_ranges(events_path: str | Path, rows_per_range: int) -> list[tuple[str | None, str | None]] | None:
    """Contiguous lead_id ranges of at most about ``rows_per_range`` messages each, when the log is
    clustered by lead: its row groups' lead_id statistics (min, max) do not overlap, as in a log written
    lead by lead (``demo generate``, a warehouse table clustered by user), up to a tenth of the rows in
    row groups that overlap the others (a small file of new messages: read by every range). Each range's
    scan then reads only its own row groups. None when the log is not clustered (or has no lead_id column or no
    statistics) or fits one range. The ranges tile every lead id (the first and last are open), so
    which range a lead falls in never depends on the statistics, only how much each scan skips."""
    import pyarrow.parquet as pq
    blocks: list[list] = []     # [min, max, rows] per row group
    for f in parquet_files(events_path):
        meta = pq.ParquetFile(f).metadata
        names = [meta.schema.column(i).path for i in range(meta.num_columns)]
        if "lead_id" not in names:
            return None
        col = names.index("lead_id")
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            stats = group.column(col).statistics
            if group.num_rows == 0:
                continue
            if stats is None or not stats.has_min_max:
                return None
            blocks.append([stats.min, stats.max, group.num_rows])
    blocks.sort(key=lambda b: (b[0], b[1]))
    # A small file of new messages (a day's export, an incremental run's input) spans many leads and
    # overlaps the clustered row groups: such groups are set aside (every range's scan reads them, their
    # statistics cannot rule them out); past a tenth of the rows aside the log is not clustered.
    chain: list[list] = []
    aside = 0
    for block in blocks:
        if chain and block[0] < chain[-1][1]:
            if block[2] <= chain[-1][2]:
                aside += block[2]
                continue
            aside += chain.pop()[2]
            while chain and block[0] < chain[-1][1]:
                aside += chain.pop()[2]
        chain.append(block)
    if aside > 0.1 * sum(b[2] for b in blocks):
        return None
    cuts, acc = [], 0
    for k, (lo, _hi, rows) in enumerate(chain):
        # A cut falls at a row group's smallest lead: that lead's rows in the group before (a writer may
        # split a lead across groups) belong to the later range, whose scan then reads that group too.
        if k and acc + rows > rows_per_range and lo > (cuts[-1] if cuts else chain[0][0]):
            cuts.append(lo)
            acc = 0
        acc += rows
    if not cuts:
        return None
    bounds = [None, *cuts, None]
    return list(zip(bounds[:-1], bounds[1:]))


def register_log(conn, model: Model, events_path: str | Path, as_of: datetime,
                 catalog: str | Path | None = None, leads: list[str] | None = None,
                 context: bool = True, lead_range: tuple[str | None, str | None] | None = None,
                 group_raw: str | None = None) -> Sources:
    """Create (or replace) the views over the Parquet log on a DuckDB connection; returns the Sources.
    With ``leads``, the views hold only those leads (their traits, events and population); then
    ``context=False`` (no rule reads context.*) leaves the wide JSON context unread. With
    ``lead_range`` (lo, hi) (a log with a lead_id column), the views hold the leads with
    ``lo <= lead_id < hi`` (None: unbounded), a condition the Parquet scan applies to each row
    group's statistics; ``group_raw``: the relation of the whole log's group calls, from which an
    account's traits are then read (any member's call counts)."""
    as_of = to_naive_utc(as_of)
    d = DUCKDB
    raw, types = log_relation(conn, parquet_files(events_path))    # name → type, in file order
    names = list(types)
    has_lead = check_columns(events_path, names)
    if lead_range is not None:
        if not has_lead:
            raise ValueError("lead_range needs a log with a lead_id column")
        raw = f"(SELECT * FROM {raw} WHERE {lead_range_sql('lead_id', lead_range)})"
    access = log_access(conn, events_path, types)
    as_of_sql = d.ts_literal(as_of.strftime("%Y-%m-%d %H:%M:%S.%f"))
    keys = model_trait_keys(model)
    conn.register("ls_catalog_arrow", catalog_table(events_path, catalog))
    _run(conn, "CREATE OR REPLACE TEMP TABLE video_catalog AS SELECT * FROM ls_catalog_arrow")
    conn.unregister("ls_catalog_arrow")
    if not _run(conn, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'ref_disposable_domains'")[0][0]:
        conn.register("ls_domains_arrow", disposable_table())
        _run(conn, "CREATE TEMP TABLE ref_disposable_domains AS SELECT * FROM ls_domains_arrow")
        conn.unregister("ls_domains_arrow")
    conn.register("ls_pred_arrow", PREDICTIONS_SCHEMA.empty_table())
    _run(conn, "CREATE OR REPLACE TEMP TABLE lead_predictions AS SELECT * FROM ls_pred_arrow")
    conn.unregister("ls_pred_arrow")
    if leads is not None:
        # One pass copies the leads' messages aside; every view but the accounts' then reads that copy
        # (with every group call, 1 or 2% of a log, for the accounts' traits). Only the columns the
        # views read are copied: decompressing the wide JSON context of the whole log is most of a
        # small re-score's time when no rule reads it.
        # The group calls only matter when the model reads an account's traits.
        lead = "lead_id" if has_lead else "COALESCE(user_id, anonymous_id)"
        conn.register("ls_wanted_arrow", pa.table({"lead_id": pa.array(list(leads), pa.string())}))
        _run(conn, "CREATE OR REPLACE TEMP TABLE ls_wanted_leads AS SELECT DISTINCT lead_id FROM ls_wanted_arrow")
        conn.unregister("ls_wanted_arrow")
        wanted = f"{lead} IN (SELECT lead_id FROM ls_wanted_leads)"
        groups = " OR type = 'group'" if any(k.startswith("account.") for k in keys) else ""
        unread = {"previous_id", "original_ts", "sent_at"} | (set() if context or "browser" in keys else {"context"})
        copied = ", ".join(f"CAST(NULL AS {types[c]}) AS {c}" if c in unread else c for c in names)
        _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_subset AS SELECT {copied}, {wanted} AS ls_wanted FROM {raw} "
                   f"WHERE {wanted}{groups}")
        cols = ", ".join(names)
        _run(conn, f"CREATE OR REPLACE TEMP VIEW ls_subset_leads AS SELECT {cols} FROM ls_subset WHERE ls_wanted")
        group_raw = (f"(SELECT {cols} FROM ls_subset WHERE type = 'group' AND group_id IN "
                     f"(SELECT group_id FROM ls_subset WHERE ls_wanted AND group_id IS NOT NULL))")
        raw = "ls_subset_leads"
    views = log_views(d, raw, as_of_sql, has_lead, keys, "ls_lead_browser" if "browser" in keys else None, group_raw,
                      access)
    _run(conn, f"CREATE OR REPLACE TEMP VIEW ls_events AS {views.views[0][1]}")
    if "browser" in keys:
        # One pass over the contexts; the few distinct user agents are named in Python (uap-core).
        _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_lead_ua AS {lead_ua_sql(d, as_of_sql, access)}")
        uas = [r[0] for r in conn.execute("SELECT DISTINCT ua FROM ls_lead_ua").fetchall()]
        conn.register("ls_ua_arrow", browser_table(uas))
        _run(conn, "CREATE OR REPLACE TEMP TABLE ls_ua AS SELECT * FROM ls_ua_arrow")
        conn.unregister("ls_ua_arrow")
        _run(conn, "CREATE OR REPLACE TEMP VIEW ls_lead_browser AS SELECT l.lead_id, l.ua_ts, l.ua_mid, u.browser "
                     "FROM ls_lead_ua l JOIN ls_ua u ON u.ua = l.ua")
    for name, sql in views.views[1:]:
        _run(conn, f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
    return replace(LOG_SOURCES, access=access) if access.any_typed else LOG_SOURCES


# From this many messages on, the event rows the rules read are staged in a compressed table first
# (see ``stage``): measured on the demo population with 3 GB for DuckDB, 48M messages took 26% less
# CPU so; at 1M messages the staging's own pass and compression cost more than they save.
STAGE_MIN_ROWS = 10_000_000


def log_rows(events_path: str | Path) -> int:
    """The number of messages in the log, from the Parquet footers (nothing is scanned)."""
    import pyarrow.parquet as pq
    return sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(events_path))


def stage_events(conn, events_sql: str, directory: str | None = None, partitions: int = 1) -> tuple[str, Path]:
    """The rule-read event rows (``Compiled.events_sql``) written once to a compressed table of a
    scratch database file in ``directory`` (the spill folder; else the system's temporary folder);
    returns the table's name for ``compile_model(staged_events=...)`` and the file (remove it with
    :func:`unstage_events`).

    Every rule reads these rows. Left to the query, DuckDB materialises them once, uncompressed, for
    all the rules; past memory that copy spills to disk and every rule reads it back from there (most
    of a 48M-message run). A checkpointed table is compressed (~5x smaller), each rule scans only the
    columns it needs, and its blocks, backed by the file, leave memory whenever the query needs room
    (an in-memory database's cannot: at 100M messages that ran out of memory). With ``partitions`` > 1
    each row also gets its lead's partition (``ls_part``, :func:`lead_part_sql`), hashed once here: a
    partition's rules then filter on a small integer, not hash every lead id again."""
    import tempfile
    import uuid
    folder = Path(directory or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ls_stage-{uuid.uuid4().hex}.duckdb"
    _run(conn, f"ATTACH {quote_literal(str(path))} AS ls_stage")
    if partitions > 1:
        events_sql = f"SELECT *, CAST(hash(lead_id) % {int(partitions)} AS INTEGER) AS ls_part FROM ({events_sql})"
    _run(conn, f"CREATE TABLE ls_stage.ev AS {events_sql}")
    _run(conn, "CHECKPOINT ls_stage")
    return "ls_stage.ev", path


def unstage_events(conn, path: Path) -> None:
    _run(conn, "DETACH ls_stage")
    for f in (path, Path(f"{path}.wal")):
        f.unlink(missing_ok=True)


# Scoring holds per-lead state (aggregates, the top-N ranking, the pivot) that DuckDB cannot always
# spill: measured on the demo population with DuckDB's memory_limit at 3 GB (2.8 GiB), 48M messages
# scored in one pass until max_count rules took a top-N aggregate (its per-group lists do not spill:
# 48M then ran out of memory), 101M ran out of memory in 2 runs of 4 before. Past this many messages
# per GiB of the limit (25M at 3 GB), the leads are scored in hash partitions, each a query of its
# own over the staged rows; a partition costs ~20% more than its share of one pass (each partition's
# rules scan the whole staged table). A log clustered by lead takes lead ranges instead (below).
ROWS_PER_GIB = 9_000_000


def memory_limit_bytes(conn) -> int | None:
    """DuckDB's memory_limit on this connection, in bytes (None when it cannot be read)."""
    import re
    try:
        value = _run(conn, "SELECT current_setting('memory_limit')")[0][0]
    except Exception:  # noqa: BLE001 - an older DuckDB without current_setting for it
        return None
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?i?B|bytes)?\s*", str(value))
    if not m:
        return None
    unit = (m.group(2) or "bytes").upper()
    scale = {"BYTES": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}.get(unit)
    return int(float(m.group(1)) * scale) if scale else None


# A lead-clustered log is scored in lead ranges of about this many messages per GiB of DuckDB's
# memory_limit, and at most RANGE_MAX_ROWS: measured on the demo population (JSON log, playbook model,
# 3 GB limit, 2 threads), a range of 9.6M messages (200,000 leads) scored in 6.3 s at 2.4 GB peak, one of
# 19M in 28.3 s (spilling; 14.7 s with a 10 GB limit), one of 4.8M in 3.2 s: per message a range costs
# the same up to the limit, and twice as much past it; below ~2M the per-range set-up shows.
RANGE_ROWS_PER_GIB = 3_400_000
RANGE_MAX_ROWS = 10_000_000


def rows_per_range(memory_bytes: int | None) -> int:
    """The messages one lead range of a clustered log may hold (:func:`lead_ranges`)."""
    if not memory_bytes:
        return RANGE_MAX_ROWS
    return max(1_000_000, min(RANGE_MAX_ROWS, int(RANGE_ROWS_PER_GIB * memory_bytes / 2**30)))


def auto_partitions(rows: int, memory_bytes: int | None) -> int:
    """How many lead partitions a whole-log run of ``rows`` messages needs (1: one pass)."""
    if not memory_bytes:
        return 1
    per_part = max(1, int(ROWS_PER_GIB * memory_bytes / 2**30))
    return max(1, -(-rows // per_part))


def score_parquet(model: Model, events_path: str | Path, as_of: datetime, leads: list[str] | None = None,
                  catalog: str | Path | None = None, conn=None, memory_limit: str | None = None,
                  threads: int | None = None, temp_dir: str | None = None,
                  stage: bool | None = None, partitions: int | None = None,
                  finish: Callable[[object, str], T] | None = None) -> pd.DataFrame | T:
    """Score the leads of a Parquet event log as of an instant with DuckDB: the same frame as
    :func:`leadscore.engine.score.score_leads` (one row per lead, ordered by score then lead_id).
    ``finish(conn, table)``: what to return instead of that frame, made from the temp table of every
    lead's result row (unordered, the engine's columns) while the connection holds it; e.g.
    :func:`write_scores`, which writes the frame's rows to a file without building it in Python.
    ``stage``: stage the rule-read event rows first (:func:`stage_events`); by default for a whole
    log of at least ``STAGE_MIN_ROWS`` messages. ``partitions``: score the leads in that many hash
    partitions, one query each over the same staged rows, so that the per-lead state of one query is
    a fraction of the whole (by default from the log's size and DuckDB's memory_limit,
    :func:`auto_partitions`). A lead's score reads only its own messages and traits and its account's
    traits, so the partitions' rows are the one query's rows. By default (no ``partitions``, no
    ``leads``, no ``stage``) a log clustered by lead is scored in lead ranges instead
    (:func:`lead_ranges`, :func:`rows_per_range`): each range's query reads only its own row groups and
    its per-lead state stays within memory, with nothing staged."""
    as_of = to_naive_utc(as_of)
    own = conn is None
    conn = conn or open_duckdb(memory_limit, threads, temp_dir)
    staged = None
    try:
        rows = log_rows(events_path) if leads is None else 0
        if partitions is None and leads is None and stage is not True:
            ranges = lead_ranges(events_path, rows_per_range(memory_limit_bytes(conn)))
            if ranges is not None:
                return _score_ranges(conn, model, events_path, as_of, catalog, ranges, finish=finish)
            partitions = auto_partitions(rows, memory_limit_bytes(conn))
        elif partitions is None:
            partitions = 1
        if partitions < 1 or (partitions > 1 and leads is not None):
            raise ValueError(f"partitions={partitions}: give a count ≥ 1, and 1 when scoring a list of leads")
        sources = register_log(conn, model, events_path, as_of, catalog)
        compiled = compile_model(model, DUCKDB, as_of, leads=leads, sources=sources)
        if stage is None:
            stage = leads is None and rows >= STAGE_MIN_ROWS
        table = None
        if stage:
            table, staged = stage_events(conn, compiled.events_sql, temp_dir or _temp_directory(conn), partitions)
            compiled = compile_model(model, DUCKDB, as_of, leads=leads, sources=sources, staged_events=table)
        if partitions == 1 and finish is None:
            return _frame(model, conn.sql(compiled.sql).to_arrow_table())
        if partitions == 1:
            _add_part_scores(conn, 0, compiled.sql)
            return finish(conn, "ls_part_scores")
        # The log's traits, accounts and population are derived once (tables of the stage, or temp tables),
        # so that a partition reads the log's Parquet files only when a rule reads raw events (video).
        derived = {"traits": sources.traits, "account_traits": sources.account_traits,
                   "population": sources.population}
        schema = "ls_stage." if staged is not None else ""
        for name, rel in derived.items():
            _run(conn, f"CREATE {'' if staged is not None else 'TEMP '}TABLE {schema}ls_all_{name} AS SELECT * FROM {rel}")
        # Each partition's rows go to a DuckDB table (its memory is DuckDB's, within the limit), then one
        # ordered fetch: Python holds the result once, not once per partition and again merged.
        for index in range(partitions):
            where = lead_part_sql("lead_id", (index, partitions))
            views = {"events": f"SELECT * FROM {sources.events} WHERE {where}",
                     "traits": f"SELECT * FROM {schema}ls_all_traits WHERE {where}",
                     "population": f"SELECT * FROM {schema}ls_all_population WHERE {where}"}
            if table is not None:
                views["stage"] = f"SELECT * EXCLUDE (ls_part) FROM {table} WHERE ls_part = {index}"
            for name, sql in views.items():
                _run(conn, f"CREATE OR REPLACE TEMP VIEW ls_part_{name} AS {sql}")
            part_sources = replace(sources, events="ls_part_events", traits="ls_part_traits",
                                   population="ls_part_population", account_traits=f"{schema}ls_all_account_traits")
            compiled = compile_model(model, DUCKDB, as_of, sources=part_sources,
                                     staged_events="ls_part_stage" if table is not None else None, ordered=False)
            _add_part_scores(conn, index, compiled.sql)
        return finish(conn, "ls_part_scores") if finish else _part_scores_frame(conn, model)
    finally:
        if partitions is not None and partitions > 1:
            for name in ("events", "traits", "population", "stage"):
                _run(conn, f"DROP VIEW IF EXISTS ls_part_{name}")
            for name in ("ls_all_traits", "ls_all_account_traits", "ls_all_population"):
                _run(conn, f"DROP TABLE IF EXISTS temp.{name}")
        if finish is not None or (partitions is not None and partitions > 1):    # the rows' temp table was made
            _run(conn, "DROP TABLE IF EXISTS temp.ls_part_scores")
        if staged is not None:
            unstage_events(conn, staged)
        if own:
            conn.close()


def _add_part_scores(conn, index: int, sql: str) -> None:
    """One partition's or range's rows (unordered) into the temp table ``ls_part_scores``: DuckDB holds
    them within its memory limit, and Python gets the result once (:func:`_part_scores_frame`)."""
    _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_part_scores AS {sql}" if index == 0 else
               f"INSERT INTO ls_part_scores {sql}")


def _part_scores_frame(conn, model: Model) -> pd.DataFrame:
    """The partitions' rows as one score frame, in a full run's order (score, then lead_id)."""
    return _frame(model, conn.sql(f"SELECT * FROM ls_part_scores {ORDER}").to_arrow_table())


def write_scores(model: Model, out: str | Path, top: int = 0):
    """A ``finish`` for :func:`score_parquet`: writes every lead's row of the score frame to the Parquet
    file ``out`` (the frame's columns, types and order, written by DuckDB's COPY, so that memory stays
    within DuckDB's limit whatever the number of leads: the frame of 2.1M leads is ~1.1 GB in Python)
    and returns (the number of leads, the first ``top`` rows as a frame)."""
    def finish(conn, table: str) -> tuple[int, pd.DataFrame]:
        leads = copy_scores(conn, model, table, out)
        top_sql = f"SELECT * FROM {table} {ORDER} LIMIT {max(0, int(top))}"
        return leads, _frame(model, conn.sql(top_sql).to_arrow_table())
    return finish


def copy_scores(conn, model: Model, table: str, out: str | Path) -> int:
    """DuckDB writes the score frame of ``table`` (the engine's result rows, one per lead) to the Parquet
    file ``out``: the frame's columns and types (``frame_select_sql``) in a full run's order (score, then
    lead_id). Returns the number of leads."""
    columns = [r[0] for r in _run(conn, f"SELECT column_name FROM (DESCRIBE {table})")]
    return _run(conn, f"COPY (SELECT {frame_select_sql(model, columns)} FROM {table} {ORDER}) "
                      f"TO {quote_literal(str(out))} (FORMAT parquet)")[0][0]      # COPY answers the rows written


def _score_ranges(conn, model: Model, events_path: str | Path, as_of: datetime, catalog,
                  ranges: list[tuple[str | None, str | None]], finish=None):
    """Score a lead-clustered log range by range (:func:`lead_ranges`): each range is one query over
    only its own row groups, with no staging. An account's traits come from any member's group call,
    so when the model reads them the whole log's group calls are copied once and read by every range.
    (Two ranges at a time on two cursors, each half the size, was measured too: the same wall time
    within the runs' spread, 10% more CPU.) A range's fixed cost is small: ~0.07 s for its views and
    an empty range's query on the 1M-lead log, of which binding, optimising and physical planning
    are ~0.025 s (DuckDB's profiler; EXPLAIN takes ~0.26 s, rendering the plan). Measured on 200,000
    leads and not kept (CPU-s per 1.9M-message range, the same scores): one shared scan of the
    range's rows feeding the rule rows, the identify traits and the population (a fan-out CTE:
    2.29-2.41 against 2.28-2.43), and the range's rule rows staged in a temp table first (2.42-2.57
    against 2.32-2.38); 5 ranges against 1 of the whole log, 12.8 against 12.4 CPU-s."""
    group_raw = None
    try:
        if any(k.startswith("account.") for k in model_trait_keys(model)):
            raw, _types = log_relation(conn, parquet_files(events_path))
            _run(conn, f"CREATE OR REPLACE TEMP TABLE ls_group_calls AS SELECT * FROM {raw} "
                       f"WHERE type = 'group' AND group_id IS NOT NULL")
            group_raw = "ls_group_calls"
        for index, bounds in enumerate(ranges):
            sources = register_log(conn, model, events_path, as_of, catalog, lead_range=bounds, group_raw=group_raw)
            compiled = compile_model(model, DUCKDB, as_of, sources=sources, ordered=False)
            _add_part_scores(conn, index, compiled.sql)
        return finish(conn, "ls_part_scores") if finish else _part_scores_frame(conn, model)
    finally:
        for name in ("ls_part_scores", "ls_group_calls"):
            _run(conn, f"DROP TABLE IF EXISTS temp.{name}")


def _temp_directory(conn) -> str | None:
    """The connection's spill folder when one was set; None for DuckDB's default (``.tmp`` under the
    working directory for an in-memory connection), so the system's temporary folder is used."""
    try:
        value = _run(conn, "SELECT current_setting('temp_directory')")[0][0]
    except Exception:  # noqa: BLE001 - an older DuckDB without the setting: the system's temporary folder
        return None
    return value if value and value != ".tmp" else None
