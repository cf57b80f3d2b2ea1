"""Fuzzing the JSON Lines importer (hypothesis): a file is either stored whole or refused whole with
errors that name a real line and a field; never a traceback, never a half-written store."""
import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from leadscore.ingest.jsonl import EventFileError, ingest_jsonl
from leadscore.store import open_store

ids = st.one_of(st.none(), st.text(max_size=8), st.integers(-5, 10**20), st.booleans(), st.lists(st.integers(), max_size=2))
times = st.one_of(st.none(), st.sampled_from(["2026-03-01T09:00:00Z", "2026-03-01", "yesterday", "0001-01-01T00:00:00Z",
                                              "9999-12-31T23:59:59Z", "2026-02-30T00:00:00Z", ""]), st.integers())
props = st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=10)), max_size=3)
message = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "identify", "group", "alias", "screen", "bogus", None, 7])},
    optional={"userId": ids, "anonymousId": ids, "event": st.one_of(st.text(max_size=20), st.none(), st.integers()),
              "messageId": ids, "timestamp": times, "properties": st.one_of(props, st.text(max_size=5), st.integers()),
              "traits": st.one_of(props, st.lists(st.integers())), "groupId": ids, "previousId": ids,
              "context": st.one_of(props, st.none())})
line = st.one_of(message.map(lambda m: json.dumps(m)), st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t),
                 st.just("[1, 2]"), st.just('"just a string"'), st.just("{\"type\": \"track\""))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    store = open_store(str(tmp / "s.duckdb"))
    yield tmp, store
    store.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line, min_size=1, max_size=12))
def test_event_files_are_all_or_nothing(shared, lines):
    tmp, store = shared
    path = tmp / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = store.query("SELECT count(*) FROM events")[0][0]
    try:
        res = ingest_jsonl(store, path, datetime(2026, 3, 5))
    except EventFileError as exc:
        numbered = {n for n, text in enumerate(lines, start=1) if text.strip()}
        assert exc.errors and all(e.line in numbered and e.field and e.message for e in exc.errors)
        assert store.query("SELECT count(*) FROM events")[0][0] == before  # nothing stored
    else:
        assert res.stored == store.query("SELECT count(*) FROM events")[0][0] - before
        assert res.rejected == 0
