"""A targeted re-score (``score_leads(leads=...)``) reads only the leads' own messages and traits, found
through every id that resolves to them; merged identities are where that can go wrong."""
from datetime import datetime

import pytest

from leadscore.engine import score, score_leads
from leadscore.events import normalize_batch
from tests.engine.helpers import model

MODEL = model("""
name: targeted
groups:
  persona: {axis: fit}
  web: {axis: engagement}
tiers: [{name: cold}, {name: warm, min: 20}, {name: hot, min: 50}]
rules:
  - {name: vp, group: persona, trait: {title: {contains: VP}}, points: 25}
  - {name: pricing, group: web, page: /pricing, points: 10, additional: 2}
  - {name: demo, group: web, event: Demo Requested, points: 30}
""")
AS_OF = datetime(2026, 11, 1)


def _ingest(store, messages):
    store.ingest(normalize_batch(messages, AS_OF))


@pytest.mark.parametrize("path", ["index", "scan"])
def test_scores_of_merged_leads_count_their_anonymous_messages_and_traits(store, path, monkeypatch):
    """``index``: each lead's messages fetched through its ids; ``scan`` (what many leads of a DuckDB
    store get): one scan of the log, the lead list as a semi-join. Both resolve merged identities."""
    if path == "scan":
        monkeypatch.setattr(score, "SCAN_MIN_LEADS", 0)
        monkeypatch.setattr(score, "SCAN_SHARE", 0.0)
    _ingest(store, [
        # anonymous visitor, with a trait set before anyone knew who it was
        {"type": "page", "anonymousId": "anon-1", "timestamp": "2026-10-01T10:00:00Z",
         "properties": {"path": "/pricing"}, "messageId": "a1"},
        {"type": "identify", "anonymousId": "anon-1", "timestamp": "2026-10-01T10:01:00Z",
         "traits": {"title": "VP Sales"}, "messageId": "a2"},
        {"type": "page", "anonymousId": "anon-1", "timestamp": "2026-10-01T10:02:00Z",
         "properties": {"path": "/pricing"}, "messageId": "a3"},
        # ... who then identifies as ann
        {"type": "identify", "userId": "ann", "anonymousId": "anon-1", "timestamp": "2026-10-02T09:00:00Z",
         "traits": {"email": "ann@example.com"}, "messageId": "a4"},
        # an old user id aliased into ann, with an older title of its own (the newest of ann's ids wins)
        {"type": "identify", "userId": "ann-old", "timestamp": "2026-09-30T09:00:00Z",
         "traits": {"title": "Student"}, "messageId": "a0"},
        {"type": "track", "userId": "ann-old", "event": "Demo Requested", "timestamp": "2026-10-03T09:00:00Z",
         "messageId": "a5"},
        {"type": "alias", "userId": "ann", "previousId": "ann-old", "timestamp": "2026-10-04T09:00:00Z", "messageId": "a6"},
        # another lead whose anonymous id is not ann's
        {"type": "page", "userId": "bob", "anonymousId": "anon-2", "timestamp": "2026-10-05T09:00:00Z",
         "properties": {"path": "/pricing"}, "messageId": "b1"},
        {"type": "page", "anonymousId": "anon-2", "timestamp": "2026-10-05T09:01:00Z",
         "properties": {"path": "/pricing"}, "messageId": "b2"},
    ])
    full = score_leads(store, MODEL, AS_OF).set_index("lead_id")
    # ann: VP (25: anon-1's "VP Sales" of Oct 1 is newer than ann-old's "Student") + pricing first 10
    # + additional 2 + demo 30 = 67; bob: pricing 10 + 2 = 12
    assert full.loc["ann", "score"] == 67.0 and full.loc["bob", "score"] == 12.0
    assert full.loc["ann", "rule:vp"] == 25.0
    for leads in (["ann"], ["bob"], ["ann", "bob"]):
        part = score_leads(store, MODEL, AS_OF, leads=leads, activity=True).set_index("lead_id")
        assert sorted(part.index) == sorted(leads)
        for lead in leads:
            assert part.loc[lead, "score"] == full.loc[lead, "score"]
            assert part.loc[lead, "rule:pricing"] == full.loc[lead, "rule:pricing"]
            assert part.loc[lead, "rule:vp"] == full.loc[lead, "rule:vp"]
    part = score_leads(store, MODEL, AS_OF, leads=["ann", "bob"], activity=True).set_index("lead_id")
    assert part.loc["ann", "last_activity"] == datetime(2026, 10, 4, 9, 0)   # the alias message
    assert part.loc["bob", "last_activity"] == datetime(2026, 10, 5, 9, 1)   # anon-2, merged into bob


def test_concurrent_scoring_leaves_the_duckdb_optimizer_settings_as_they_were(store):
    """The scoring query runs with DuckDB's CTE filter pusher off, a setting of the whole database:
    scores computed from several threads at once all equal the single-threaded ones, and afterwards the
    setting is back to what it was."""
    import threading
    if store.dialect.name != "duckdb":
        pytest.skip("a DuckDB setting")
    _ingest(store, [{"type": "page", "userId": f"u{i}", "timestamp": "2026-10-01T10:00:00Z",
                     "properties": {"path": "/pricing"}, "messageId": f"m{i}"} for i in range(20)])
    before = store._settings.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0]
    alone = score_leads(store, MODEL, AS_OF)
    frames, errors = [], []

    def run():
        try:
            for _ in range(5):
                frames.append(score_leads(store, MODEL, AS_OF))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(frames) == 20
    assert all(f["score"].tolist() == alone["score"].tolist() == [10.0] * 20 for f in frames)
    assert store._settings.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0] == before


def test_a_targeted_query_fetches_the_video_columns_only_when_it_derives_a_video_rule():
    """A targeted re-score's messages are fetched row by row (scattered over the log) and the UNION of its
    two id branches compares whole rows, so each column it selects costs per message: the typed video
    columns are selected only when a derived rule reads them (the scores are the same either way:
    tests/engine/test_partial.py compares partial and full re-scores on every column)."""
    from leadscore.engine import partial
    from leadscore.engine.compile import compile_model
    from leadscore.model import default_model_path, load_model
    from leadscore.store.dialect import DUCKDB

    default = load_model(default_model_path())
    assert any(r.video for r in default.rules)

    def events_cte(fresh):
        sql = compile_model(default, DUCKDB, AS_OF, leads=["a"], scope=["a", "anon-a"], fresh=fresh,
                            cache=None if fresh is None else partial.CACHE).sql
        return sql[sql.index("s_events AS"):sql.index("s_traits AS")]

    page_only = partial.always_derived(default) | partial.touched(default, [("page", None)])
    assert not any(default.rules[i].video for i in page_only if i >= 0)
    assert "video_position" not in events_cte(page_only) and "properties" in events_cte(page_only)
    assert "video_position" in events_cte(None)                       # every rule, the video ones too
    video = partial.always_derived(default) | partial.touched(default, [("track", "Video Content Playing")])
    assert any(default.rules[i].video for i in video if i >= 0)
    assert "video_position" in events_cte(video)
