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


def test_identity_links_in_bulk_keep_the_earliest_and_stay_one_hop(store):
    msgs = [
        # x was first seen as anon of u1; a later identify claiming it for u2 does not steal it
        {"type": "identify", "userId": "u1", "anonymousId": "x", "messageId": "1", "timestamp": "2026-03-01T00:00:00Z"},
        {"type": "identify", "userId": "u2", "anonymousId": "x", "messageId": "2", "timestamp": "2026-03-02T00:00:00Z"},
        # u1 is later aliased into u3: x must follow (one hop: x → u3)
        {"type": "alias", "previousId": "u1", "userId": "u3", "messageId": "3", "timestamp": "2026-03-03T00:00:00Z"},
        # a link closing a cycle (u3 → u1) is dropped
        {"type": "alias", "previousId": "u3", "userId": "u1", "messageId": "4", "timestamp": "2026-03-04T00:00:00Z"},
    ] + [{"type": "track", "userId": f"p{i}", "anonymousId": f"anon{i}", "event": "E", "messageId": f"t{i}",
          "timestamp": "2026-03-05T00:00:00Z"} for i in range(300)]
    store.ingest(normalize_batch(msgs[:2], RECEIVED))
    store.ingest(normalize_batch(msgs[2:], RECEIVED))
    ids = dict(store.query("SELECT alias_id, lead_id FROM identities"))
    assert ids["x"] == "u3" and ids["u1"] == "u3" and "u3" not in ids
    assert all(ids[f"anon{i}"] == f"p{i}" for i in range(300))
    assert store.query("SELECT count(*) FROM identities") == [(302,)]
