"""SQL dialects: the few expressions that differ between DuckDB, PostgreSQL and Spark SQL.

The engine writes one query shape; a dialect fills in JSON access, safe casts, regexes and
time arithmetic. Everything else is the ANSI subset the three engines share.
"""
from __future__ import annotations

from dataclasses import dataclass


def quote_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Dialect:
    name: str

    # --- JSON properties/context (stored as JSON text in DuckDB, JSONB in PostgreSQL, STRING in Spark)
    def json_str(self, col: str, path: str) -> str:
        """Text value at a dotted path (``page.path``) of a JSON column, NULL when absent."""
        parts = path.split(".")
        if self.name == "postgres":
            return f"({col} #>> {quote_literal('{' + ','.join(parts) + '}')})"
        json_path = "$" + "".join(f'."{p}"' if not p.isidentifier() else f".{p}" for p in parts)
        if self.name == "spark":
            return f"get_json_object({col}, {quote_literal(json_path)})"
        return f"json_extract_string({col}, {quote_literal(json_path)})"

    def json_num(self, col: str, path: str) -> str:
        return self.to_num(self.json_str(col, path))

    def to_num(self, expr: str) -> str:
        if self.name == "postgres":
            return f"ls_num({expr})"  # defined by the PostgreSQL migration: NULL instead of an error
        return f"try_cast({expr} AS DOUBLE)"

    # --- strings
    def regex(self, expr: str, pattern: str, ignore_case: bool = False) -> str:
        if self.name == "postgres":
            op = "~*" if ignore_case else "~"
            return f"({expr} {op} {quote_literal(pattern)})"
        if ignore_case:
            pattern = "(?i)" + pattern
        if self.name == "spark":
            return f"({expr} RLIKE {quote_literal(pattern)})"
        return f"regexp_matches({expr}, {quote_literal(pattern)})"

    def lower(self, expr: str) -> str:
        return f"lower({expr})"

    def split_part(self, expr: str, sep: str, idx: int) -> str:
        if self.name == "spark":
            return f"split_part({expr}, {quote_literal(sep)}, {idx})"
        return f"split_part({expr}, {quote_literal(sep)}, {idx})"

    # --- time
    def ts_literal(self, iso: str) -> str:
        return f"TIMESTAMP {quote_literal(iso)}"

    def seconds_between(self, earlier: str, later: str) -> str:
        """Seconds from ``earlier`` to ``later`` as a double."""
        if self.name == "postgres":
            return f"EXTRACT(EPOCH FROM ({later} - {earlier}))::double precision"
        if self.name == "spark":
            return f"(unix_micros({later}) - unix_micros({earlier})) / 1e6"
        return f"(epoch_us({later}) - epoch_us({earlier})) / 1e6"

    def day_of(self, ts: str) -> str:
        if self.name == "spark":
            return f"to_date({ts})"
        return f"CAST({ts} AS DATE)"

    def date_trunc_day(self, ts: str) -> str:
        return f"date_trunc('day', {ts})"

    # --- numbers
    def power(self, base: str, exponent: str) -> str:
        return f"power({base}, {exponent})"

    def round(self, expr: str, digits: int) -> str:
        if self.name == "postgres":
            return f"round(({expr})::numeric, {digits})::double precision"
        return f"round({expr}, {digits})"

    def double(self) -> str:
        return "DOUBLE PRECISION" if self.name == "postgres" else "DOUBLE"

    def bool_or(self, expr: str) -> str:
        return f"bool_or({expr})"

    def first_by(self, expr: str, order: list[str]) -> str:
        """The aggregate: ``expr`` of the group's row that comes first by ``order`` (ascending; the
        columns must make the order total)."""
        if self.name == "postgres":
            return f"(array_agg({expr} ORDER BY {', '.join(order)}))[1]"
        if self.name == "spark":
            return f"min_by({expr}, struct({', '.join(order)}))"
        return f"arg_min({expr}, ({', '.join(order)}))"


DUCKDB = Dialect("duckdb")
POSTGRES = Dialect("postgres")
SPARK = Dialect("spark")


def _ident(self: Dialect, name: str) -> str:
    """A quoted identifier (Spark quotes with backticks)."""
    if self.name == "spark":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _to_ts(self: Dialect, expr: str) -> str:
    """An ISO-8601 text → timestamp, NULL when it does not parse."""
    if self.name == "postgres":
        return f"ls_ts({expr})"
    return f"try_cast({expr} AS TIMESTAMP)"


Dialect.ident = _ident  # type: ignore[attr-defined]
Dialect.to_ts = _to_ts  # type: ignore[attr-defined]


def _text(self: Dialect) -> str:
    """The unbounded text type for CAST (Spark wants STRING; its VARCHAR needs a length)."""
    if self.name == "spark":
        return "STRING"
    if self.name == "postgres":
        return "TEXT"
    return "VARCHAR"


Dialect.text = _text  # type: ignore[attr-defined]


def _ts_plus(self: Dialect, expr: str, td) -> str:
    """A timestamp plus a duration (a ``timedelta``), exact to the microsecond."""
    us = int(round(td.total_seconds() * 1e6))
    if self.name == "spark":
        return f"({expr} + make_dt_interval(0, 0, 0, {us / 1e6!r}))"
    return f"({expr} + INTERVAL '{us} microseconds')"


def _list_of(self: Dialect, exprs: list[str]) -> str:
    """One array value of the given expressions (1-based ``[k]`` indexing in DuckDB and PostgreSQL)."""
    if self.name == "postgres":
        return f"ARRAY[{', '.join(exprs)}]"
    if self.name == "spark":
        return f"array({', '.join(exprs)})"
    return f"list_value({', '.join(exprs)})"


Dialect.ts_plus = _ts_plus  # type: ignore[attr-defined]
Dialect.list_of = _list_of  # type: ignore[attr-defined]


def _json_str_many(self: Dialect, col: str, paths: list[str]) -> str | None:
    """One parse of a JSON column for several dotted paths: a list whose k-th item (``[k]``, 1-based)
    is the text at paths[k-1]; None where the dialect has no such form (then use json_str per path)."""
    if self.name != "duckdb" or not paths:
        return None
    items = []
    for path in paths:
        parts = path.split(".")
        items.append(quote_literal("$" + "".join(f'."{p}"' if not p.isidentifier() else f".{p}" for p in parts)))
    return f"json_extract_string({col}, [{', '.join(items)}])"


Dialect.json_str_many = _json_str_many  # type: ignore[attr-defined]


def _string_relation(self: Dialect, column: str, items: list[str]) -> str:
    """A SELECT of one text column holding ``items``: one literal list, so a long lead list costs the
    planner one constant instead of an IN list repeated in every filter."""
    if not items:
        return f"SELECT CAST(NULL AS {self.text()}) AS {column} WHERE FALSE"
    lits = ", ".join(quote_literal(i) for i in items)
    if self.name == "postgres":
        return f"SELECT unnest(ARRAY[{lits}]::text[]) AS {column}"
    if self.name == "spark":
        return f"SELECT explode(array({lits})) AS {column}"
    return f"SELECT unnest([{lits}]) AS {column}"


Dialect.string_relation = _string_relation  # type: ignore[attr-defined]
