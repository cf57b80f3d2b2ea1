"""The shipped models/default.yaml on a hand-built lead, every figure worked out by hand.

As of 2026-04-10T00:00Z, lead "jane":
fit:    persona   executive 30 + marketing title 15 = 45 (cap 45)
        company   500 employees 20 + SaaS 10 + US 10 = 40 (cap 40)
        tech      Chrome 5                                     → fit 90
web:    homepage 5 − bounce (3 s on it) 5 + blog 10 + pricing today 20 + pricing 30 days ago
        (half-life 30 d) 10 + docs 25 + case study 30 − careers 10 = 85 → cap 80
email:  the issue's worked example, campaign type unknown (×1.0)     47.3
product: demo 50 + trial 30 + product used on 3 days 20             100
video:  bottom-funnel demo 60 s watched fully 2 days ago: 30 + 75 % within 7 days 30;
        middle-funnel explainer 100 s: played 0–60, back to 20, on to the end: 100 % → 15,
        40 s replayed → 10;  CTA meeting booked 40          = 125 → cap 120
downloads: 10 + 5 (second)                                           15
social:  3                                                            3
engagement 80 + 47.3 + 100 + 120 + 15 + 3 = 365.3; score 455.3: hot, SQL (demo), grade A1.
"""
from datetime import datetime, timedelta

import pytest

from leadscore.engine import score_leads
from leadscore.model import default_model_path, load_model
from leadscore.video.simulate import simulate
from tests.engine.helpers import identify, load, page, track

T = "2026-04-10T00:00:00Z"
AS_OF = datetime(2026, 4, 10)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
IE11 = "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko"


def _jane():
    ident = identify("jane", email="jane@acme-corp.com", first_name="Jane", last_name="Doe", title="VP Marketing",
                     seniority="vp", company={"employee_count": 500, "industry": "SaaS"}, address={"country": "US"})
    ident["context"] = {"userAgent": CHROME}
    msgs = [ident,
            page("jane", "/", T, time_on_page=3), page("jane", "/blog/scoring-101", T), page("jane", "/pricing", T),
            page("jane", "/pricing", "2026-03-11T00:00:00Z"), page("jane", "/docs/api", T),
            page("jane", "/case-studies/acme", T), page("jane", "/careers", T),
            track("jane", "Email Delivered", "2026-03-01T09:00:00Z", email_id="e1"),
            track("jane", "Email Opened", "2026-03-01T09:30:00Z", email_id="e1"),
            track("jane", "Email Opened", "2026-03-01T20:00:00Z", email_id="e1"),
            track("jane", "Email Link Clicked", "2026-03-02T15:00:00Z", email_id="e1"),
            track("jane", "Email Replied", "2026-03-05T10:00:00Z", email_id="e1"),
            track("jane", "Demo Requested", "2026-04-09T00:00:00Z"), track("jane", "Trial Started", "2026-04-01T00:00:00Z"),
            track("jane", "Product Used", "2026-04-02T10:00:00Z"), track("jane", "Product Used", "2026-04-03T10:00:00Z"),
            track("jane", "Product Used", "2026-04-03T11:00:00Z"), track("jane", "Product Used", "2026-04-05T10:00:00Z"),
            track("jane", "Resource Downloaded", T, resource_type="whitepaper"),
            track("jane", "Resource Downloaded", T, resource_type="ebook"),
            track("jane", "Social Engaged", T, network="linkedin", action="like"),
            track("jane", "CTA Clicked", "2026-04-08T00:01:00Z", cta_type="meeting", content_asset_id="demo-video", position=55)]
    msgs += simulate([("play", 60)], duration=60, start=datetime(2026, 4, 8), user_id="jane", session_id="s1",
                     video_id="demo-video").events
    msgs += simulate([("play", 60), ("seek", 20), ("play", 80)], duration=100, start=datetime(2026, 4, 8, 12),
                     user_id="jane", session_id="s2", video_id="explainer").events
    return msgs


def _student():
    ident = identify("sam", email="sam@mailinator.com", first_name="Sam", last_name="Lee", title="Student",
                     seniority="student", address={"country": "BR"})
    ident["context"] = {"userAgent": IE11}
    return [ident, track("sam", "Demo Requested", "2026-04-09T00:00:00Z"),
            track("sam", "Trial Started", "2026-04-09T00:00:00Z")]


@pytest.fixture
def population(store):
    store.execute("INSERT INTO video_catalog (video_id, title, duration, category, stage) VALUES "
                  "('demo-video', 'Product demo', 60, 'demo', 'bottom'), "
                  "('explainer', 'How it works', 100, 'explainer', 'middle')")
    load(store, _jane() + _student())
    return store


def test_default_model_on_a_hand_built_buyer(population):
    s = score_leads(population, load_model(default_model_path()), AS_OF).set_index("lead_id")
    jane = s.loc["jane"]
    assert jane["group:persona"] == 45 and jane["group:company"] == 40 and jane["group:tech"] == 5
    assert jane["fit"] == 90
    assert jane["rule:pricing_page"] == pytest.approx(30.0)
    assert jane["rule:bounce"] == -5 and jane["rule:careers_page"] == -10
    assert jane["group:web"] == 80
    assert jane["group:email"] == pytest.approx(47.3)
    assert jane["group:product"] == 100
    assert jane["rule:video_bottom_of_funnel"] == 30 and jane["rule:video_bottom_deep_recent"] == 30
    assert jane["rule:video_middle_of_funnel"] == 15 and jane["rule:video_replayed_section"] == 10
    assert jane["rule:video_cta_meeting"] == 40
    assert jane["group:video"] == 120
    assert jane["group:downloads"] == 15 and jane["group:social"] == 3
    assert jane["engagement"] == pytest.approx(365.3)
    assert jane["score"] == pytest.approx(455.3)
    assert (jane["tier"], jane["stage"], jane["grade"]) == ("hot", "SQL", "A1")


def test_default_model_on_a_student_with_a_throwaway_address(population):
    sam = score_leads(population, load_model(default_model_path()), AS_OF).set_index("lead_id").loc["sam"]
    # persona student −25; company out of market −20; tech IE −10; hygiene disposable −50 (disqualifies)
    assert sam["fit"] == -105
    assert sam["engagement"] == 80  # demo 50 + trial 30
    assert bool(sam["disqualified"])
    assert sam["stage"] == "lead"   # never MQL once disqualified
    assert (sam["tier"], sam["grade"]) == ("cold", "D2")


def test_video_decays_out_of_the_recent_window(population):
    later = score_leads(population, load_model(default_model_path()), AS_OF + timedelta(days=40)).set_index("lead_id")
    jane = later.loc["jane"]
    # 40 days on: the 7-day window has passed (−30) and no video for 30+ days (−10)
    assert jane["rule:video_bottom_deep_recent"] == 0
    assert jane["rule:video_inactive"] == -10
    assert jane["group:video"] == 30 + 15 + 10 + 40 - 10
