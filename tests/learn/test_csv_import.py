from datetime import datetime

import pytest

from leadscore.store.csv_import import CsvImportError, import_leads_csv, import_outcomes_csv, read_csv_table, slug

AS_OF = datetime(2026, 1, 1)

# The quirks of real exports: BOM, CRLF, a trailing comma on every line, a "Select" placeholder.
LEADS = ("\ufeffProspect ID,Lead Source,Total Visits,City,Converted,Decided,\r\n"
         "a1,Google,5,Mumbai,1,2026-02-01,\r\n"
         "a2,Direct,0,Select,0,2026-02-03T10:00:00Z,\r\n"
         "a3,,2.5,Pune,yes,,\r\n"
         "a4,Google,,Select,,,\r\n")


@pytest.fixture
def leads_csv(tmp_path):
    p = tmp_path / "Leads.csv"
    p.write_bytes(LEADS.encode("utf-8"))
    return p


def _traits(store):
    return {(lead, key): (value, num) for lead, key, value, num in store.query("SELECT * FROM resolved_traits")}


def test_leads_through_a_mapping_with_quirks(store, leads_csv):
    res = import_leads_csv(store, leads_csv, {"source": "Lead Source", "address.city": "City"},
                           id_column="Prospect ID", as_of=AS_OF, missing=["Select"])
    assert res.rows == 4 and res.dropped_columns == ["#7 (unnamed, empty)"]
    traits = _traits(store)
    assert traits == {("a1", "source"): ("Google", None), ("a1", "address.city"): ("Mumbai", None),
                      ("a2", "source"): ("Direct", None), ("a3", "address.city"): ("Pune", None),
                      ("a4", "source"): ("Google", None)}
    assert sorted(r[0] for r in store.query("SELECT lead_id FROM population")) == ["a1", "a2", "a3", "a4"]


def test_all_columns_become_slugged_traits_except_excluded(store, leads_csv):
    res = import_leads_csv(store, leads_csv, {}, id_column="Prospect ID", as_of=AS_OF, all_columns=True,
                           exclude=["Converted", "Decided"], missing=["Select"])
    assert res.traits == {"lead_source": "Lead Source", "total_visits": "Total Visits", "city": "City"}
    traits = _traits(store)
    assert traits[("a3", "total_visits")] == ("2.5", 2.5)
    assert ("a4", "total_visits") not in traits and ("a1", "converted") not in traits


def test_outcomes_with_dates(store, leads_csv):
    res = import_outcomes_csv(store, leads_csv, {"lead_id": "Prospect ID", "outcome": "Converted", "date": "Decided"})
    assert (res.rows, res.positives, res.negatives, res.unlabelled) == (3, 2, 1, 1)
    rows = store.query("SELECT lead_id, outcome, value, ts, source FROM outcomes ORDER BY lead_id")
    assert rows == [("a1", "converted", 1.0, datetime(2026, 2, 1), "csv:Leads.csv"),
                    ("a2", "converted", 0.0, datetime(2026, 2, 3, 10), "csv:Leads.csv"),
                    ("a3", "converted", 1.0, None, "csv:Leads.csv")]
    # a second import from the same source replaces the first
    import_outcomes_csv(store, leads_csv, {"lead_id": "Prospect ID", "outcome": "Converted"})
    assert store.query("SELECT count(*) FROM outcomes")[0][0] == 3


def test_bad_outcome_values_name_column_and_rows_and_store_nothing(store, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("id,Converted\nx1,1\nx2,maybe\nx3,0\nx4,2\n")
    with pytest.raises(CsvImportError) as e:
        import_outcomes_csv(store, p, {"lead_id": "id", "outcome": "Converted"})
    assert str(e.value) == "o.csv: column 'Converted' row 3: 'maybe' is not yes/no (1/0, yes/no, true/false, won/lost); also row 5: '2'"
    assert store.query("SELECT count(*) FROM outcomes")[0][0] == 0


def test_bad_dates_and_missing_columns_and_duplicate_ids(store, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("id,won,when\nx1,won,2026-01-05\nx2,lost,last tuesday\nx3,lost,\n")
    with pytest.raises(CsvImportError, match=r"o.csv: column 'when' row 3: 'last tuesday' is not a date"):
        import_outcomes_csv(store, p, {"lead_id": "id", "outcome": "won", "date": "when"})
    with pytest.raises(CsvImportError, match=r"names column\(s\) 'Outcome' \(for outcome outcome\) that the file does not have"):
        import_outcomes_csv(store, p, {"lead_id": "id", "outcome": "Outcome"})
    p.write_text("id,won,when\nx1,won,2026-01-05\nx2,lost,\nx1,lost,\n")
    with pytest.raises(CsvImportError, match=r"column 'id' row 4: 'x1' repeats a lead id of an earlier row"):
        import_leads_csv(store, p, {"stage": "won"}, id_column="id", as_of=AS_OF)
    assert store.query("SELECT count(*) FROM leads")[0][0] == 0


def test_ragged_rows_and_named_empty_header(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("id,a\nx,1\ny,2,3\n")
    with pytest.raises(CsvImportError, match="the header has 2 fields but row 3 has 3 fields"):
        read_csv_table(p)
    q = tmp_path / "u.csv"
    q.write_text("id,,b\nx,5,1\n")
    with pytest.raises(CsvImportError, match="column '#2' row 2: '5' has a value but the column has no name"):
        read_csv_table(q)


def test_slug():
    assert slug("What is your current occupation") == "what_is_your_current_occupation"
    assert slug(" A free copy of Mastering The Interview ") == "a_free_copy_of_mastering_the_interview"
