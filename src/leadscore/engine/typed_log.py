"""A JSON-text Parquet event log converted into a typed one: ``properties`` and ``context`` as
STRUCT columns (one field per key, nested structs for objects), the shape warehouse exports of
Segment or RudderStack have, which the engine reads by field instead of parsing JSON.

Two passes with DuckDB: each message's ``json_structure``, grouped and merged, gives every key's
type across the whole log (:func:`log_structure`); ``json_transform`` then writes each message into
that struct (every other column is copied as is, in the same order). A key's type:

* only strings → VARCHAR; only booleans → BOOLEAN; only integers → UBIGINT when none is negative,
  else BIGINT when all fit (one more pass checks, only for keys with both signs), else
  DECIMAL(38,0): every 64-bit value stays exact;
* integers and fractions → DOUBLE (numbers compare as before; an integral value then reads ``1.0``
  instead of ``1`` as text);
* only objects → a nested STRUCT of their keys (an object never seen with a key is dropped: an
  object is not a value);
* anything else — different JSON types across messages (a number here, a string there), arrays,
  only nulls, or sibling keys differing only in case (a STRUCT's field names are case-insensitive)
  → VARCHAR holding exactly the text ``json_extract_string`` gives (a string as is, a number as
  written, an array or object as its JSON text), so reading the key gives the JSON log's value.
  Such a key's object members are not split into fields (``key.member`` reads NULL on the typed log).

What a typed log cannot keep is the difference between a key sent as null and a key not sent (see
:mod:`leadscore.engine.access`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from leadscore.engine.access import LOG_JSON_COLUMNS
from leadscore.store.dialect import quote_literal

_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_SIGNED = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT"}


class TypedLogError(ValueError):
    """The log cannot be converted (not JSON objects, already typed, ...); the message says why."""


def typed_structure(structure, column: str = "properties", bigint: frozenset = frozenset()) -> dict | None:
    """json_group_structure's description of a column → the json_transform structure to write it
    with (nested dicts of DuckDB type names), by the rules of this module; None when no message
    has a key (nothing to type). ``bigint``: the dotted paths of the HUGEINT keys (integers of both
    signs) whose values all fit a BIGINT (see :func:`hugeint_paths`)."""
    if not isinstance(structure, dict):
        return None
    clash = _clash(structure)
    if clash:
        raise TypedLogError(f"the {column} column has keys differing only in case ({', '.join(clash)}): "
                            f"a STRUCT's field names are case-insensitive, so it cannot hold both")
    return _fields(structure, "", bigint) or None


def _clash(obj: dict) -> list[str]:
    seen: dict[str, list[str]] = {}
    for k in obj:
        seen.setdefault(k.lower(), []).append(k)
    return [k for ks in seen.values() if len(ks) > 1 for k in ks]


def _fields(obj: dict, prefix: str, bigint: frozenset) -> dict:
    out = {}
    for key, sub in obj.items():
        t = _leaf(sub, prefix + key, bigint)
        if t is not None:
            out[key] = t
    return out


def _leaf(sub, path: str, bigint: frozenset) -> object | None:
    if isinstance(sub, dict):
        if _clash(sub):
            return "VARCHAR"                      # 'a' and 'A': the object kept whole, as JSON text
        return _fields(sub, path + ".", bigint) or None   # an object that never had a key: no field
    if isinstance(sub, list):
        return "VARCHAR"                          # arrays: their JSON text
    if sub in ("VARCHAR", "BOOLEAN", "DOUBLE"):
        return sub
    if sub in _INTEGERS:
        return "BIGINT" if sub in _SIGNED else "UBIGINT"
    if sub == "HUGEINT":                          # negative integers and unsigned ones
        return "BIGINT" if path in bigint else "DECIMAL(38,0)"    # beyond BIGINT: exact in 38 digits
    return "VARCHAR"                              # JSON (mixed types), NULL (only nulls), ...


def hugeint_paths(structure, prefix: str = "") -> list[str]:
    """The dotted paths (through objects only) whose integers have both signs (json_structure's HUGEINT)."""
    if not isinstance(structure, dict) or _clash(structure):
        return []
    out = []
    for key, sub in structure.items():
        if sub == "HUGEINT":
            out.append(prefix + key)
        elif isinstance(sub, dict):
            out.extend(hugeint_paths(sub, prefix + key + "."))
    return out


def _fitting_bigint(conn, raw: str, column: str, paths: list[str]) -> frozenset:
    """The paths whose integers all fit a BIGINT: one more pass, only when some key has both signs."""
    if not paths:
        return frozenset()
    items = ", ".join(quote_literal("$" + "".join(f'."{p}"' for p in path.split("."))) for path in paths)
    aggs = ", ".join(f"min(TRY_CAST(v[{k + 1}] AS HUGEINT)), max(TRY_CAST(v[{k + 1}] AS HUGEINT))"
                     for k in range(len(paths)))
    row = conn.execute(f"SELECT {aggs} FROM (SELECT json_extract_string({column}, [{items}]) AS v FROM {raw})").fetchall()[0]
    ok = [row[2 * k] is not None and -2**63 <= row[2 * k] and row[2 * k + 1] < 2**63 for k in range(len(paths))]
    return frozenset(p for p, fits in zip(paths, ok) if fits)


def log_structure(conn, raw: str, column: str):
    """The JSON structure of a column over every message (as ``json_group_structure`` describes one:
    nested dicts / [element] / type names), None when every message's is null.

    json_group_structure itself keeps every value until the end (it ran out of 3 GB at 1M messages),
    so each message's ``json_structure`` is computed in the scan, the few distinct ones are grouped,
    and they are merged here (:func:`merge_structures`). A context repeats per device and session
    (38k distinct in the demo's 1M messages): deduplicating it first skips most of its parses;
    properties are mostly distinct, so they are not."""
    rel = f"(SELECT DISTINCT {column} FROM {raw})" if column == "context" else raw
    rows = conn.execute(f"SELECT json_structure({column}) AS s FROM {rel} WHERE {column} IS NOT NULL "
                        f"GROUP BY s ORDER BY s").fetchall()
    merged = None
    for (s,) in rows:
        merged = merge_structures(merged, _empty_objects(json.loads(s)))
    return merged


def _empty_objects(structure):
    """One message's structure with its empty objects as {}: json_structure describes ``{}`` as
    "JSON", which for a single message (outside an array's elements) means nothing else."""
    if structure == "JSON":
        return {}
    if isinstance(structure, dict):
        return {k: _empty_objects(v) for k, v in structure.items()}
    return structure


def merge_structures(a, b):
    """Two JSON structures merged as DuckDB's json_group_structure merges them: objects by key,
    arrays by element, null giving way to anything, integers of both signs → HUGEINT, integers with
    fractions → DOUBLE, any other mix → JSON. ``None``: nothing seen yet."""
    if a is None or a == "NULL":
        return b
    if b is None or b == "NULL" or a == b:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge_structures(out.get(k), v)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return [merge_structures(a[0] if a else None, b[0] if b else None)]
    if isinstance(a, str) and isinstance(b, str):
        kinds = {a, b}
        if kinds <= _INTEGERS | {"HUGEINT"}:
            if kinds <= _INTEGERS - _SIGNED:
                return "UBIGINT"
            if kinds <= _SIGNED:
                return "BIGINT"
            return "HUGEINT"                      # a negative integer and an unsigned one
        if kinds <= _INTEGERS | {"HUGEINT", "DOUBLE"}:
            return "DOUBLE"
    return "JSON"


def struct_sql(structure: dict) -> str:
    """The DuckDB type of a json_transform structure (for display and CAST)."""
    fields = ", ".join(f'"{k.replace(chr(34), chr(34) * 2)}" '
                       f"{struct_sql(v) if isinstance(v, dict) else v}" for k, v in structure.items())
    return f"STRUCT({fields})"


@dataclass
class Converted:
    path: Path
    rows: int
    structures: dict[str, dict | None]       # column → its json_transform structure (None: left as JSON text)
    seconds: float


def convert_to_typed(src: str | Path, dst: str | Path, conn=None, row_group_size: int | None = None) -> Converted:
    """Write ``dst``, the Parquet log ``src`` (a file or a folder of files) with typed properties
    and context. Written whole or not at all (a temporary name, then a rename). ``conn``: a DuckDB
    connection to run on (its memory limit and threads apply; default: a new in-memory one)."""
    import duckdb

    from leadscore.engine.parquet import EventLogError, check_columns, log_relation, parquet_files
    started = time.perf_counter()
    own = conn is None
    conn = conn or duckdb.connect()
    out = Path(dst)
    tmp = out.with_name(out.name + ".part")
    try:
        files = parquet_files(src)
        if any(Path(f).resolve() == out.resolve() for f in files):
            raise TypedLogError(f"{dst}: is the log being converted; write the typed log elsewhere")
        conn.execute("SET enable_progress_bar = false")
        raw, types = log_relation(conn, files)
        check_columns(src, types)
        text_cols = [c for c in LOG_JSON_COLUMNS if conn.type(types[c]).id == "varchar"]
        if not text_cols:
            raise TypedLogError(f"{src}: properties and context are typed (STRUCT columns) already")
        for c in LOG_JSON_COLUMNS:
            if c not in text_cols and conn.type(types[c]).id != "struct":
                raise TypedLogError(f"{src}: the {c} column is {types[c]}: expected JSON text or a STRUCT")
        structures: dict[str, dict | None] = {}
        for c in text_cols:
            parsed = log_structure(conn, raw, c)
            if parsed is not None and not isinstance(parsed, dict):
                raise TypedLogError(f"{src}: the {c} column holds {_kind(parsed)} in some messages; a typed log "
                                    f"needs a JSON object (or null) in every message")
            bigint = _fitting_bigint(conn, raw, c, hugeint_paths(parsed))
            structures[c] = typed_structure(parsed, c, bigint)
        cols = []
        for c in types:
            if structures.get(c) is not None:
                st = structures[c]
                cols.append(f"{_texts_of_json(f'json_transform({c}, {quote_literal(json.dumps(_as_json(st)))})', st)} AS {c}")
            else:
                cols.append(c)
        opts = "FORMAT parquet, COMPRESSION zstd"
        if row_group_size:
            opts += f", ROW_GROUP_SIZE {int(row_group_size)}"
        out.parent.mkdir(parents=True, exist_ok=True)
        conn.execute("SET preserve_insertion_order = true")      # the log's order (lead by lead) kept
        conn.execute(f"COPY (SELECT {', '.join(cols)} FROM {raw}) TO {quote_literal(str(tmp))} ({opts})")
        rows = conn.execute(f"SELECT count(*) FROM read_parquet({quote_literal(str(tmp))})").fetchall()[0][0]
        tmp.replace(out)
        return Converted(out, rows, structures, time.perf_counter() - started)
    except EventLogError:
        raise
    except duckdb.Error as exc:
        raise TypedLogError(f"{src}: converting to a typed log failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        if own:
            conn.close()


def _as_json(structure: dict) -> dict:
    """The structure with its VARCHAR leaves as JSON, for json_transform: transformed straight to
    VARCHAR, a number keeps its source text (``1e+16``), where json_extract_string reprints it
    (``10000000000000000.0``); :func:`_texts_of_json` then turns them into that text."""
    return {k: _as_json(v) if isinstance(v, dict) else ("JSON" if v == "VARCHAR" else v) for k, v in structure.items()}


def _texts_of_json(expr: str, structure: dict) -> str:
    """``expr`` (a struct made with :func:`_as_json`'s structure) with each JSON leaf as the VARCHAR
    json_extract_string gives for it, nested structs rebuilt field by field (NULL stays NULL)."""
    items = []
    for k, v in structure.items():
        field = f"struct_extract({expr}, {quote_literal(k)})"
        if isinstance(v, dict):
            field = _texts_of_json(field, v)
        elif v == "VARCHAR":
            field = f"json_extract_string({field}, '$')"
        items.append(f'"{k.replace(chr(34), chr(34) * 2)}" := {field}')
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({', '.join(items)}) END"


def _kind(structure) -> str:
    if isinstance(structure, list):
        return "an array"
    return {"VARCHAR": "a string", "JSON": "values of several JSON types"}.get(structure, f"{structure} values")
