"""Versioned schema migrations: numbered SQL files under ``migrations/``, applied once each, in order.

A file whose first line is ``-- postgres-only`` or ``-- duckdb-only`` runs on that backend alone.
"""
from __future__ import annotations

import re
from importlib import resources

_TYPES = {
    "duckdb": {"json": "JSON", "double": "DOUBLE", "ts": "TIMESTAMP"},
    "postgres": {"json": "JSONB", "double": "DOUBLE PRECISION", "ts": "TIMESTAMP"},
}


def migration_files() -> list[tuple[int, str, str]]:
    out = []
    for entry in resources.files("leadscore.store").joinpath("migrations").iterdir():
        m = re.match(r"(\d{4})_(.+)\.sql$", entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(out)


def render(sql: str, dialect: str) -> str | None:
    first = sql.lstrip().splitlines()[0] if sql.strip() else ""
    only = re.match(r"--\s*(\w+)-only", first)
    if only and only.group(1) != dialect:
        return None
    if dialect == "postgres":  # $$-quoted bodies hold braces of their own
        return re.sub(r"\{(json|double|ts)\}", lambda m: _TYPES[dialect][m.group(1)], sql)
    return sql.format(**_TYPES[dialect])


def split_statements(sql: str) -> list[str]:
    """Split on semicolons outside $$ bodies (PostgreSQL functions) and comments."""
    parts, buf, in_dollar = [], [], False
    for line in sql.splitlines():
        if line.strip().startswith("--") and not in_dollar:
            continue
        if line.count("$$") % 2 == 1:
            in_dollar = not in_dollar
        buf.append(line)
        if not in_dollar and line.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip().rstrip(";")
            if stmt:
                parts.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        parts.append(rest)
    return parts
