"""The issue's worked e-mail example, by hand:
sent 2026-03-01 09:00; opened 09:30 (first open 5 × 2.0 = 10), opened 20:00 (additional 2 × 1.5 = 3),
clicked 03-02 15:00 (15 × 1.2 = 18, 30 h after sending), replied 03-05 10:00 (30 × 1.0 = 30).
As of 03-10 nothing has decayed: 61. As of 04-10 the opens are 40 days old (−50%: 5 + 1.5), the click
39 days (−40% after 14 days: 10.8), the reply 36 days (full value until 60 days: 30): 47.3."""
from datetime import datetime

import pytest

from leadscore.engine import explain_lead, score_leads
from tests.engine.helpers import load, model, track

EMAIL_MODEL = """
name: email-example
groups:
  email: {axis: engagement}
rules:
  - name: email_open
    group: email
    event: Email Opened
    points: 5
    additional: 2
    per: email_id
    decay: {steps: [{after: 30d, keep: 0.5}]}
    multipliers: &response_time
      - response_time: {since_event: Email Delivered, match: email_id}
        bands: [{within: 1h, factor: 2.0}, {within: 24h, factor: 1.5}, {within: 48h, factor: 1.2}]
  - name: email_click
    group: email
    event: Email Link Clicked
    points: 15
    additional: 5
    per: email_id
    decay: {steps: [{after: 14d, keep: 0.6}]}
    multipliers: *response_time
  - name: email_reply
    group: email
    event: Email Replied
    points: 30
    additional: 10
    per: email_id
    decay: {steps: [{after: 60d, keep: 0.5}]}
    multipliers: *response_time
"""


@pytest.fixture
def email_lead(store):
    load(store, [
        track("lead-1", "Email Delivered", "2026-03-01T09:00:00Z", email_id="e1"),
        track("lead-1", "Email Opened", "2026-03-01T09:30:00Z", email_id="e1"),
        track("lead-1", "Email Opened", "2026-03-01T20:00:00Z", email_id="e1"),
        track("lead-1", "Email Link Clicked", "2026-03-02T15:00:00Z", email_id="e1"),
        track("lead-1", "Email Replied", "2026-03-05T10:00:00Z", email_id="e1"),
    ])
    return store


def test_email_group_as_of_march_10_is_61(email_lead):
    frame = score_leads(email_lead, model(EMAIL_MODEL), datetime(2026, 3, 10))
    row = frame.set_index("lead_id").loc["lead-1"]
    assert row["rule:email_open"] == pytest.approx(13.0)
    assert row["rule:email_click"] == pytest.approx(18.0)
    assert row["rule:email_reply"] == pytest.approx(30.0)
    assert row["group:email"] == pytest.approx(61.0)


def test_email_group_as_of_april_10_is_47_3(email_lead):
    row = score_leads(email_lead, model(EMAIL_MODEL), datetime(2026, 4, 10)).set_index("lead_id").loc["lead-1"]
    assert row["rule:email_open"] == pytest.approx(6.5)
    assert row["rule:email_click"] == pytest.approx(10.8)
    assert row["rule:email_reply"] == pytest.approx(30.0)
    assert row["group:email"] == pytest.approx(47.3)
    assert row["engagement"] == pytest.approx(47.3)


def test_explanation_lists_each_occurrence_with_its_points(email_lead):
    out = explain_lead(email_lead, model(EMAIL_MODEL), "lead-1", datetime(2026, 3, 10))
    opens = next(r for r in out["rules"] if r["rule"] == "email_open")
    assert [o["points"] for o in opens["occurrences"]] == [10.0, 3.0]
    assert len(opens["events"]) == 2
    assert out["groups"] == {"email": 61.0}
    assert sum(r["points"] for r in out["rules"]) == pytest.approx(out["score"])


def test_events_after_as_of_do_not_count(email_lead):
    row = score_leads(email_lead, model(EMAIL_MODEL), datetime(2026, 3, 1, 12)).set_index("lead_id").loc["lead-1"]
    assert row["group:email"] == pytest.approx(10.0)  # only the 09:30 open has happened


def test_refresh_records_changes_with_their_cause_and_skips_unchanged(email_lead):
    from leadscore.engine import refresh_scores
    m = model(EMAIL_MODEL)
    first = refresh_scores(email_lead, m, datetime(2026, 3, 10), cause="event", cause_ref="m1")
    assert [(c.lead_id, c.score, c.prev_score) for c in first] == [("lead-1", 61.0, None)]
    assert refresh_scores(email_lead, m, datetime(2026, 3, 11), cause="time") == []  # nothing decayed yet
    later = refresh_scores(email_lead, m, datetime(2026, 4, 10), cause="time")
    assert [(c.score, c.prev_score, c.cause) for c in later] == [(pytest.approx(47.3), 61.0, "time")]
    hist = email_lead.query("SELECT score, cause FROM score_history ORDER BY changed_at")
    assert [(round(s, 4), c) for s, c in hist] == [(61.0, "event"), (47.3, "time")]
    assert email_lead.query("SELECT score FROM lead_scores") == [(pytest.approx(47.3),)]
