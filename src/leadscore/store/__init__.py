"""Where leadscore keeps events, leads, models and scores: DuckDB by default, PostgreSQL on a server."""
from leadscore.store.base import IngestResult, Store, StoreUnavailable, open_store
from leadscore.store.dialect import DUCKDB, POSTGRES, SPARK, Dialect

__all__ = ["IngestResult", "Store", "StoreUnavailable", "open_store", "Dialect", "DUCKDB", "POSTGRES", "SPARK"]
