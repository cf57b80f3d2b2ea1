"""DuckDB and PostgreSQL give identical scores, for every lead and every rule, on a generated
population scored with the shipped default model. The population is loaded once into DuckDB through
the normal ingestion path; the same stored rows are copied into PostgreSQL, so any difference is
the engine's. Size: LEADSCORE_AGREE_LEADS (default 10,000)."""
import os
from datetime import datetime

import numpy as np
import pytest

from leadscore.demo import DemoConfig, load_population
from leadscore.demo.catalog import write_catalog
from leadscore.engine import score_leads
from leadscore.model import default_model_path, load_model
from leadscore.store import open_store
from leadscore.video.catalog import import_catalog, load_catalog

LEADS = int(os.environ.get("LEADSCORE_AGREE_LEADS", "10000"))
END = datetime(2026, 11, 1)
TABLES = ("events", "identities", "leads", "lead_traits", "account_traits", "video_catalog")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agree")
    duck = open_store(str(tmp / "agree.duckdb"))
    load_population(duck, DemoConfig(leads=LEADS, seed=11, end=END), batch_leads=2000)
    import_catalog(duck, load_catalog(write_catalog(tmp / "videos.yaml")), END)
    import psycopg

    from tests.conftest import PG_URL, pg_schema_url
    schema = f"agree_{os.getpid()}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    pg = open_store(pg_schema_url(schema))
    with pg.transaction() as conn:
        for table in TABLES:
            data = duck.query_arrow(f"SELECT * FROM {table}")
            cols = data.column_names
            rows = list(zip(*(data.column(c).to_pylist() for c in cols)))
            pg._bulk_insert(conn, table, cols, rows, conflict="plain")
    yield duck, pg
    duck.close()
    pg.close()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_duckdb_and_postgres_agree_on_every_lead(stores):
    # mid-year: windows, decay steps and inactivity are all in play for part of the population
    as_of = datetime(2026, 9, 15, 12, 30)
    duck, pg = stores
    model = load_model(default_model_path())
    a = score_leads(duck, model, as_of).set_index("lead_id").sort_index()
    b = score_leads(pg, model, as_of).set_index("lead_id").sort_index()
    assert len(a) == LEADS and list(a.index) == list(b.index)
    for col in a.columns:
        if a[col].dtype.kind in "fi":
            diff = np.abs(a[col].fillna(-1e9).to_numpy(float) - b[col].fillna(-1e9).to_numpy(float))
            assert diff.max() < 1e-6, f"{col}: largest difference {diff.max()} at {a.index[diff.argmax()]}"
        else:
            assert (a[col] == b[col]).all(), f"{col} differs for {list(a.index[a[col] != b[col]][:5])}"
    # the population is not degenerate: every tier and most rules occur
    assert set(a["tier"]) == {"cold", "warm", "hot"}
    fired = [c for c in a.columns if c.startswith("hits:") and a[c].sum() > 0]
    assert len(fired) >= 35
