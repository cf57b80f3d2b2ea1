"""Every rule kind of the model file, each with numbers worked out by hand in the test.
All run on DuckDB and on PostgreSQL (the `store` fixture)."""
from datetime import datetime

import pytest

from leadscore.engine import score_leads
from tests.engine.helpers import identify, load, model, page, track

AS_OF = datetime(2026, 4, 10)


def scores(store, yaml_text, as_of=AS_OF):
    return score_leads(store, model(yaml_text), as_of).set_index("lead_id")


HEAD = """
name: t
groups:
  g: {axis: engagement}
  f: {axis: fit}
"""


def test_frequency_first_additional_max_count_and_per_property(store):
    load(store, [track("a", "Email Opened", f"2026-04-0{d}T10:00:00Z", email_id=e) for d, e in
                 [(1, "e1"), (2, "e1"), (3, "e1"), (4, "e2"), (5, "e2")]])
    s = scores(store, HEAD + """
rules:
  - {name: opens, group: g, event: Email Opened, points: 5, additional: 2, per: email_id, max_count: 2}
  - {name: any_open, group: g, event: Email Opened, points: 1, max_count: 4}
""").loc["a"]
    # per e-mail: e1 → 5 + 2 (third open beyond max_count 2), e2 → 5 + 2  = 14
    assert s["rule:opens"] == 14
    assert s["hits:opens"] == 4
    # every open 1 point, at most 4 counted
    assert s["rule:any_open"] == 4


def test_window_counts_only_recent_events(store):
    load(store, [page("a", "/pricing", "2026-03-01T00:00:00Z"), page("a", "/pricing", "2026-04-05T00:00:00Z")])
    s = scores(store, HEAD + """
rules:
  - {name: pricing, group: g, page: /pricing, points: 20, window: 30d}
""").loc["a"]
    assert s["rule:pricing"] == 20  # the March 1 visit is 40 days old


def test_step_decay_with_several_steps_and_half_life(store):
    load(store, [track("a", "X", "2026-03-01T00:00:00Z"),   # 40 days before as-of
                 track("a", "Y", "2026-01-10T00:00:00Z"),   # 90 days
                 track("a", "Z", "2026-03-11T00:00:00Z")])  # 30 days
    s = scores(store, HEAD + """
rules:
  - name: x
    group: g
    event: [X, Y]
    points: 100
    decay: {steps: [{after: 60d, keep: 0.25}, {after: 30d, keep: 0.5}]}
  - {name: z, group: g, event: Z, points: 8, decay: {half_life: 15d}}
""").loc["a"]
    # X at 40 days keeps 50 %, Y at 90 days keeps 25 %: 50 + 25
    assert s["rule:x"] == 75
    # two half-lives: 8 × 0.25
    assert s["rule:z"] == pytest.approx(2.0)


def test_step_decay_boundary_is_strictly_after(store):
    load(store, [track("a", "X", "2026-03-11T00:00:00Z")])  # exactly 30 days before as-of
    s = scores(store, HEAD + """
rules:
  - {name: x, group: g, event: X, points: 10, decay: {steps: [{after: 30d, keep: 0.5}]}}
""").loc["a"]
    assert s["rule:x"] == 10


def test_multiplier_by_campaign_and_by_response_time_property(store):
    load(store, [
        track("a", "Email Replied", "2026-04-01T10:30:00Z", email_id="1", campaign_type="cold_outreach", sent_at="2026-04-01T10:00:00Z"),
        track("a", "Email Replied", "2026-04-03T10:00:00Z", email_id="2", campaign_type="nurture", sent_at="2026-04-01T10:00:00Z"),
        track("a", "Email Replied", "2026-04-05T10:00:00Z", email_id="3", sent_at="2026-04-05T00:00:00Z"),
    ])
    s = scores(store, HEAD + """
rules:
  - name: reply
    group: g
    event: Email Replied
    points: 30
    multipliers:
      - property: campaign_type
        values: {cold_outreach: 1.5, nurture: 1.0, sales_follow_up: 2.0}
      - response_time: {since_property: sent_at}
        bands: [{within: 1h, factor: 2.0}, {within: 24h, factor: 1.5}, {within: 48h, factor: 1.2}]
""").loc["a"]
    # e1: 30 × 1.5 × 2.0 = 90; e2: 30 × 1.0 × 1.0 (48 h exactly is within 48 h → 1.2) = 36;
    # e3: campaign unknown ×1.0, 10 h → ×1.5 = 45.   Total 171.
    assert s["rule:reply"] == pytest.approx(90 + 36 + 45)


def test_aggregates_count_distinct_sum_bucket_and_bands(store):
    load(store, [
        track("a", "Product Used", "2026-04-01T09:00:00Z"), track("a", "Product Used", "2026-04-01T15:00:00Z"),
        track("a", "Product Used", "2026-04-02T09:00:00Z"), track("a", "Product Used", "2026-04-04T09:00:00Z"),
        track("b", "Product Used", "2026-04-01T09:00:00Z"), track("b", "Product Used", "2026-04-02T09:00:00Z"),
        track("a", "Watched", "2026-04-06T09:00:00Z", seconds=600, video="v1"),
        track("a", "Watched", "2026-04-06T11:00:00Z", seconds=900, video="v2"),
        track("b", "Watched", "2026-04-07T11:00:00Z", seconds=300, video="v1"),
        track("b", "Watched", "2026-04-08T11:00:00Z", seconds=300, video="v2"),
    ])
    s = scores(store, HEAD + """
rules:
  - {name: trial_3_days, group: g, event: Product Used, aggregate: {count_distinct: day, min: 3}, points: 20}
  - name: minutes
    group: g
    event: Watched
    aggregate: {sum: seconds, scale: 0.016666666666666666}
    bands: [{min: 10, points: 5}, {min: 20, points: 12}]
  - {name: two_in_a_day, group: g, event: Watched, aggregate: {count_distinct: video, bucket: day, min: 2}, points: 7}
""")
    # a used the product on Apr 1, 2 and 4 (3 days); b on 2 days.
    assert (s.loc["a", "rule:trial_3_days"], s.loc["b", "rule:trial_3_days"]) == (20, 0)
    # a watched 25 minutes (≥ 20 → 12); b 10 minutes (≥ 10 → 5).
    assert (s.loc["a", "rule:minutes"], s.loc["b", "rule:minutes"]) == (12, 5)
    # a watched two videos on Apr 6; b one per day.
    assert (s.loc["a", "rule:two_in_a_day"], s.loc["b", "rule:two_in_a_day"]) == (7, 0)


def test_inactivity(store):
    load(store, [page("a", "/", "2026-03-01T00:00:00Z"), page("b", "/", "2026-04-01T00:00:00Z"),
                 identify("c")])
    s = scores(store, HEAD + """
rules:
  - {name: idle, group: g, inactivity: {after: 30d}, points: -10}
  - {name: idle_or_never, group: g, type: page, inactivity: {after: 30d, if_never: true}, points: -1}
""")
    # a: last page 40 days ago → idle; b: 9 days → active; c: never engaged (only counted with if_never)
    assert s.loc["a", "rule:idle"] == -10 and s.loc["b", "rule:idle"] == 0 and s.loc["c", "rule:idle"] == 0
    assert s.loc["c", "rule:idle_or_never"] == -1 and s.loc["a", "rule:idle_or_never"] == -1


def test_engagement_depth(store):
    load(store, [
        page("a", "/blog/x", "2026-04-01T10:00:00Z", time_on_page=3, session_id="s1"),
        page("a", "/blog/y", "2026-04-01T10:01:00Z", time_on_page=120, scroll_depth=90, session_id="s1"),
        page("a", "/blog/z", "2026-04-01T10:05:00Z", time_on_page=30, scroll_depth=40, session_id="s1"),
        page("a", "/", "2026-04-03T10:00:00Z", time_on_page=2, session_id="s2"),
        page("a", "/", "2026-04-05T10:00:00Z", time_on_page=20, session_id="s3"),
    ])
    s = scores(store, HEAD + """
rules:
  - {name: bounce, group: g, type: page, where: {time_on_page: {lt: 5}}, points: -5}
  - {name: deep, group: g, type: page, where: {scroll_depth: {gte: 75}, time_on_page: {gte: 60}}, points: 3}
  - {name: session3, group: g, type: page, aggregate: {count: true, bucket: session_id, min: 3}, points: 10}
  - {name: returns, group: g, type: page, aggregate: {count_distinct: day, min: 3}, points: 10}
""").loc["a"]
    assert s["rule:bounce"] == -10      # two visits under 5 s
    assert s["rule:deep"] == 3
    assert s["rule:session3"] == 10     # session s1 had 3 pages
    assert s["rule:returns"] == 10      # Apr 1, 3 and 5


def test_trait_conditions_on_lead_and_account(store):
    load(store, [
        identify("a", title="VP of Marketing", seniority="vp", email="a@corp.io",
                 company={"employee_count": 500}, address={"country": "US"}),
        identify("b", title="Student", seniority="student", company={"employee_count": 5}, address={"country": "BR"}),
        identify("c"),
        {"type": "group", "userId": "a", "groupId": "acme", "traits": {"industry": "SaaS", "plan": "enterprise"},
         "timestamp": "2026-01-02T00:00:00Z", "messageId": "grp-a"},
    ])
    s = scores(store, HEAD + """
rules:
  - {name: exec, group: f, trait: {seniority: {in: [c_level, vp]}}, points: 30}
  - {name: marketing, group: f, trait: {title: {contains: marketing, ignore_case: true}}, points: 10}
  - {name: student, group: f, trait: {title: {regex: "^Stud"}}, points: -25}
  - {name: case_matters, group: f, trait: {title: {regex: "^stud"}}, points: -1000}
  - {name: big, group: f, trait: {company.employee_count: {gte: 200}}, points: 20}
  - {name: tiny, group: f, trait: {company.employee_count: {between: [1, 10]}}, points: -5}
  - {name: in_market, group: f, trait: {address.country: [US, GB]}, points: 10}
  - {name: out_of_market, group: f, trait: {address.country: {not_in: [US, GB]}}, points: -20}
  - {name: has_email, group: f, trait: {email: {exists: true}}, points: 1}
  - {name: saas_account, group: f, trait: {account.industry: SaaS, account.plan: {ne: free}}, points: 15}
""")
    assert s.loc["a", "fit"] == 30 + 10 + 20 + 10 + 1 + 15
    assert s.loc["b", "fit"] == -25 - 5 - 20
    assert s.loc["c", "fit"] == 0   # nothing known: no condition holds, not even not_in


def test_group_and_axis_caps(store):
    load(store, [page("a", "/pricing", f"2026-04-0{d}T00:00:00Z") for d in range(1, 6)] +
                [identify("a", seniority="vp", title="CMO")])
    s = scores(store, """
name: t
axes: {fit: {cap: 25}}
groups:
  web: {axis: engagement, cap: 50}
  persona: {axis: fit, cap: 40}
  title: {axis: fit}
rules:
  - {name: pricing, group: web, page: /pricing, points: 20}
  - {name: exec, group: persona, trait: {seniority: vp}, points: 30}
  - {name: cmo, group: title, trait: {title: CMO}, points: 15}
  - {name: pricing_rule_cap, group: web, page: /pricing, points: 3, cap: 7}
""").loc["a"]
    assert s["rule:pricing"] == 100 and s["rule:pricing_rule_cap"] == 7
    assert s["group:web"] == 50        # 107 capped at 50
    assert s["fit"] == 25              # persona 30 + title 15 = 45, axis cap 25
    assert s["score"] == 75


def test_junk_checks_and_disqualification(store):
    load(store, [
        identify("d", email="bob@mailinator.com", first_name="Bob"),
        identify("r", email="info@acme.com", first_name="Ann"),
        identify("i", email="not-an-email", first_name="Carl"),
        identify("g", email="x@acme.com", first_name="asdf", last_name="Qwerty"),
        identify("ok", email="jane.doe@acme.com", first_name="Jane", last_name="Doe"),
    ] + [track(u, "Demo Requested", "2026-04-01T00:00:00Z") for u in "drigk"] +
        [track("ok", "Demo Requested", "2026-04-01T00:00:00Z")])
    s = scores(store, """
name: t
groups:
  hygiene: {axis: fit}
  product: {axis: engagement}
stages:
  - name: subscriber
  - name: lead
    when: {trait: {email: {exists: true}}}
  - name: MQL
    when: {stage: lead, engagement: {gte: 50}}
disqualified_stage: lead
rules:
  - {name: disposable, group: hygiene, trait: {email: {is: disposable_email}}, points: -50, disqualify: true}
  - {name: role, group: hygiene, trait: {email: {is: role_email}}, points: -15}
  - {name: invalid, group: hygiene, trait: {email: {is: invalid_email}}, points: -40, disqualify: true}
  - name: gibberish
    group: hygiene
    trait: {any: [{first_name: {is: gibberish}}, {last_name: {is: gibberish}}]}
    points: -20
    disqualify: true
  - {name: demo, group: product, event: Demo Requested, points: 50}
""")
    assert s.loc["d", "fit"] == -50 and s.loc["r", "fit"] == -15
    assert s.loc["i", "fit"] == -40 and s.loc["g", "fit"] == -20 and s.loc["ok", "fit"] == 0
    assert bool(s.loc["d", "disqualified"]) and not bool(s.loc["r", "disqualified"])
    # Everyone requested a demo (engagement 50); the disqualified never pass "lead".
    assert dict(s["stage"]) == {"d": "lead", "r": "MQL", "i": "lead", "g": "lead", "ok": "MQL", "k": "subscriber"}


def test_tiers_stages_with_events_and_grade_matrix(store):
    load(store, [identify(u, email=f"{u}@corp.io", seniority=sen) for u, sen in
                 [("hot", "c_level"), ("warm", "manager"), ("cold", "individual")]] +
         [track("hot", "Demo Requested", "2026-04-01T00:00:00Z"), page("hot", "/pricing", "2026-04-02T00:00:00Z"),
          page("warm", "/pricing", "2026-04-02T00:00:00Z")])
    s = scores(store, """
name: t
groups:
  persona: {axis: fit}
  web: {axis: engagement}
  product: {axis: engagement}
tiers: [{name: cold}, {name: warm, min: 40}, {name: hot, min: 100}]
stages:
  - name: subscriber
  - name: lead
    when: {trait: {email: {exists: true}}}
  - name: MQL
    when: {stage: lead, fit: {gte: 20}, engagement: {gte: 60}}
  - name: SQL
    when: {stage: MQL, event: [Demo Requested, Meeting Booked]}
grades:
  fit: [{grade: A, min: 40}, {grade: B, min: 20}, {grade: C}]
  engagement: [{grade: "1", min: 60}, {grade: "2", min: 20}, {grade: "3"}]
rules:
  - {name: exec, group: persona, trait: {seniority: c_level}, points: 40}
  - {name: mgr, group: persona, trait: {seniority: manager}, points: 20}
  - {name: pricing, group: web, page: /pricing, points: 20}
  - {name: demo, group: product, event: Demo Requested, points: 50}
""")
    # hot: fit 40, engagement 70 → 110 hot, SQL, A1.  warm: 20 + 20 = 40 → warm, lead, B2.  cold: 0.
    assert list(s.loc["hot", ["score", "tier", "stage", "grade"]]) == [110, "hot", "SQL", "A1"]
    assert list(s.loc["warm", ["score", "tier", "stage", "grade"]]) == [40, "warm", "lead", "B2"]
    assert list(s.loc["cold", ["score", "tier", "stage", "grade"]]) == [0, "cold", "lead", "C3"]


def test_anonymous_activity_counts_once_identified(store):
    load(store, [{"type": "page", "anonymousId": "anon-9", "timestamp": "2026-04-01T00:00:00Z",
                  "properties": {"path": "/pricing"}, "messageId": "anon-page"}])
    m = HEAD + "rules:\n  - {name: pricing, group: g, page: /pricing, points: 20}\n"
    assert "anon-9" not in scores(store, m).index
    load(store, [{"type": "identify", "userId": "known", "anonymousId": "anon-9", "timestamp": "2026-04-02T00:00:00Z",
                  "traits": {"email": "k@corp.io"}, "messageId": "link"}])
    assert scores(store, m).loc["known", "rule:pricing"] == 20


def test_explanation_of_a_fit_rule_shows_the_trait_values(store):
    from leadscore.engine import explain_lead
    load(store, [identify("a", seniority="vp", title="VP Sales"),
                 {"type": "group", "userId": "a", "groupId": "acme", "traits": {"industry": "SaaS"},
                  "timestamp": "2026-01-02T00:00:00Z", "messageId": "grp"}])
    out = explain_lead(store, model(HEAD + """
rules:
  - {name: exec, group: f, trait: {any: [{seniority: vp}, {title: {prefix: VP}}]}, points: 30}
  - {name: saas, group: f, trait: {account.industry: SaaS}, points: 5}
"""), "a", AS_OF)
    by_rule = {r["rule"]: r for r in out["rules"]}
    assert by_rule["exec"]["traits"] == {"seniority": "vp", "title": "VP Sales"}
    assert by_rule["saas"]["traits"] == {"account.industry": "SaaS"}
    assert out["fit"] == 35


def test_predicted_probability_appears_beside_the_points_and_can_gate_a_stage(store):
    load(store, [identify("a", email="a@corp.io"), identify("b", email="b@corp.io")])
    store.execute("INSERT INTO lead_predictions VALUES ('a', 0.62, 'p1', TIMESTAMP '2026-04-01 00:00:00', NULL, "
                  "TIMESTAMP '2026-04-01 00:00:00'), ('b', 0.10, 'p1', TIMESTAMP '2026-04-01 00:00:00', NULL, "
                  "TIMESTAMP '2026-04-01 00:00:00')")
    plain = scores(store, HEAD + "rules:\n  - {name: x, group: g, event: X, points: 1}\n")
    assert (plain.loc["a", "probability"], plain.loc["b", "probability"]) == (0.62, 0.10)
    # a targeted re-score (a live pass) reads its own leads' predictions
    one = score_leads(store, model(HEAD + "rules:\n  - {name: x, group: g, event: X, points: 1}\n"), AS_OF, leads=["b"])
    assert one[["lead_id", "probability"]].values.tolist() == [["b", 0.10]]
    gated = scores(store, HEAD + """
stages:
  - name: lead
  - name: MQL
    when: {probability: {gte: 0.4}}
rules:
  - {name: x, group: g, event: X, points: 1}
""")
    assert dict(gated["stage"]) == {"a": "MQL", "b": "lead"}
