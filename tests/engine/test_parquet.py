"""Scoring a Parquet event log with DuckDB (leadscore.engine.parquet): the same scores as the store,
traits derived from the log's identify/group messages, clear errors for a log that cannot be read."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.demo import EVENT_SCHEMA, DemoConfig, load_population, write_population
from leadscore.engine import score_leads
from leadscore.engine.parquet import EventLogError, score_parquet
from leadscore.events import normalize_batch
from leadscore.model import load_model
from leadscore.store import open_store
from leadscore.video.catalog import import_catalog, load_catalog
from tests.engine.helpers import identify, model, page, track

DEMO_AS_OF = datetime(2026, 11, 2)   # after the demo year's last message


def write_log(path, messages: list[dict]) -> str:
    """Segment messages → a Parquet event log (EVENT_COLUMNS + lead_id = userId); like the demo's log,
    each message was received when it happened."""
    events = normalize_batch(messages, datetime(2026, 11, 1))
    for e in events:
        e.received_at = e.ts
    cols = list(zip(*[e.row() + (e.user_id or e.anonymous_id,) for e in events]))
    table = pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(EVENT_SCHEMA, cols)}, schema=EVENT_SCHEMA)
    pq.write_table(table, path)
    return str(path)


def assert_same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Every lead, every column; floats to 1e-6."""
    a = a.sort_values("lead_id").reset_index(drop=True)
    b = b.sort_values("lead_id").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert list(a["lead_id"]) == list(b["lead_id"])
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_float_dtype(x):
            same = np.isclose(x.to_numpy(float), y.to_numpy(float), atol=1e-6, rtol=0, equal_nan=True)
        else:
            same = (x.astype(str) == y.astype(str)).to_numpy()
        assert same.all(), f"{col}: {list(zip(a['lead_id'][~same][:5], x[~same][:5], y[~same][:5]))}"


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    config = DemoConfig(300, seed=11)
    write_population(config, out, "parquet")
    return config, out


def test_parquet_scores_equal_the_stores_on_a_generated_population(demo_log, tmp_path):
    config, out = demo_log
    store = open_store(str(tmp_path / "s.duckdb"))
    load_population(store, config)
    import_catalog(store, load_catalog(out / "videos.yaml"), datetime(2026, 1, 1))
    m = load_model("models/default.yaml")
    from_store = score_leads(store, m, DEMO_AS_OF)
    from_log = score_parquet(m, out / "events.parquet", DEMO_AS_OF)
    assert len(from_log) == 300
    assert from_log["score"].abs().sum() > 0 and (from_log["group:video"] != 0).any()  # the video rules fire
    assert_same_scores(from_store, from_log)


TRAIT_MODEL = """
name: traits
groups: {persona: {axis: fit}, company: {axis: fit}, tech: {axis: fit}, web: {axis: engagement}}
tiers: [{name: cold}, {name: hot, min: 50}]
stages: [{name: subscriber}, {name: lead, when: {trait: {email: {exists: true}}}}]
rules:
  - {name: vp, group: persona, trait: {seniority: vp}, points: 30}
  - {name: big, group: company, trait: {company.employee_count: {gte: 200}}, points: 20}
  - {name: saas, group: company, trait: {account.industry: SaaS}, points: 7}
  - {name: chrome, group: tech, trait: {browser: Chrome}, points: 5}
  - {name: bad_email, group: persona, trait: {email: {is: invalid_email}}, points: -50}
  - {name: pricing, group: web, page: /pricing, points: 20}
"""
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"


def test_traits_come_from_the_log_newest_first_and_as_of(tmp_path):
    msgs = [
        identify("a", "2026-01-01T00:00:00Z", email="o'neil@acme.com", seniority="manager",
                 company={"employee_count": 150, "industry": "SaaS"}),
        identify("a", "2026-02-01T00:00:00Z", seniority="vp", company={"employee_count": 250}),  # newer wins per key
        identify("a", "2026-06-01T00:00:00Z", seniority="student"),                              # after as_of
        {"type": "group", "userId": "a", "groupId": "acc1", "timestamp": "2026-01-02T00:00:00Z",
         "traits": {"name": "Acme", "industry": "SaaS"}, "messageId": "g1"},
        {**page("a", "/pricing", "2026-03-01T00:00:00Z"), "context": {"userAgent": CHROME}},
        identify("b", "2026-01-01T00:00:00Z", email="not-an-email", seniority="vp"),
        track("b", "Email Opened", "2026-03-01T00:00:00Z"),
    ]
    path = write_log(tmp_path / "log.parquet", msgs)
    frame = score_parquet(model(TRAIT_MODEL), path, datetime(2026, 4, 1)).set_index("lead_id")
    a, b = frame.loc["a"], frame.loc["b"]
    # a: vp 30 (Feb identify beats Jan; the June one is after as_of), 250 employees 20, SaaS account 7,
    # Chrome 5, a valid address with an apostrophe; pricing 20.
    assert (a["rule:vp"], a["rule:big"], a["rule:saas"], a["rule:chrome"], a["rule:bad_email"]) == (30, 20, 7, 5, 0)
    assert (a["fit"], a["engagement"], a["score"], a["tier"], a["stage"]) == (62, 20, 82, "hot", "lead")
    assert (b["fit"], b["rule:bad_email"], b["engagement"]) == (-20, -50, 0)


def test_a_folder_of_parquet_files_is_one_log(tmp_path):
    (tmp_path / "log").mkdir()
    write_log(tmp_path / "log" / "part-1.parquet", [page("a", "/pricing", "2026-03-01T00:00:00Z")])
    write_log(tmp_path / "log" / "part-2.parquet", [page("b", "/pricing", "2026-03-02T00:00:00Z"),
                                                   page("a", "/pricing", "2026-03-03T00:00:00Z")])
    frame = score_parquet(model(TRAIT_MODEL), tmp_path / "log", datetime(2026, 4, 1)).set_index("lead_id")
    assert frame.loc["a", "rule:pricing"] == 40 and frame.loc["b", "rule:pricing"] == 20


def test_a_log_without_the_event_columns_is_refused_by_name(tmp_path):
    pq.write_table(pa.table({"message_id": ["m1"], "type": ["track"]}), tmp_path / "bad.parquet")
    with pytest.raises(EventLogError, match=r"bad.parquet: the event log lacks the column\(s\) event, user_id"):
        score_parquet(model(TRAIT_MODEL), tmp_path / "bad.parquet", datetime(2026, 4, 1))
    with pytest.raises(EventLogError, match="no such event log"):
        score_parquet(model(TRAIT_MODEL), tmp_path / "missing.parquet", datetime(2026, 4, 1))


NULL_TRAIT_MODEL = """
name: null_traits
groups: {persona: {axis: fit}}
tiers: [{name: cold}, {name: hot, min: 50}]
rules:
  - {name: has_title, group: persona, trait: {title: {exists: true}}, points: 10}
  - {name: saas, group: persona, trait: {company.industry: SaaS}, points: 7}
  - {name: named_company, group: persona, trait: {company: Acme}, points: 3}
  - {name: deep, group: persona, trait: {company.hq.country: DE}, points: 2}
"""


def test_log_traits_follow_the_store_for_nulls_objects_and_depth(tmp_path):
    """The log's traits are what the store keeps: a newer explicit null wins over an older value; an
    object is never a value (its members are, at any depth); a key turned from object to text is text."""
    msgs = [
        identify("a", "2026-01-01T00:00:00Z", title="CTO", company={"industry": "SaaS", "hq": {"country": "DE"}}),
        identify("a", "2026-02-01T00:00:00Z", title=None),                  # the newer null wins: no title
        identify("b", "2026-01-01T00:00:00Z", title="VP", company={"industry": "SaaS"}),
        identify("b", "2026-02-01T00:00:00Z", company="Acme"),              # now a name; industry stays SaaS
    ]
    path = write_log(tmp_path / "log.parquet", msgs)
    m = model(NULL_TRAIT_MODEL)
    at = datetime(2026, 4, 1)
    log = score_parquet(m, path, at).set_index("lead_id")
    # a: title null (0) + SaaS 7 + company is an object, not 'Acme' (0) + hq.country DE 2 = 9
    # b: title VP 10 + SaaS 7 + Acme 3 + no hq (0) = 20
    assert (log.loc["a", "fit"], log.loc["b", "fit"]) == (9, 20)
    store = open_store(str(tmp_path / "s.duckdb"))
    store.ingest(normalize_batch(msgs, datetime(2026, 11, 1)))
    assert_same_scores(score_leads(store, m, at), log.reset_index())


def test_staged_event_rows_give_the_same_scores(demo_log):
    """Staging the rule-read rows in a compressed table (what large logs do by default) changes nothing."""
    config, out = demo_log
    m = load_model("models/default.yaml")
    plain = score_parquet(m, out / "events.parquet", DEMO_AS_OF, stage=False)
    staged = score_parquet(m, out / "events.parquet", DEMO_AS_OF, stage=True)
    assert (staged["score"] != 0).sum() > 100
    assert_same_scores(plain, staged)


def test_staging_leaves_no_scratch_file(demo_log, tmp_path):
    config, out = demo_log
    spill = tmp_path / "spill"
    score_parquet(load_model("models/default.yaml"), out / "events.parquet", DEMO_AS_OF, stage=True,
                  temp_dir=str(spill))
    assert spill.is_dir() and not list(spill.glob("ls_stage-*"))


def _partition_of(lead: str, count: int) -> int:
    import duckdb
    return duckdb.connect().execute(f"SELECT hash(?) % {count}", [lead]).fetchone()[0]


def test_a_lead_partitioned_run_gives_the_one_pass_scores_in_the_same_order(demo_log):
    """Scoring in lead partitions (what a log too large for one pass in memory gets) changes no row,
    nor the order (score, then lead_id), staged or not."""
    config, out = demo_log
    m = load_model("models/default.yaml")
    one = score_parquet(m, out / "events.parquet", DEMO_AS_OF, stage=False, partitions=1)
    for stage in (False, True):
        parts = score_parquet(m, out / "events.parquet", DEMO_AS_OF, stage=stage, partitions=3)
        assert list(parts["lead_id"]) == list(one["lead_id"])
        assert_same_scores(one, parts)


def test_an_account_trait_reaches_members_in_every_partition(tmp_path):
    """The account's group call comes from one member; the other member, in another partition, still
    reads the account's industry."""
    a = "lead-a"
    b = next(f"lead-b{i}" for i in range(100) if _partition_of(f"lead-b{i}", 2) != _partition_of(a, 2))
    msgs = [
        {"type": "group", "userId": a, "groupId": "acc1", "timestamp": "2026-01-02T00:00:00Z",
         "traits": {"name": "Acme", "industry": "SaaS"}, "messageId": "g1"},
        {"type": "group", "userId": b, "groupId": "acc1", "timestamp": "2026-01-03T00:00:00Z",
         "traits": {}, "messageId": "g2"},
        page(b, "/pricing", "2026-03-01T00:00:00Z"),
    ]
    path = write_log(tmp_path / "log.parquet", msgs)
    frame = score_parquet(model(TRAIT_MODEL), path, datetime(2026, 4, 1), partitions=2).set_index("lead_id")
    # a: SaaS account 7; b: SaaS account 7 + pricing 20 = 27, ranked first.
    assert list(frame.index) == [b, a]
    assert (frame.loc[a, "score"], frame.loc[b, "rule:saas"], frame.loc[b, "score"]) == (7, 7, 27)


def test_the_partition_count_follows_the_log_size_and_memory_limit():
    from leadscore.engine.parquet import ROWS_PER_GIB, auto_partitions, memory_limit_bytes, open_duckdb
    gib = 2**30
    assert auto_partitions(10_000_000, None) == 1                      # no limit known: one pass
    assert auto_partitions(2 * ROWS_PER_GIB, 2 * gib) == 1              # exactly what 2 GiB holds
    assert auto_partitions(2 * ROWS_PER_GIB + 1, 2 * gib) == 2
    assert auto_partitions(7 * ROWS_PER_GIB, gib) == 7
    assert memory_limit_bytes(open_duckdb("1GB")) == pytest.approx(10**9, rel=0.01)   # DuckDB shows 953.6 MiB
    with pytest.raises(ValueError, match="partitions=2: .* 1 when scoring a list of leads"):
        score_parquet(model(TRAIT_MODEL), "unused.parquet", datetime(2026, 4, 1), leads=["a"], partitions=2)


def _clustered(path, out, rows_per_group: int) -> str:
    """The log rewritten ordered by lead, in row groups of ``rows_per_group`` messages."""
    table = pq.read_table(path)
    table = table.sort_by([("lead_id", "ascending"), ("ts", "ascending"), ("message_id", "ascending")])
    pq.write_table(table, out, row_group_size=rows_per_group)
    return str(out)


def test_lead_ranges_cut_at_row_groups_and_never_inside_a_lead(tmp_path):
    from leadscore.engine.parquet import lead_ranges

    def log(name, leads, group):
        pq.write_table(pa.table({"lead_id": leads}), tmp_path / name, row_group_size=group)
        return tmp_path / name

    # row groups [a a] [a b] [c c] [d e]: lead a spans the first two, so they are one block of 4
    clustered = log("c.parquet", ["a", "a", "a", "b", "c", "c", "d", "e"], 2)
    assert lead_ranges(clustered, 4) == [(None, "c"), ("c", None)]
    assert lead_ranges(clustered, 2) == [(None, "c"), ("c", "d"), ("d", None)]
    assert lead_ranges(clustered, 8) is None                       # one range holds it all: one pass
    # a log in time order: every row group holds leads from a to d, the groups overlap
    assert lead_ranges(log("t.parquet", ["a", "d", "b", "c", "a", "d"], 2), 2) is None
    # a clustered file and a small file of new messages spanning its leads: the small one is set aside
    pq.write_table(pa.table({"lead_id": [f"l{i:02d}" for i in range(40)]}), tmp_path / "dir-0.parquet", row_group_size=10)
    pq.write_table(pa.table({"lead_id": ["l05", "l33"]}), tmp_path / "dir-1.parquet")
    folder = tmp_path / "folder"
    folder.mkdir()
    for f in ("dir-0.parquet", "dir-1.parquet"):
        (tmp_path / f).rename(folder / f)
    assert lead_ranges(folder, 20) == [(None, "l20"), ("l20", None)]
    pq.write_table(pa.table({"lead_id": ["l05", "l33"] * 3}), folder / "dir-2.parquet")   # 8 of 48 aside
    assert lead_ranges(folder, 20) is None
    assert lead_ranges(log("n.parquet", ["a", "b"], 1), 1) == [(None, "b"), ("b", None)]


def test_a_lead_clustered_log_is_scored_range_by_range_with_the_one_pass_scores(demo_log, tmp_path, monkeypatch):
    """A log ordered by lead is scored in lead ranges by default (each range a query over its own row
    groups): every lead, column and the order equal one pass over the whole log."""
    import leadscore.engine.parquet as parquet
    config, out = demo_log
    path = _clustered(out / "events.parquet", tmp_path / "clustered.parquet", 1000)
    m = load_model("models/default.yaml")
    one = score_parquet(m, path, DEMO_AS_OF, stage=False, partitions=1)
    ranges = []
    real = parquet._score_ranges
    monkeypatch.setattr(parquet, "rows_per_range", lambda memory: 3000)
    monkeypatch.setattr(parquet, "_score_ranges", lambda *a, **k: ranges.append(a[5]) or real(*a, **k))
    parts = score_parquet(m, path, DEMO_AS_OF)
    assert len(ranges) == 1 and len(ranges[0]) >= 3
    assert list(parts["lead_id"]) == list(one["lead_id"])
    assert_same_scores(one, parts)



@pytest.mark.parametrize("way", ["one query", "partitions", "lead ranges"])
def test_written_scores_are_the_frames_rows_written_by_duckdb(demo_log, tmp_path, monkeypatch, way):
    """``finish=write_scores(model, out, top)``: DuckDB writes every lead's row of the score frame to
    ``out`` (the frame's columns, their types and its order: score, then lead_id) from the result it
    holds, returns the lead count and the top rows, and leaves no temp table behind."""
    import duckdb

    import leadscore.engine.parquet as parquet
    from leadscore.engine.parquet import write_scores
    config, out = demo_log
    path = _clustered(out / "events.parquet", tmp_path / "clustered.parquet", 1000)
    m = load_model("models/default.yaml")
    frame = score_parquet(m, path, DEMO_AS_OF, stage=False, partitions=1)
    kwargs = {"one query": {"stage": False, "partitions": 1}, "partitions": {"partitions": 3}, "lead ranges": {}}[way]
    ranges = []
    if way == "lead ranges":
        real = parquet._score_ranges
        monkeypatch.setattr(parquet, "rows_per_range", lambda memory: 3000)
        monkeypatch.setattr(parquet, "_score_ranges", lambda *a, **k: ranges.append(a[5]) or real(*a, **k))
    conn = duckdb.connect()
    target = tmp_path / "scores.parquet"
    leads, top = score_parquet(m, path, DEMO_AS_OF, conn=conn, finish=write_scores(m, target, 5), **kwargs)
    assert (way == "lead ranges") == (len(ranges) == 1 and len(ranges[0]) >= 3)
    written = pd.read_parquet(target)
    assert leads == len(written) == len(frame) == 300
    assert list(written.columns) == list(frame.columns)
    assert [written[c].dtype.kind for c in written.columns] == [frame[c].dtype.kind for c in frame.columns]
    assert list(written["lead_id"]) == list(frame["lead_id"])           # the frame's order
    assert_same_scores(frame, written)
    assert list(top["lead_id"]) == list(frame["lead_id"][:5])
    assert_same_scores(frame.head(5), top)
    assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'ls_part_scores'").fetchall() == [(0,)]

def test_an_account_trait_reaches_members_in_every_lead_range(tmp_path, monkeypatch):
    """Lead a's group call names the account's industry; lead b, in the next lead range, reads it too."""
    import leadscore.engine.parquet as parquet
    msgs = [
        {"type": "group", "userId": "lead-a", "groupId": "acc1", "timestamp": "2026-01-02T00:00:00Z",
         "traits": {"name": "Acme", "industry": "SaaS"}, "messageId": "g1"},
        page("lead-a", "/", "2026-01-05T00:00:00Z"),
        {"type": "group", "userId": "lead-b", "groupId": "acc1", "timestamp": "2026-01-03T00:00:00Z",
         "traits": {}, "messageId": "g2"},
        page("lead-b", "/pricing", "2026-03-01T00:00:00Z"),
    ]
    path = _clustered(write_log(tmp_path / "log.parquet", msgs), tmp_path / "clustered.parquet", 2)
    assert parquet.lead_ranges(path, 2) == [(None, "lead-b"), ("lead-b", None)]
    monkeypatch.setattr(parquet, "rows_per_range", lambda memory: 2)
    frame = score_parquet(model(TRAIT_MODEL), path, datetime(2026, 4, 1)).set_index("lead_id")
    # a: SaaS account 7; b: SaaS account 7 + pricing 20 = 27, ranked first.
    assert list(frame.index) == ["lead-b", "lead-a"]
    assert (frame.loc["lead-a", "score"], frame.loc["lead-b", "rule:saas"], frame.loc["lead-b", "score"]) == (7, 7, 27)
