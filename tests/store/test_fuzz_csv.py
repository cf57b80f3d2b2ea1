"""Fuzzing the CSV lead importer (hypothesis): an import succeeds or raises CsvImportError naming the
file and column; nothing is stored on error; never a traceback."""
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from leadscore.store import open_store
from leadscore.store.csv_import import CsvImportError, import_leads_csv

cell = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8), st.just(""), st.just("Select"),
                 st.integers().map(str), st.just('"quoted, comma"'))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csv")
    store = open_store(str(tmp / "s.duckdb"))
    yield tmp, store
    store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["Id", "Email", "Title", "Employees", "", "Id"]), min_size=1, max_size=5),
       rows=st.lists(st.lists(cell, max_size=6), max_size=6),
       mapping=st.dictionaries(st.sampled_from(["email", "title", "company.employee_count"]),
                               st.sampled_from(["Email", "Title", "Employees", "Missing"]), max_size=3))
def test_csv_imports_are_all_or_nothing(shared, header, rows, mapping):
    tmp, store = shared
    path = tmp / "leads.csv"
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n", encoding="utf-8")
    count = "SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM lead_traits)"
    before = store.query(count)[0][0]
    try:
        import_leads_csv(store, path, mapping, "Id", datetime(2026, 1, 1), missing=["Select"])
    except CsvImportError as exc:
        assert "leads.csv" in str(exc)
        assert store.query(count)[0][0] == before  # nothing stored
