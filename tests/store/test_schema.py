"""Schema differences between the backends that the migrations make on purpose."""


def test_score_history_keeps_its_lead_index_on_postgresql_only(store):
    # PostgreSQL reads a lead's history through (lead_id, changed_at); DuckDB never uses that composite
    # index, and keeping it cost every live pass (migration 0017 drops it there).
    if store.dialect.name == "duckdb":
        names = [r[0] for r in store.query("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'score_history'")]
        assert names == []
    else:
        names = [r[0] for r in store.query("SELECT indexname FROM pg_indexes WHERE tablename = 'score_history' "
                                           "AND schemaname = current_schema()")]
        assert "score_history_lead" in names
    assert store.schema_version() >= 17
