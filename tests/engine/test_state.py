"""Incremental scoring from a persisted state (leadscore.engine.state): a full run writes the state,
later runs read only the log's new files, re-score only the leads whose score can have changed, and
give exactly what a full run of the whole log gives at the new instant, on every lead and column."""
from __future__ import annotations

import os
import re
from datetime import datetime

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from leadscore.demo import DemoConfig, write_population
from leadscore.engine.incremental import half_lives_as_steps
from leadscore.engine.parquet import lead_range_sql, score_parquet
from leadscore.engine.state import _cluster, _lead_ranges, _overlap, score_with_state, state_path
from leadscore.engine.typed_log import convert_to_typed
from leadscore.model import load_model, parse_model
from tests.engine.helpers import identify, model, page, track
from tests.engine.test_parquet import assert_same_scores, write_log

STATE_MODEL = """
name: state
groups: {persona: {axis: fit}, company: {axis: fit}, email: {axis: engagement}, web: {axis: engagement},
         product: {axis: engagement}}
tiers: [{name: cold}, {name: hot, min: 50}]
stages: [{name: subscriber}, {name: lead, when: {trait: {email: {exists: true}}}}]
rules:
  - {name: vp, group: persona, trait: {seniority: vp}, points: 30}
  - {name: saas, group: company, trait: {account.industry: SaaS}, points: 25}
  - {name: open, group: email, event: Email Opened, points: 10, decay: {steps: [{after: 30d, keep: 0.5}]}}
  - {name: recent_pricing, group: web, page: /pricing, points: 20, window: 7d}
  - {name: idle, group: web, type: page, inactivity: {after: 60d}, points: -10}
  - {name: demo, group: product, event: Demo Requested, points: 50}
"""
T1, T2, T3 = datetime(2026, 5, 1), datetime(2026, 5, 3), datetime(2026, 5, 5)


def group(uid: str, at: str, mid: str, **traits) -> dict:
    return {"type": "group", "userId": uid, "groupId": "acc1", "timestamp": at, "traits": traits, "messageId": mid}


DAY1 = [   # consumed by the full run as of T1
    identify("a", "2026-01-01T00:00:00Z", email="a@acme.com", seniority="manager"),
    track("a", "Email Opened", "2026-04-02T00:00:00Z"),      # 29 days old at T1, 31 at T2: the decay step is crossed
    identify("a", "2026-05-02T00:00:00Z", seniority="vp"),   # already in the log, due only after T1
    identify("b", "2025-12-01T00:00:00Z", seniority="vp"),   # b's newest seniority is director's (not vp)
    identify("b", "2026-02-01T00:00:00Z", seniority="director"),
    identify("b", "2026-01-01T00:00:00Z", email="b@acme.com"),
    track("b", "Email Opened", "2026-04-20T00:00:00Z"),      # 11 → 13 days: nothing crossed
    track("b", "Demo Requested", "2026-04-21T00:00:00Z"),
    track("b", "Demo Requested", "2026-05-04T00:00:00Z"),    # already in the log, due only after T2
    page("c", "/pricing", "2026-04-25T12:00:00Z"),           # 5.5 → 7.5 days: leaves the 7-day window
    page("d", "/blog/x", "2026-03-03T00:00:00Z"),            # 59 → 61 days: becomes inactive
    identify("e", "2026-01-01T00:00:00Z", email="e@acme.com", seniority="manager"),
    track("e", "Email Opened", "2026-04-25T00:00:00Z"),
    group("g", "2026-01-01T00:00:00Z", "g1", name="Acme"),    # g's account, acc1
    track("g", "Demo Requested", "2026-04-10T00:00:00Z"),
    page("k", "/blog/y", "2026-04-30T00:00:00Z"),
]
DAY2 = [   # a new file, read by the incremental run as of T2
    identify("e", "2026-05-02T00:00:00Z", seniority="vp"),    # identify traits change a fit rule
    track("f", "Demo Requested", "2026-05-02T08:00:00Z"),     # a new lead
    group("h", "2026-05-02T00:00:00Z", "g2", industry="SaaS"),  # a new member sets acc1's industry: g too
    track("k", "Email Opened", "2026-04-29T00:00:00Z"),       # a late arrival (before T1)
]
# Hand-worked as of T2: a's open halves (10 → 5) and its vp identify of May 2 is due (+30); b keeps open 10 + demo 50; c's pricing leaves the
# window (20 → 0); d turns idle (-10); e: open 10 + vp 30; f: demo 50; g: demo 50 + SaaS 25; h: SaaS 25;
# k: its late open, 4 days old, 10.
AT_T1 = {"a": 10, "b": 60, "c": 20, "d": 0, "e": 10, "g": 50, "k": 0}
AT_T2 = {"a": 35, "b": 60, "c": 0, "d": -10, "e": 40, "f": 50, "g": 75, "h": 25, "k": 10}


def _scores(frame) -> dict:
    return {k: float(v) for k, v in frame.set_index("lead_id")["score"].items()}


def _logs(tmp_path, typed: bool):
    """The log folder with day 1 only, and a function adding day 2 (JSON text or typed files)."""
    log, raw = tmp_path / "log", tmp_path / "raw"
    log.mkdir(parents=True)
    raw.mkdir()

    def add(name, msgs):
        src = write_log(raw / f"{name}.parquet", msgs)
        if typed:
            convert_to_typed(src, log / f"{name}.parquet")
        else:
            os.replace(src, log / f"{name}.parquet")
    add("day1", DAY1)
    return log, lambda: add("day2", DAY2)


@pytest.mark.parametrize("typed", [False, True], ids=["json", "typed"])
def test_new_files_rescore_only_the_changed_leads_and_equal_a_full_run(tmp_path, typed):
    log, add_day2 = _logs(tmp_path, typed)
    state = tmp_path / "state"
    m = model(STATE_MODEL)
    first = score_with_state(m, log, state, T1)
    assert first.full and "no state" in first.reason
    assert _scores(first.frame) == AT_T1
    assert_same_scores(score_parquet(m, log, T1), first.frame)

    add_day2()
    second = score_with_state(m, log, state, T2)
    assert not second.full, second.reason
    assert [os.path.basename(f) for f in second.new_files] == ["day2.parquet"] and second.new_rows == 4
    assert second.why == {"messages due since the last run": 1, "crossed a window, decay or inactivity edge": 2,
                          "new messages": 4, "their account changed": 1}
    rescored = dict(duckdb.connect(str(state_path(state)), read_only=True).sql(
        "SELECT lead_id, why FROM rescored").fetchall())
    assert rescored == {"a": "messages due since the last run",
                        "c": "crossed a window, decay or inactivity edge",
                        "d": "crossed a window, decay or inactivity edge",
                        "e": "new messages", "f": "new messages", "h": "new messages", "k": "new messages",
                        "g": "their account changed"}           # b: nothing changed
    assert second.rescored == 8 and second.leads == 9
    # The run returns the re-scored leads' rows only (b's row is unchanged in the state), in a full
    # run's order: score descending, then lead_id.
    assert [(r.lead_id, r.score) for r in second.rows.itertuples()] == [
        ("g", 75), ("f", 50), ("e", 40), ("a", 35), ("h", 25), ("k", 10), ("c", 0), ("d", -10)]
    assert list(second.rows.columns) == list(first.rows.columns)
    # The top of the whole table, read from the state: b (60, not re-scored) is second.
    assert [(r.lead_id, r.score) for r in second.top(3).itertuples()] == [("g", 75), ("b", 60), ("f", 50)]
    assert _scores(second.frame) == AT_T2
    full = score_parquet(m, log, T2)
    assert_same_scores(full, second.frame)
    assert list(second.frame["lead_id"]) == list(full["lead_id"])      # same order as a full run

    # No new file: time alone. b's demo of May 4 (consumed at T1) is due: 10 + 50 + 50.
    third = score_with_state(m, log, state, T3)
    assert not third.full and third.new_files == [] and third.why == {"messages due since the last run": 1}
    assert _scores(third.rows) == {"b": 110} and third.leads == 9
    assert _scores(third.frame)["b"] == 110
    assert_same_scores(score_parquet(m, log, T3), third.frame)


def test_the_whole_table_is_read_from_the_state_only_while_it_is_this_runs(tmp_path):
    """An incremental run's ``frame`` (every lead) is read from the state on first use: once a later
    run has changed the state, an unread ``frame`` is refused rather than given another instant's scores."""
    log, add_day2 = _logs(tmp_path, False)
    state = tmp_path / "state"
    m = model(STATE_MODEL)
    first = score_with_state(m, log, state, T1)
    assert first.full and first.rows is first.frame and _scores(first.top(2)) == {"b": 60, "g": 50}
    add_day2()
    second = score_with_state(m, log, state, T2)
    read = score_with_state(m, log, state, T2)          # nothing changed: no rows, the same table
    assert not read.full and read.rescored == 0 and len(read.rows) == 0 and read.reason == "nothing changed"
    assert list(read.rows.columns) == list(first.rows.columns)
    assert _scores(read.top(20)) == AT_T2              # top(n) reads n rows, keeps nothing
    third = score_with_state(m, log, state, T3)
    with pytest.raises(RuntimeError, match="has moved on"):
        second.frame
    with pytest.raises(RuntimeError, match="has moved on"):
        read.top(1)
    assert _scores(third.top(1)) == {"b": 110}
    score_with_state(m, log, state, T1)                 # a full run (an earlier instant) rewrites the state
    with pytest.raises(RuntimeError, match="has moved on"):
        third.top(1)



def test_an_incremental_runs_table_is_written_by_duckdb_from_the_state(tmp_path):
    """``write(out)``: every lead's row, the frame's columns, types and order, to a Parquet file: a full
    run's rows from hand, an incremental run's by DuckDB from the state file (refused once a later run
    has changed it)."""
    log, add_day2 = _logs(tmp_path, False)
    state = tmp_path / "state"
    m = model(STATE_MODEL)
    first = score_with_state(m, log, state, T1)
    assert first.write(tmp_path / "t1.parquet") == len(first.frame)
    assert_same_scores(first.frame, pd.read_parquet(tmp_path / "t1.parquet"))
    add_day2()
    second = score_with_state(m, log, state, T2)
    assert second._all is None
    assert second.write(tmp_path / "t2.parquet") == second.leads
    assert second._all is None                           # not read into Python
    written, full = pd.read_parquet(tmp_path / "t2.parquet"), score_parquet(m, log, T2)
    assert _scores(written) == AT_T2
    assert list(written.columns) == list(full.columns)
    assert [written[c].dtype.kind for c in written.columns] == [full[c].dtype.kind for c in full.columns]
    assert list(written["lead_id"]) == list(full["lead_id"])      # a full run's order
    assert_same_scores(full, written)
    score_with_state(m, log, state, T3)
    with pytest.raises(RuntimeError, match="has moved on"):
        second.write(tmp_path / "late.parquet")
    assert not (tmp_path / "late.parquet").exists()

def test_a_model_without_account_traits_keeps_no_account_rows(tmp_path):
    """Without account traits the model never reads a lead's account_id: the state keeps no
    account_id rows (one per lead with a group id), and the scores are a full run's."""
    log, add_day2 = _logs(tmp_path, False)
    state = tmp_path / "state"
    saas = "  - {name: saas, group: company, trait: {account.industry: SaaS}, points: 25}\n"
    assert saas in STATE_MODEL
    m = model(STATE_MODEL.replace(saas, ""))
    score_with_state(m, log, state, T1)
    add_day2()
    run = score_with_state(m, log, state, T2)
    assert not run.full and _scores(run.frame) == {**AT_T2, "g": 50, "h": 0}     # AT_T2 without SaaS's 25
    assert_same_scores(score_parquet(m, log, T2), run.frame)
    with duckdb.connect(str(state_path(state)), read_only=True) as conn:
        assert {r[0] for r in conn.sql("SELECT DISTINCT key FROM trait_rows").fetchall()} == {"email", "seniority"}
    # With account traits (STATE_MODEL) the account_id rows are kept: g's account gives it SaaS.
    run = score_with_state(model(STATE_MODEL), log, tmp_path / "state2", T2)
    with duckdb.connect(str(state_path(tmp_path / "state2")), read_only=True) as conn:
        assert "account_id" in {r[0] for r in conn.sql("SELECT DISTINCT key FROM trait_rows").fetchall()}
    assert _scores(run.frame)["g"] == 75


def test_runs_append_their_rows_without_rewriting_the_state_and_every_nth_run_compacts(tmp_path, monkeypatch):
    """Each incremental run's rows become row groups of their own (DuckDB's checkpoint would otherwise
    rewrite the state's last row group to merge them in, every run); every COMPACT_EVERY-th run merges
    them back. Scores are a full run's either way."""
    import leadscore.engine.state as state_mod
    monkeypatch.setattr(state_mod, "COMPACT_EVERY", 3)
    log, add_day2 = _logs(tmp_path, False)
    state = tmp_path / "state"
    m = model(STATE_MODEL)
    score_with_state(m, log, state, T1)

    def row_groups() -> list[int]:
        with duckdb.connect(str(state_path(state)), read_only=True) as conn:
            return [n for (n,) in conn.sql("SELECT max(count) FROM pragma_storage_info('ev') WHERE column_name = "
                                           "'lead_id' AND segment_type = 'VARCHAR' GROUP BY row_group_id "
                                           "ORDER BY row_group_id").fetchall()]
    base = row_groups()
    assert base == [9]        # DAY1's 9 rule-read messages (3 opens, 3 demos, 3 pages)
    days = [[track("a", "Email Opened", "2026-04-30T01:00:00Z")],
            [track("b", "Email Opened", "2026-04-30T02:00:00Z"), track("e", "Email Opened", "2026-04-30T03:00:00Z")]]
    for k, msgs in enumerate(days, start=1):            # runs 1 and 2: rows appended as row groups of their own
        write_log(log / f"extra{k}.parquet", msgs)
        run = score_with_state(m, log, state, T1)
        assert not run.full and run.run == k and not run.compacted
        assert row_groups() == [9, 1, 2][:k + 1]
        assert_same_scores(score_parquet(m, log, T1), run.frame)
    write_log(log / "extra3.parquet", [page("c", "/pricing", "2026-04-30T04:00:00Z")])
    run = score_with_state(m, log, state, T1)            # run 3: compacted
    assert run.run == 3 and run.compacted and row_groups() == [13]
    assert_same_scores(score_parquet(m, log, T1), run.frame)
    # a: 10 (Apr 2 open, 29 days old) + 10 (new open) = 20; b: 10 + 10 + demo 50 = 70; e: 10 + 10;
    # c: pricing twice, 20 each (inside 7 days) = 40.
    assert {k: v for k, v in _scores(run.frame).items() if k in "abce"} == {"a": 20, "b": 70, "c": 40, "e": 20}


def test_an_incremental_run_stages_without_temp_checkpoints_and_restores_the_connections_settings(tmp_path,
                                                                                                 monkeypatch):
    """Up to its commit an incremental run writes temp tables only, which DuckDB would checkpoint
    (compress) once they pass checkpoint_threshold: the run raises it while it copies and scores the
    changed leads' rows, drops the copies, and commits to the state under the caller's own; the
    checkpoint after it runs without vacuum tasks; both settings are the caller's again afterwards."""
    import leadscore.engine.state as state_mod
    from leadscore.engine.parquet import open_duckdb
    log, add_day2 = _logs(tmp_path, False)
    state, m = tmp_path / "state", model(STATE_MODEL)
    conn = open_duckdb()
    conn.execute("SET checkpoint_threshold = '1KiB'")
    conn.execute("SET max_vacuum_tasks = 7")
    score_with_state(m, log, state, T1, conn=conn)
    add_day2()
    seen: list[tuple[str, str, str, int]] = []
    run_sql = state_mod._run

    def spy(c, sql):
        now = dict(c.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                             "('checkpoint_threshold', 'max_vacuum_tasks')").fetchall())
        copies = c.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND starts_with(table_name, 'ls_c_')"
                           ).fetchall()[0][0]
        seen.append((sql.split(" AS ")[0], now["checkpoint_threshold"], now["max_vacuum_tasks"], copies))
        return run_sql(c, sql)
    monkeypatch.setattr(state_mod, "_run", spy)
    run = score_with_state(m, log, state, T2, conn=conn)
    monkeypatch.undo()
    assert not run.full and run.rescored == 8
    at = {sql: rest for sql, *rest in seen}       # (threshold, vacuum tasks, copies in the temp database)
    assert at["CREATE OR REPLACE TEMP TABLE ls_c_population"] == ["931.3 GiB", "7", 3]
    assert at["CREATE OR REPLACE TEMP TABLE ls_fresh"] == ["931.3 GiB", "7", 4]
    assert at["COMMIT"] == ["1.0 KiB", "7", 0]
    assert at["CHECKPOINT st"] == ["1.0 KiB", "0", 0]
    assert conn.execute("SELECT current_setting('checkpoint_threshold'), current_setting('max_vacuum_tasks')"
                        ).fetchall() == [("1.0 KiB", 7)]
    conn.close()
    assert_same_scores(score_parquet(m, log, T2), run.frame)


def test_the_copies_run_under_a_memory_limit_sized_to_them_on_a_connection_of_its_own(tmp_path, monkeypatch):
    """An incremental run copies its changed leads' rows under a memory limit just above their size, so
    DuckDB evicts the state's blocks it has read instead of keeping each in new memory; the limit is put
    back exactly (the SET the run was opened with) before scoring. A caller's connection keeps its limit."""
    import leadscore.engine.state as state_mod
    from leadscore.engine.parquet import open_duckdb
    m = model(STATE_MODEL)
    for own in (True, False):
        log, add_day2 = _logs(tmp_path / f"own-{own}", False)
        state = tmp_path / f"own-{own}" / "state"
        score_with_state(m, log, state, T1)
        add_day2()
        seen: dict[str, str] = {}
        run_sql = state_mod._run

        def spy(c, sql):
            seen[sql.split(" AS ")[0]] = _limit(c)
            return run_sql(c, sql)
        monkeypatch.setattr(state_mod, "_run", spy)
        conn = None if own else open_duckdb("1GB")
        run = score_with_state(m, log, state, T2, memory_limit="1GB", conn=conn)
        monkeypatch.undo()
        assert not run.full and run.rescored == 8
        # 8 leads of 9 with a few staged rows each: 3 x 150 bytes x their rows is far below the floor,
        # 128 MiB. 1 GB reads back as 953.6 MiB (DuckDB rounds it), which is why a caller's limit is left alone.
        copying = "128.0 MiB" if own else "953.6 MiB"
        assert [seen[f"CREATE OR REPLACE TEMP TABLE ls_c_{t}"] for t in ("ev", "trait_rows", "population")] == \
            [copying] * 3
        assert seen["CREATE OR REPLACE TEMP TABLE ls_fresh"] == seen["COMMIT"] == "953.6 MiB"
        if conn is not None:
            conn.close()
        assert_same_scores(score_parquet(m, log, T2), run.frame)


def _limit(conn) -> str:
    return conn.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def _stub_state(monkeypatch, rows: int, leads: int, *setup: str):
    """A connection under a 1 GB limit with a stand-in state (``st.ev`` of ``rows`` rows, ``st.population``
    of ``leads``) after the ``setup`` statements, and the list every statement of ``engine.state`` goes to."""
    import leadscore.engine.state as state_mod
    conn = duckdb.connect()
    for sql in (*setup, "SET memory_limit = '1GB'", "ATTACH ':memory:' AS st",
                f"CREATE TABLE st.ev AS SELECT range AS x FROM range({rows})",
                f"CREATE TABLE st.population AS SELECT CAST(range AS VARCHAR) AS lead_id FROM range({leads})"):
        conn.execute(sql)
    statements: list[str] = []
    run_sql = state_mod._run
    monkeypatch.setattr(state_mod, "_run", lambda c, sql: statements.append(sql) or run_sql(c, sql))
    return conn, statements


@pytest.mark.parametrize("changed, batch, limit", [(8, 0, "134217728B"), (2_000, 0, "270000000B"),
                                                   (2_000, 100_000, "315000000B"), (20_000, 0, None)])
def test_the_copies_memory_limit_by_the_states_rows_per_lead(changed, batch, limit, monkeypatch):
    """Three times the copies' estimated size (150 bytes a row: the state's rows per lead times the changed
    leads, plus the new files' rows), at least 128 MiB, and no change at or above the connection's own limit.
    Worked by hand for a state of 300,000 rows and 1,000 leads (300 a lead): 8 leads, 3 x 150 x 2,400 rows =
    1,080,000 bytes, the floor 134,217,728; 2,000 leads, 3 x 150 x 600,000 = 270,000,000; with 100,000 new rows,
    3 x 150 x 700,000 = 315,000,000; 20,000 leads, 2.7e9 >= 1 GB: unchanged."""
    import leadscore.engine.state as state_mod
    conn, statements = _stub_state(monkeypatch, 300_000, 1_000)
    with state_mod._copy_memory(conn, None, changed, batch):     # no restore statement: nothing is touched
        pass
    assert not [s for s in statements if "memory_limit" in s]
    with pytest.raises(RuntimeError):
        with state_mod._copy_memory(conn, "SET memory_limit = '1GB'", changed, batch):
            inside = _limit(conn)
            raise RuntimeError("a failed copy")
    sets = [s for s in statements if "memory_limit" in s and s.startswith("SET")]
    assert sets == ([f"SET memory_limit = '{limit}'", "SET memory_limit = '1GB'"] if limit else [])
    assert inside == {"134217728B": "128.0 MiB", "270000000B": "257.4 MiB", "315000000B": "300.4 MiB",
                      None: "953.6 MiB"}[limit]
    assert _limit(conn) == "953.6 MiB"


def test_a_memory_limit_duckdb_cannot_lower_to_is_left_as_it_was(monkeypatch):
    """With no temp directory, what an in-memory connection holds cannot be evicted, and DuckDB refuses a
    limit below it ("could not free up enough memory"): the copies then run under the connection's limit."""
    import leadscore.engine.state as state_mod
    conn, statements = _stub_state(monkeypatch, 1_000, 100, "SET temp_directory = ''",
                                   "CREATE TEMP TABLE held AS SELECT range AS i, repeat('x', 20) || range AS s "
                                   "FROM range(6000000)")
    with state_mod._copy_memory(conn, "SET memory_limit = '1GB'", 8):
        inside = _limit(conn)
    assert inside == "953.6 MiB"
    assert [s for s in statements if s.startswith("SET")] == ["SET memory_limit = '134217728B'"]   # refused


@pytest.mark.parametrize("how", [{"stage": False}, {"partitions": 2}, {"partitions": 40}],
                         ids=["from-the-files", "partitions", "more-partitions-than-leads"])
def test_a_full_run_from_the_files_or_in_partitions(tmp_path, how):
    """The full run scored straight from the log's files, or from the staged rows in lead partitions:
    the same scores, and a state the next run carries on from."""
    log, add_day2 = _logs(tmp_path, False)
    m = model(STATE_MODEL)
    first = score_with_state(m, log, tmp_path / "state", T1, **how)
    assert _scores(first.frame) == AT_T1
    assert_same_scores(score_parquet(m, log, T1), first.frame)
    add_day2()
    assert _scores(score_with_state(m, log, tmp_path / "state", T2).frame) == AT_T2


def test_a_full_runs_partitions_are_lead_ranges_each_reading_its_own_row_groups():
    """The ranges cut the population at its quantiles and tile every id (first and last open, no
    duplicate cut when there are fewer leads than partitions), and a range's scan of rows clustered by
    lead reads only the row groups its ids lie in (the reason for ranges, not hash partitions)."""
    conn = duckdb.connect()
    conn.execute("ATTACH ':memory:' AS st")
    conn.execute("CREATE TABLE st.population AS SELECT 'lead-' || lpad(CAST(i AS VARCHAR), 4, '0') AS lead_id "
                 "FROM range(1000) t(i)")
    # quantile_disc(q) is the population's ⌈1000·q⌉-th id: 250th, 500th, 750th = lead-0249, -0499, -0749.
    assert _lead_ranges(conn, 4) == [(None, "lead-0249"), ("lead-0249", "lead-0499"), ("lead-0499", "lead-0749"),
                                     ("lead-0749", None)]
    conn.execute("CREATE OR REPLACE TABLE st.population AS SELECT * FROM (VALUES ('a'), ('b')) t(lead_id)")
    assert _lead_ranges(conn, 5) == [(None, "a"), ("a", "b"), ("b", None)]
    conn.execute("CREATE OR REPLACE TABLE st.population AS SELECT 'x' AS lead_id WHERE FALSE")
    assert _lead_ranges(conn, 3) == [(None, None)]
    # 1,000 leads x 500 rows, written lead by lead: four row groups of DuckDB's 122,880 rows or more.
    conn.execute("CREATE TABLE st.ev AS SELECT 'lead-' || lpad(CAST(i // 500 AS VARCHAR), 4, '0') AS lead_id, "
                 "i AS n FROM range(500000) t(i) ORDER BY i")
    conn.execute("CHECKPOINT st")
    conn.execute("CREATE OR REPLACE TABLE st.population AS SELECT DISTINCT lead_id FROM st.ev")
    ranges = _lead_ranges(conn, 4)
    scanned, rows = [], 0
    for bounds in ranges:
        plan = conn.execute(f"EXPLAIN ANALYZE SELECT count(*) FROM st.ev WHERE {lead_range_sql('lead_id', bounds)}"
                            ).fetchall()[0][1]
        read, total = (int(x) for x in re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan).groups())
        scanned.append((read, total))
        rows += conn.execute(f"SELECT count(*) FROM st.ev WHERE {lead_range_sql('lead_id', bounds)}").fetchone()[0]
    conn.close()
    assert rows == 500000                                  # every row in exactly one range
    assert all(total >= 4 for _, total in scanned)
    assert all(read <= 2 for read, _ in scanned), scanned  # its own row groups (a range may straddle two)


def _row_groups_read(conn, table: str, where: str) -> tuple[int, int]:
    plan = conn.execute(f"EXPLAIN ANALYZE SELECT count(*) FROM {table} WHERE {where}").fetchall()[0][1]
    read, total = (int(x) for x in re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan).groups())
    return read, total


def test_the_overlap_of_row_groups_by_their_lead_statistics():
    """``_overlap``: the share of the other row groups each overlaps, on average (ordered pairs over
    n(n-1)); sharing a bound (a lead split across two groups) is no overlap."""
    assert _overlap([]) == _overlap([("a", "z")]) == 0.0
    assert _overlap([("00", "05"), ("05", "09"), ("09", "12")]) == 0.0          # written lead by lead
    assert _overlap([("00", "99")] * 4) == 1.0                                   # in time order
    # Two writers' groups: 05-20 straddles 10-15 and 15-30 (4 ordered pairs of 4 x 3).
    assert _overlap([("00", "05"), ("05", "20"), ("10", "15"), ("15", "30")]) == 4 / 12
    # Groups of a single lead: the two of b share only b; a-c holds b, so it and each of them overlap
    # (4 ordered pairs of 3 x 2).
    assert _overlap([("b", "b"), ("b", "b"), ("a", "c")]) == 4 / 6


def test_rows_staged_in_time_order_are_rewritten_sorted_by_lead_and_clustered_ones_are_left(tmp_path):
    """The full run's ``_cluster``: a table of 1,000 leads x 300 rows in time order (every row group
    holds every lead) is rewritten sorted by lead into a fresh file, the same rows, each lead range then
    reading only its own row groups; a table written lead by lead, or of one row group, keeps its rows
    in their order; with every table clustered the file is not rewritten."""
    path = tmp_path / "state.duckdb"
    conn = duckdb.connect()
    conn.execute(f"ATTACH '{path}' AS st")
    conn.execute("CREATE TABLE st.ev AS SELECT 'lead-' || lpad(CAST(i % 1000 AS VARCHAR), 4, '0') AS lead_id, "
                 "i AS n FROM range(300000) t(i) ORDER BY i")
    # Clustered, though not sorted: the leads in descending order.
    conn.execute("CREATE TABLE st.trait_rows AS SELECT 'lead-' || lpad(CAST(999 - i // 300 AS VARCHAR), 4, '0') "
                 "AS owner, i AS n FROM range(300000) t(i) ORDER BY i")
    conn.execute("CREATE TABLE st.small AS SELECT CAST(i % 7 AS VARCHAR) AS lead_id, i AS n FROM range(1000) t(i)")
    conn.execute("CREATE TEMP TABLE before AS SELECT * FROM st.ev")
    conn.execute("CREATE TABLE st.population AS SELECT DISTINCT lead_id FROM st.ev")
    assert _row_groups_read(conn, "st.ev", "lead_id < 'lead-0250'") == (3, 3)     # every group, before
    assert _cluster(conn, path, [("ev", "lead_id"), ("trait_rows", "owner"), ("small", "lead_id")]) == ["ev"]
    assert not (tmp_path / "state.duckdb.sorted").exists()
    assert conn.execute("SELECT count(*) FROM (SELECT * FROM st.ev EXCEPT ALL SELECT * FROM temp.before)"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM st.ev").fetchone()[0] == 300000
    # 300,000 rows in row groups of 122,880 rows = 409.6 leads: leads 0-409, 409-819, 819-999. The ranges
    # cut at lead-0249, -0499, -0749: the first and third lie in one group, the second and fourth in two.
    scans = [_row_groups_read(conn, "st.ev", lead_range_sql("lead_id", b)) for b in _lead_ranges(conn, 4)]
    assert scans == [(1, 3), (2, 3), (1, 3), (2, 3)]
    # Clustered, and one row group however unordered: copied in their order (sorted, lead-0000 would lead).
    assert conn.execute("SELECT owner, n FROM st.trait_rows WHERE rowid = 0").fetchone() == ("lead-0999", 0)
    assert conn.execute("SELECT lead_id FROM st.small WHERE rowid = 1").fetchone()[0] == "1"
    assert sorted(r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'st'"
                                             ).fetchall()) == ["ev", "population", "small", "trait_rows"]
    inode = os.stat(path).st_ino
    # A table the state lacks (video_ev without video rules) is passed over.
    assert _cluster(conn, path, [("ev", "lead_id"), ("trait_rows", "owner"), ("video_ev", "lead_id")]) == []
    assert os.stat(path).st_ino == inode
    conn.close()


def test_a_time_ordered_logs_state_is_sorted_by_lead_and_scores_as_a_full_run(tmp_path):
    """A log exported in time order (400 leads x 400 days of a page view, and an identify every 100th
    day; every file holding every lead): the full run stores ``ev`` and ``trait_rows`` sorted by lead,
    and its scores, an incremental run's and a full run's over the same files agree on every lead and
    column."""
    conn = duckdb.connect()
    src = write_log(tmp_path / "one.parquet", [page("u", "/pricing", "2026-01-01T00:00:00Z"),
                                               identify("u", "2026-01-01T00:00:00Z", seniority="vp")])
    log = tmp_path / "log"
    log.mkdir()
    conn.execute(f"COPY (SELECT * REPLACE (m || '-' || i || '-' || d AS message_id, "
                 f"'lead-' || lpad(CAST(i AS VARCHAR), 3, '0') AS user_id, "
                 f"'lead-' || lpad(CAST(i AS VARCHAR), 3, '0') AS lead_id, "
                 f"ts + to_days(CAST(d AS INTEGER)) + to_seconds(i) AS ts, "
                 f"ts + to_days(CAST(d AS INTEGER)) + to_seconds(i) AS received_at) "
                 f"FROM (SELECT *, message_id AS m FROM '{src}') e, range(400) l(i), range(400) t(d) "
                 f"WHERE type = 'page' OR d % 100 = 0 ORDER BY ts) TO '{log / 'part-1.parquet'}'")
    m = model(STATE_MODEL)
    t1, t2 = datetime(2027, 2, 5), datetime(2027, 2, 6)
    first = score_with_state(m, log, tmp_path / "state", t1)
    assert first.full and first.new_rows == 400 * 404
    with duckdb.connect(str(state_path(tmp_path / "state")), read_only=True) as st:
        groups = st.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('ev')").fetchone()[0]
        assert groups == 2
        assert st.execute("SELECT min(lead_id), max(lead_id) FROM ev WHERE rowid < 122880").fetchone() == \
            ("lead-000", "lead-307")                                # 122,880 rows / 400 a lead
        # The seniority rows (one a lead: the newest at t1) in lead order, whatever the aggregate's order.
        assert st.execute("SELECT list(owner ORDER BY rowid) = list(owner ORDER BY owner), count(*) FROM trait_rows "
                          "WHERE key = 'seniority'").fetchone() == (True, 400)
    assert_same_scores(score_parquet(m, log, t1), first.frame)
    # Hand-worked: vp 30 + 20 a pricing view in the 7 days before t1 (2027-02-05): lead i's views are on
    # 2027-01-29 ... 02-04 at i seconds past midnight; lead-000's first lies exactly 7 days back (out).
    at_t1 = first.frame.set_index("lead_id")["score"]
    assert (at_t1["lead-000"], at_t1["lead-001"], at_t1["lead-399"]) == (150.0, 170.0, 170.0)
    conn.execute(f"COPY (SELECT * REPLACE ('late-' || message_id AS message_id, ts + INTERVAL 1 HOUR AS ts) "
                 f"FROM '{log / 'part-1.parquet'}' WHERE lead_id < 'lead-004' AND ts >= TIMESTAMP '2027-02-01') "
                 f"TO '{log / 'part-2.parquet'}'")
    conn.close()
    second = score_with_state(m, log, tmp_path / "state", t2)
    assert not second.full and second.new_rows == 16
    assert_same_scores(score_parquet(m, log, t2), second.frame)
    # At t2 = 02-06 the window starts 01-30: lead-000 keeps 5 views (01-31 ... 02-04) + 4 late copies,
    # lead-001 6 + 4, lead-004 (no late copies) 6.
    at_t2 = second.frame.set_index("lead_id")["score"]
    assert (at_t2["lead-000"], at_t2["lead-001"], at_t2["lead-004"]) == (210.0, 230.0, 150.0)


def test_a_partitioned_full_run_scores_one_lead_range_after_the_other(tmp_path, monkeypatch):
    import leadscore.engine.state as state
    statements: list[str] = []
    run = state._run
    monkeypatch.setattr(state, "_run", lambda conn, sql: (statements.append(sql), run(conn, sql))[1])
    log, _ = _logs(tmp_path, False)
    first = score_with_state(model(STATE_MODEL), log, tmp_path / "state", T1, partitions=2)
    assert _scores(first.frame) == AT_T1
    views = [s for s in statements if s.startswith("CREATE OR REPLACE TEMP VIEW ls_s_ev AS")]
    assert len(views) == 2
    cut = re.search(r"lead_id < '([^']+)'", views[0]).group(1)      # the population's median id
    assert views[0].endswith(f" AND {lead_range_sql('lead_id', (None, cut))}")
    assert views[1].endswith(f" AND {lead_range_sql('lead_id', (cut, None))}")


def test_typed_and_json_states_give_the_same_scores(tmp_path):
    runs = {}
    for typed in (False, True):
        log, add_day2 = _logs(tmp_path / str(typed), typed)
        m = model(STATE_MODEL)
        score_with_state(m, log, tmp_path / str(typed) / "state", T1)
        add_day2()
        runs[typed] = score_with_state(m, log, tmp_path / str(typed) / "state", T2).frame
    assert_same_scores(runs[False], runs[True])


def test_what_forces_a_full_run(tmp_path):
    log, add_day2 = _logs(tmp_path, False)
    state = tmp_path / "state"
    m = model(STATE_MODEL)
    score_with_state(m, log, state, T1)
    other = model(STATE_MODEL.replace("points: 50", "points: 40"))
    run = score_with_state(other, log, state, T2)
    assert run.full and f"not {other.model_version}" in run.reason
    assert _scores(run.frame)["b"] == 50                            # open 10 + demo 40
    run = score_with_state(other, log, state, T1)
    assert run.full and "before the state's" in run.reason
    # A consumed file rewritten (here with day 2 appended to it): its rows cannot be told apart.
    write_log(log / "day1.parquet", DAY1 + DAY2)
    run = score_with_state(other, log, state, T2)
    assert run.full and "day1.parquet changed since an earlier run consumed it" in run.reason
    assert_same_scores(score_parquet(other, log, T2), run.frame)
    add_day2()
    assert not score_with_state(other, log, state, T2).full
    (log / "day2.parquet").unlink()
    run = score_with_state(other, log, state, T2)
    assert run.full and "day2.parquet was consumed by an earlier run and is gone" in run.reason
    (log / "videos.yaml").write_text("videos:\n- {id: v1, title: Demo, category: product, duration: 60}\n")
    run = score_with_state(other, log, state, T2)
    assert run.full and "the video catalog or the disposable-domain list changed" in run.reason
    run = score_with_state(other, tmp_path / "log" / "day1.parquet", state, T2)
    assert run.full and "the state is of the log" in run.reason


def test_a_failed_run_leaves_the_last_state_usable(tmp_path):
    """A new file that cannot be read fails the run before anything is written to the state: the state
    keeps its instant and files, and the next run (the bad file gone) carries on incrementally."""
    log, add_day2 = _logs(tmp_path, False)
    state = tmp_path / "state"
    m = model(STATE_MODEL)
    score_with_state(m, log, state, T1)
    add_day2()
    (log / "day3.parquet").write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(Exception):
        score_with_state(m, log, state, T2)
    with duckdb.connect(str(state_path(state)), read_only=True) as conn:
        assert dict(conn.sql("SELECT key, value FROM meta").fetchall())["as_of"] == T1.isoformat()
        assert [os.path.basename(r[0]) for r in conn.sql("SELECT path FROM files").fetchall()] == ["day1.parquet"]
    (log / "day3.parquet").unlink()
    run = score_with_state(m, log, state, T2)
    assert not run.full and _scores(run.frame) == AT_T2


def _stepped_default():
    raw = half_lives_as_steps(yaml.safe_load(open("models/default.yaml")))
    raw["name"] = "stepped"
    return parse_model(yaml.safe_dump(raw), "stepped.yaml")


@pytest.mark.parametrize("typed", [False, True], ids=["json", "typed"])
def test_a_generated_population_in_two_files_equals_a_full_run(tmp_path, typed):
    """The demo population (video, browsers, accounts, every rule kind of the default model) split
    into the messages received by t1 and the rest, with 5% of the older ones arriving late (typed:
    each file converted on its own, so each has its own STRUCT types)."""
    write_population(DemoConfig(300, seed=5), tmp_path, "parquet")
    log = tmp_path / "log"
    log.mkdir()
    os.replace(tmp_path / "videos.yaml", log / "videos.yaml")
    t1, t2, t3 = datetime(2026, 10, 10), datetime(2026, 10, 12, 6), datetime(2026, 10, 20)
    conn = duckdb.connect()
    late = f"(received_at <= TIMESTAMP '{t1}' AND hash(message_id) % 20 <> 0)"

    def write(where: str, name: str) -> None:
        target = tmp_path / name if typed else log / name
        conn.execute(f"COPY (SELECT * FROM '{tmp_path}/events.parquet' WHERE {where}) TO '{target}'")
        if typed:
            convert_to_typed(target, log / name)
    write(late, "part-1.parquet")
    rows = pq.ParquetFile(tmp_path / "events.parquet").metadata.num_rows
    rescored = {}
    for m in (_stepped_default(), load_model("models/default.yaml")):
        state = tmp_path / f"state-{m.name}"
        (log / "part-2.parquet").unlink(missing_ok=True)
        first = score_with_state(m, log, state, t1)
        assert first.full
        write(f"NOT {late}", "part-2.parquet")
        second = score_with_state(m, log, state, t2)
        assert not second.full and first.new_rows + second.new_rows == rows
        assert_same_scores(score_parquet(m, log, t2), second.frame)
        third = score_with_state(m, log, state, t3)
        assert not third.full and third.new_rows == 0
        assert_same_scores(score_parquet(m, log, t3), third.frame)
        assert (third.frame["group:video"] != 0).any()            # the video rules fire
        rescored[m.name] = third.rescored
    # With decay steps only the leads near an edge or with messages due are re-scored; half-lives
    # change every visitor's points.
    assert 0 < rescored["stepped"] < rescored["default"], rescored


_CRASH = """
import os, sys
from datetime import datetime
import leadscore.engine.state as state
from tests.engine.helpers import model
from tests.engine.test_state import STATE_MODEL, T2
run, when = state._run, sys.argv[3]

def crashing(conn, sql):
    if sql == "COMMIT" and when == "before":
        os._exit(9)                      # the process dies inside the transaction
    out = run(conn, sql)
    if sql == "COMMIT" and when == "after":
        os._exit(9)                      # dies right after the commit, before the state is detached
    return out

state._run = crashing
state.score_with_state(model(STATE_MODEL), sys.argv[1], sys.argv[2], T2)
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_the_commit_leaves_a_usable_state(tmp_path, when):
    """A process killed just before its transaction commits leaves the state as of T1 (the next run
    redoes the work); killed just after, the state is as of T2 (the WAL is replayed on the next open)."""
    import subprocess
    import sys
    log, add_day2 = _logs(tmp_path, False)
    state = tmp_path / "state"
    m = model(STATE_MODEL)
    score_with_state(m, log, state, T1)
    add_day2()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(log), str(state), when], capture_output=True, text=True,
                          cwd=root)
    assert proc.returncode == 9, proc.stderr
    with duckdb.connect(str(state_path(state)), read_only=True) as conn:
        as_of = dict(conn.sql("SELECT key, value FROM meta").fetchall())["as_of"]
        files = sorted(os.path.basename(r[0]) for r in conn.sql("SELECT path FROM files").fetchall())
    expected_as_of = T1 if when == "before" else T2
    assert as_of == expected_as_of.isoformat()
    assert files == (["day1.parquet"] if when == "before" else ["day1.parquet", "day2.parquet"])
    run = score_with_state(m, log, state, T2)
    assert not run.full and _scores(run.frame) == AT_T2
    assert run.rescored == (8 if when == "before" else 0)
