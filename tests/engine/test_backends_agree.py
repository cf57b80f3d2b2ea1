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


def _same_rows(full, part):
    full = full.set_index("lead_id").loc[sorted(part["lead_id"])]
    part = part.set_index("lead_id").sort_index()
    assert list(full.index) == list(part.index)
    for col in part.columns:
        if col == "last_activity":
            continue
        if part[col].dtype.kind in "fi":
            assert np.allclose(full[col].fillna(-1e9).to_numpy(float), part[col].fillna(-1e9).to_numpy(float), atol=1e-9), col
        else:
            assert list(full[col]) == list(part[col]), col


def test_a_targeted_rescore_reads_only_its_leads_and_equals_the_full_run(stores):
    # score_leads(leads=...) reads the leads' messages through their ids (scoped sources); every row
    # must equal the full run's, for leads with anonymous pre-identify activity among them.
    as_of = datetime(2026, 9, 15, 12, 30)
    model = load_model(default_model_path())
    for store in stores:
        full = score_leads(store, model, as_of)
        with_aliases = [r[0] for r in store.query(
            "SELECT DISTINCT i.lead_id FROM identities i JOIN events e ON e.anonymous_id = i.alias_id "
            "WHERE e.user_id IS NULL ORDER BY 1 LIMIT 150")]
        others = [r[0] for r in store.query("SELECT lead_id FROM population ORDER BY lead_id DESC LIMIT 150")]
        assert len(with_aliases) == 150
        part = score_leads(store, model, as_of, leads=with_aliases + others)
        assert len(part) == len(set(with_aliases + others))
        _same_rows(full, part)
        assert score_leads(store, model, as_of, leads=[]).empty
