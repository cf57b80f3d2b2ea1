from datetime import datetime

import pytest

from leadscore.events import MessageErrors, normalize_batch

RECEIVED = datetime(2026, 3, 5)


def _msgs():
    return [
        {"type": "page", "anonymousId": "anon1", "messageId": "m1", "timestamp": "2026-03-01T09:00:00Z",
         "properties": {"path": "/pricing"},
         "context": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}},
        {"type": "identify", "userId": "u1", "anonymousId": "anon1", "messageId": "m2",
         "timestamp": "2026-03-01T09:01:00Z", "traits": {"email": "a@b.com", "company": {"employee_count": 250}}},
        {"type": "track", "userId": "u1", "event": "Email Opened", "messageId": "m3",
         "timestamp": "2026-03-02T09:01:00Z", "properties": {"email_id": "e1"}},
        {"type": "group", "userId": "u1", "groupId": "acme", "messageId": "m4", "traits": {"industry": "SaaS"}},
    ]


def test_ingest_resolves_anonymous_events_and_stores_duplicates_once(store):
    first = store.ingest(normalize_batch(_msgs(), RECEIVED))
    again = store.ingest(normalize_batch(_msgs(), RECEIVED))
    assert (first.stored, again.stored) == (4, 0)
    assert store.query("SELECT count(*) FROM events")[0][0] == 4
    rows = store.query("SELECT lead_id, type FROM resolved_events ORDER BY ts")
    assert rows == [("u1", "page"), ("u1", "identify"), ("u1", "track"), ("u1", "group")]
    traits = dict((k, v) for _, k, v, _ in store.query("SELECT * FROM resolved_traits"))
    assert traits == {"account_id": "acme", "browser": "Chrome", "company.employee_count": "250", "email": "a@b.com"}
    assert store.query("SELECT key, value FROM account_traits") == [("industry", "SaaS")]


def test_newest_trait_wins_whatever_the_arrival_order(store):
    newer = {"type": "identify", "userId": "u1", "messageId": "n", "timestamp": "2026-03-02T00:00:00Z", "traits": {"title": "CMO"}}
    older = {"type": "identify", "userId": "u1", "messageId": "o", "timestamp": "2026-03-01T00:00:00Z", "traits": {"title": "Intern"}}
    store.ingest(normalize_batch([newer], RECEIVED))
    store.ingest(normalize_batch([older], RECEIVED))
    assert store.query("SELECT value FROM resolved_traits WHERE key = 'title'") == [("CMO",)]


def test_alias_chain_resolves_to_the_final_lead(store):
    msgs = [
        {"type": "alias", "previousId": "b", "userId": "c", "messageId": "a2", "timestamp": "2026-03-02T00:00:00Z"},
        {"type": "alias", "previousId": "a", "userId": "b", "messageId": "a1", "timestamp": "2026-03-01T00:00:00Z"},
        {"type": "track", "userId": "a", "event": "X", "messageId": "t1", "timestamp": "2026-03-01T00:00:00Z"},
    ]
    store.ingest(normalize_batch(msgs, RECEIVED))
    assert store.query("SELECT lead_id FROM resolved_events WHERE message_id = 't1'") == [("c",)]
    assert store.query("SELECT lead_id FROM population ORDER BY lead_id") == [("c",)]


def test_a_bad_batch_names_every_bad_field_and_stores_nothing(store):
    msgs = _msgs() + [{"type": "track", "userId": "u"}, {"type": "page", "anonymousId": "x", "timestamp": "soon"}]
    with pytest.raises(MessageErrors) as err:
        store.ingest(normalize_batch(msgs, RECEIVED))
    assert [str(e) for e in err.value.errors][0] == "batch[4].event: required for track"
    assert err.value.errors[1].loc == "batch[5].timestamp"
    assert store.query("SELECT count(*) FROM events")[0][0] == 0


def test_clock_skew_is_corrected_from_sent_at():
    [ev] = normalize_batch([{"type": "track", "userId": "u", "event": "X", "messageId": "1",
                             "timestamp": "2026-03-01T10:00:00Z", "sentAt": "2026-03-01T10:05:00Z"}],
                           datetime(2026, 3, 1, 9, 5, 0))
    # The device clock ran an hour fast: event time = received − (sentAt − timestamp) = 09:00.
    assert ev.ts == datetime(2026, 3, 1, 9, 0, 0)
    assert ev.original_ts == datetime(2026, 3, 1, 10, 0, 0)
