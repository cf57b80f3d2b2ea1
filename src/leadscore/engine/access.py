"""Reading a message's properties and context: from JSON text, or from typed (STRUCT) columns.

An event log's ``properties`` and ``context`` are either JSON text (the store, the demo's Parquet
log) or typed columns: a STRUCT whose fields are the keys, nested for objects (``context.page.url``,
``address.country``), as Segment's and RudderStack's warehouse exports and most Parquet event logs
keep them. :class:`PropertyAccess` is chosen per log from the two columns' types and writes the SQL
that reads a dotted path, with the JSON log's semantics either way:

* a value is the text ``json_extract_string`` gives for the same JSON: a string as is, an integer
  without ".0", a double as DuckDB's JSON writer prints it (``12.5``, ``1.0``, ``1e300``), a boolean
  ``true``/``false``, a list as its JSON text; a null or absent key is NULL, and so is a field the
  struct type does not have (not an error). Numbers compare numerically as for JSON (the rules cast
  the text). An object is not a value: a path that ends on a nested struct reads NULL.
* traits (the properties of identify/group messages): a key's value is the newest *non-null* one.
  A struct has every field in every row, so a typed log cannot tell a key sent as null from a key not
  sent; the JSON log can, and there a newer explicit null clears the trait (as the store does).
  That is the one difference, and it is inherent to typed columns.

Typed values are turned into that text in SQL, per leaf type (integers and booleans by CAST, doubles
by DuckDB's JSON writer ``to_json``, which prints them as ``json_extract_string`` does; Spark by its
CAST, which prints typical doubles as its ``get_json_object`` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from leadscore.store.dialect import Dialect, quote_literal

# A column's shape: None for JSON text, else the struct's fields (name → shape) down to leaf kinds.
Shape = Union[dict, str]
TEXT, JSON, INT, FLOAT, BOOL, NESTED, OTHER = "text", "json", "int", "float", "bool", "nested", "other"
LOG_JSON_COLUMNS = ("properties", "context")

_DUCK_INT = {"tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
             "ubigint", "uhugeint"}


class PropertyTypeError(ValueError):
    """A properties/context column of a type the engine cannot read (the message names it)."""


def duckdb_shape(column: str, t) -> Shape | None:
    """The shape of a DuckDB column type (a ``DuckDBPyType``): None when it holds JSON text."""
    if t.id == "varchar":
        return None
    if t.id == "null":
        return {}                   # a column of nulls only (an Arrow null column): no key has a value
    if t.id != "struct":
        raise PropertyTypeError(f"the {column} column is {t}: expected JSON text (VARCHAR or JSON) or a STRUCT "
                                f"of the keys (nested structs for objects)")
    return _duckdb_fields(t)


def _duckdb_fields(t) -> dict:
    out = {}
    for name, child in t.children:
        if child.id == "struct":
            out[name] = _duckdb_fields(child)
        elif child.id == "varchar":
            out[name] = JSON if str(child) == "JSON" else TEXT
        elif child.id in _DUCK_INT or (child.id == "decimal" and dict(child.children).get("scale") == 0):
            out[name] = INT
        elif child.id in ("float", "double"):
            out[name] = FLOAT
        elif child.id == "boolean":
            out[name] = BOOL
        elif child.id in ("list", "array", "map"):
            out[name] = NESTED
        else:
            out[name] = OTHER
    return out


def spark_shape(column: str, dt) -> Shape | None:
    """The shape of a Spark column type (a ``pyspark.sql.types.DataType``): None for JSON text."""
    from pyspark.sql import types as T
    if isinstance(dt, T.StringType):
        return None
    if not isinstance(dt, T.StructType):
        raise PropertyTypeError(f"the {column} column is {dt.simpleString()}: expected JSON text (string) or a "
                                f"struct of the keys (nested structs for objects)")
    return _spark_fields(dt)


def _spark_fields(dt) -> dict:
    from pyspark.sql import types as T
    out = {}
    for f in dt.fields:
        t = f.dataType
        if isinstance(t, T.StructType):
            out[f.name] = _spark_fields(t)
        elif isinstance(t, T.StringType):
            out[f.name] = TEXT
        elif isinstance(t, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)) or (
                isinstance(t, T.DecimalType) and t.scale == 0):       # Parquet's unsigned 64-bit reads as decimal(20,0)
            out[f.name] = INT
        elif isinstance(t, (T.FloatType, T.DoubleType)):
            out[f.name] = FLOAT
        elif isinstance(t, T.BooleanType):
            out[f.name] = BOOL
        elif isinstance(t, (T.ArrayType, T.MapType)):
            out[f.name] = NESTED
        else:
            out[f.name] = OTHER
    return out


def leaf_paths(shape: dict, prefix: str = "") -> list[str]:
    """Every dotted path to a value (not an object) of a struct shape, depth first."""
    out = []
    for name, sub in shape.items():
        path = f"{prefix}{name}"
        out.extend(leaf_paths(sub, path + ".") if isinstance(sub, dict) else [path])
    return out


def _null(d: Dialect) -> str:
    return f"CAST(NULL AS {d.text()})"


@dataclass(frozen=True)
class _Leaf:
    """Where a path lands in a shape: the SQL of the field, its kind, and the rest of the path (only
    when the field is a JSON leaf, read further by a JSON path)."""

    expr: str
    kind: str
    rest: tuple[str, ...] = ()


class PropertyAccess:
    """How a log's properties and context are read: ``shapes`` maps each typed column to its shape
    (a column not in it is JSON text, read by the dialect's JSON functions)."""

    def __init__(self, shapes: dict[str, dict] | None = None):
        self.shapes = {k: v for k, v in (shapes or {}).items() if v is not None}

    def __eq__(self, other) -> bool:
        return isinstance(other, PropertyAccess) and other.shapes == self.shapes

    def __repr__(self) -> str:
        return f"PropertyAccess(typed={sorted(self.shapes)})"

    def typed(self, column: str) -> bool:
        return column in self.shapes

    @property
    def any_typed(self) -> bool:
        return bool(self.shapes)

    # ---- one path
    def _walk(self, d: Dialect, column: str, expr: str, path: str) -> _Leaf | None:
        """The field a dotted path names; None when the struct type has no such field."""
        shape: Shape = self.shapes[column]
        parts = path.split(".")
        for k, part in enumerate(parts):
            if not isinstance(shape, dict):
                if shape == JSON:
                    return _Leaf(expr, JSON, tuple(parts[k:]))
                return None                     # a scalar has no members: as JSON, the path is absent
            if part not in shape:               # JSON keys are case-sensitive: exact names only
                return None
            expr = f"{expr}.{d.ident(part)}"
            shape = shape[part]
        return _Leaf(expr, "struct" if isinstance(shape, dict) else shape)

    def text(self, d: Dialect, column: str, path: str, qualifier: str = "") -> str:
        """SQL: the text value at ``path`` of ``column`` (``qualifier``: a table alias, e.g. ``e.``)."""
        col = f"{qualifier}{column}"
        if column not in self.shapes:
            return d.json_str(col, path)
        return self._text(d, self._walk(d, column, col, path))

    def _text(self, d: Dialect, leaf: _Leaf | None) -> str:
        if leaf is None or leaf.kind == "struct":          # absent, or an object (not a value)
            return _null(d)
        x = leaf.expr
        if leaf.kind == JSON:
            return f"json_extract_string({x}, {quote_literal(_json_path(leaf.rest))})"
        if leaf.kind == TEXT:
            return x
        if d.name == "spark":
            if leaf.kind == NESTED:
                return f"to_json({x})"
            return f"CAST({x} AS STRING)"
        if leaf.kind in (INT, BOOL):
            return f"CAST({x} AS VARCHAR)"
        if leaf.kind == FLOAT:
            # DuckDB's JSON writer prints a double exactly as json_extract_string does (1e20 as
            # 100000000000000000000.0, 2.5e-5 as 0.000025); CAST(x AS VARCHAR) would not (1e+20, 2.5e-05).
            return f"CAST(to_json({x}) AS VARCHAR)"
        return f"json_extract_string(to_json({x}), '$')"    # lists, dates, decimals: as their JSON gives them

    def trait_value(self, d: Dialect, column: str, path: str, qualifier: str = "") -> str | None:
        """SQL: a typed trait's value at ``path`` (NULL: no value this message), or None when the path
        can never hold a value (absent from the struct type, or an object)."""
        col = f"{qualifier}{column}"
        leaf = self._walk(d, column, col, path)
        if leaf is None or leaf.kind == "struct":
            return None
        text = self._text(d, leaf)
        if leaf.kind == JSON:    # a JSON leaf may hold an object there: not a value (its members are)
            return f"CASE WHEN json_type({leaf.expr}, {quote_literal(_json_path(leaf.rest))}) <> 'OBJECT' THEN {text} END"
        return text

    # ---- traits
    def trait_rows_sql(self, d: Dialect, src: str, owner: str, keys: set[str] | None) -> str:
        """(owner, key, value, ts, message_id) for the trait keys of ``src``'s typed properties, one
        row per message and key holding a value; ``keys`` None: every leaf of the struct type."""
        names = sorted(k for k in keys if k) if keys is not None else leaf_paths(self.shapes["properties"])
        pairs = [(k, v) for k in names if (v := self.trait_value(d, "properties", k, "s.")) is not None]
        if not pairs:
            return (f"SELECT s.{owner} AS owner, CAST('' AS {d.text()}) AS key, CAST(NULL AS {d.text()}) AS value, "
                    f"s.ts, s.message_id FROM {src} s WHERE FALSE")
        if d.name == "spark":
            items = ", ".join(f"named_struct('key', {quote_literal(k)}, 'value', {v})" for k, v in pairs)
            return (f"SELECT s.{owner} AS owner, kv.key AS key, kv.value AS value, s.ts, s.message_id FROM {src} s "
                    f"LATERAL VIEW inline(array({items})) kv AS key, value WHERE kv.value IS NOT NULL")
        keys_sql = ", ".join(quote_literal(k) for k, _ in pairs)
        values_sql = ", ".join(v for _, v in pairs)
        return (f"SELECT owner, key, value, ts, message_id FROM ("
                f"SELECT s.{owner} AS owner, s.ts, s.message_id, unnest([{keys_sql}]) AS key, "
                f"unnest([{values_sql}]) AS value FROM {src} s) x WHERE value IS NOT NULL")


def _json_path(parts: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{p}"' for p in parts)


JSON_ACCESS = PropertyAccess()
