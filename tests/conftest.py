"""Shared fixtures: real stores. Each PostgreSQL store lives in a schema of its own, dropped after the
test, so parallel test processes (and developers) never see each other's rows."""
from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import psycopg
import pytest

from leadscore.store import open_store

PG_URL = os.environ.get("LEADSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_url():
    """A postgresql:// URL whose search_path is a fresh schema (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def duckdb_url(tmp_path):
    return str(tmp_path / "leadscore.duckdb")


@pytest.fixture(params=["duckdb", "postgres"])
def store_url(request, tmp_path):
    """Both backends: a test using this runs once on DuckDB and once on PostgreSQL."""
    if request.param == "duckdb":
        yield str(tmp_path / "leadscore.duckdb")
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()
