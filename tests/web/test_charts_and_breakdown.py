"""The dashboard's pure parts: the breakdown that adds up to the score (caps shown as lines), heat
runs and colours, and escaping in the SVG the server draws."""
from __future__ import annotations

import json
import re

import pytest

from leadscore.model import default_model_path, load_model
from leadscore.web import breakdown, charts
from leadscore.web.session import Sessions, safe_next

XSS = "<script>alert(1)</script>"


def _rule(name, group, points, axis="engagement"):
    return {"rule": name, "group": group, "axis": axis, "points": points, "hits": 1, "occurrences": []}


def test_breakdown_lines_add_up_to_the_score_with_group_and_axis_caps():
    model = load_model(default_model_path())   # persona cap 45, email cap 100, fit axis cap 100
    groups = {g: 0.0 for g in model.groups}
    # persona: 30 + 15 + 20 = 65, capped at 45 (a -20 line); company 40; tech 5 → fit 90
    # email: 54 + 36 = 90 → engagement 90; score 180
    explanation = {
        "score": 180.0, "fit": 90.0, "engagement": 90.0,
        "groups": {**groups, "persona": 45.0, "company": 40.0, "tech": 5.0, "email": 90.0},
        "rules": [_rule("executive", "persona", 30, "fit"), _rule("marketing_or_revops_title", "persona", 15, "fit"),
                  _rule("director", "persona", 20, "fit"),
                  _rule("mid_market_or_enterprise", "company", 20, "fit"), _rule("target_industry", "company", 20, "fit"),
                  _rule("supported_browser", "tech", 5, "fit"),
                  _rule("email_reply", "email", 54), _rule("email_click", "email", 36)],
    }
    out = breakdown.build(explanation, model)
    fit, eng = out["axes"]
    persona = next(g for g in fit["groups"] if g["group"] == "persona")
    assert persona["adjust"] == -20 and persona["why"] == "group cap 45"
    assert fit["adjust"] is None and eng["adjust"] is None
    assert [g["group"] for g in eng["groups"]] == ["email"]     # groups with nothing are left out
    assert sum(out["lines"]) == pytest.approx(180.0)

    # the fit axis over its cap: one more fit group worth 20 → 110, capped at 100 (a -10 line); score 190
    explanation["groups"]["hygiene"] = 20.0
    explanation["rules"].append(_rule("made_up_positive", "hygiene", 20, "fit"))
    explanation.update(fit=100.0, score=190.0)
    out = breakdown.build(explanation, model)
    fit = out["axes"][0]
    assert fit["adjust"] == -10 and fit["why"] == "fit cap 100"
    assert sum(out["lines"]) == pytest.approx(190.0)


def test_describe_event_names_page_and_telling_properties():
    assert breakdown.describe_event({"type": "page", "name": None, "properties": {"path": "/pricing", "title": "Pricing"}}) \
        == "Page /pricing · Pricing"
    text = breakdown.describe_event({"type": "track", "event": "CTA Clicked",
                                     "properties": json.dumps({"cta_type": "meeting", "position": 50})})
    assert text == "CTA Clicked · position=50 · cta_type=meeting"


def test_heat_runs_levels_and_colours():
    counts = [1] * 5 + [2] * 10 + [1] * 5 + [0] * 20 + [5] * 20
    assert charts.runs(counts) == [(0, 5, 1), (5, 15, 2), (15, 20, 1), (20, 40, 0), (40, 60, 3)]
    svg = str(charts.heatmap_strip(counts, [{"position": 50, "cta_type": "meeting"}]))
    rects = re.findall(r'data-start="(\d+)" data-end="(\d+)" data-level="(\d)"[^>]*fill="(#[0-9a-f]+)"', svg)
    assert [(int(a), int(b), int(c)) for a, b, c, _ in rects] == charts.runs(counts)
    assert [f for *_, f in rects] == [charts.HEAT_COLOURS[1], charts.HEAT_COLOURS[2], charts.HEAT_COLOURS[1],
                                      charts.HEAT_COLOURS[0], charts.HEAT_COLOURS[3]]
    assert 'data-position="50"' in svg and "CTA meeting at 0:50" in svg


def test_chart_text_is_escaped():
    svg = str(charts.heatmap_strip([1, 0], [{"position": 1, "cta_type": XSS}], label=XSS))
    assert XSS not in svg and "&lt;script&gt;" in svg
    bars = str(charts.bars([(XSS, 3)]))
    assert XSS not in bars and "&lt;script&gt;alert(1)&lt;/script&gt;" in bars
    from datetime import datetime
    hist = str(charts.history_chart([{"at": datetime(2026, 1, 1), "score": 10, "cause": "event", "cause_ref": XSS,
                                      "tier": "cold"}], [{"name": XSS, "min": 5}], datetime(2026, 1, 2)))
    assert XSS not in hist


def test_sparkline_and_engagement_graph_edge_cases():
    assert "no history" in str(charts.sparkline([]))
    assert 'class="spark spark-flat"' in str(charts.sparkline([7]))
    assert 'spark-up' in str(charts.sparkline([1, 3]))
    g = str(charts.engagement_graph([1.0, 0.5], [0, 1], 2))
    series = json.loads(re.search(r'data-series="([^"]+)"', g).group(1).replace("&#34;", '"'))
    assert series == {"retention": [1.0, 0.5], "rewatches": [0, 1], "viewers": 2}
    assert "Nobody has watched" in str(charts.engagement_graph([], [], 0))


def test_safe_next_keeps_redirects_on_site():
    assert safe_next("/leads?tier=hot") == "/leads?tier=hot"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil", "", None, "leads"):
        assert safe_next(bad) == "/leads"


def test_sessions_expire():
    now = [0.0]
    s = Sessions(max_age=10, clock=lambda: now[0])
    sid = s.create("tok")
    assert s.token(sid) == "tok"
    now[0] = 11
    assert s.token(sid) is None
    assert s.token("unknown") is None
