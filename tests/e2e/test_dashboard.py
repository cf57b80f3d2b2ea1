"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a real
uvicorn server on loopback (the whole service: ingestion, REST API, live scoring, dashboard) over a
generated population plus hand-made leads whose numbers are known (tests/web/population.py).

Screenshots of every page go to tests/e2e/screenshots/ (gitignored) for people to look at.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings
from leadscore.store import open_store
from leadscore.web.charts import HEAT_COLOURS
from tests.web.population import (AS_OF, CTA_POSITION, TEST_VIDEO, TEST_VIDEO_SECONDS, VIEWER, VIEWER_RUNS, XSS,
                                  build)

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 120_000   # the machine is shared; a lead page explains its score with the full engine


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    return build(str(tmp_path_factory.mktemp("dashboard") / "dashboard.duckdb"))


@pytest.fixture(scope="module")
def server(population):
    old = os.environ.get("LEADSCORE_TIME_RESCORE_SECONDS")
    os.environ["LEADSCORE_TIME_RESCORE_SECONDS"] = "0"      # no wall-clock re-score during the tests
    store = open_store(population.path)
    try:
        app = create_app(store, Settings(demo=False))
        app.state.web_clock = lambda: AS_OF
        live = getattr(app.state, "live", None)
        if live is not None:
            live.clock = lambda: AS_OF
        keys = {role: create_key(store, role, AS_OF, name=f"e2e-{role}").token for role in ("read", "admin", "write")}
        with ServerThread(app) as srv:
            yield srv, keys, store
    finally:
        store.close()
        if old is None:
            os.environ.pop("LEADSCORE_TIME_RESCORE_SECONDS", None)
        else:
            os.environ["LEADSCORE_TIME_RESCORE_SECONDS"] = old


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Session:
    """One browser context (its own cookies) logged in with a key, collecting JS dialogs and errors."""

    def __init__(self, browser, url: str, key: str | None):
        self.url = url
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        if key:
            self.goto(f"/leads?key={quote(key)}")
            assert "key=" not in self.page.url, "the key must not stay in the address bar"

    def goto(self, path: str):
        return self.page.goto(self.url + path, timeout=TIMEOUT_MS)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def reader(browser, server):
    srv, keys, _ = server
    s = Session(browser, srv.url, keys["read"])
    yield s
    assert s.errors == [], f"JavaScript errors: {s.errors}"
    s.close()


def _levels(page, strip) -> list[int]:
    """Per-second heat levels read back from a strip's rects, checking each rect's colour too."""
    n = int(strip.get_attribute("data-seconds"))
    out = [-1] * n
    for rect in strip.locator("rect.heat").all():
        start, end = int(rect.get_attribute("data-start")), int(rect.get_attribute("data-end"))
        level = int(rect.get_attribute("data-level"))
        assert rect.get_attribute("fill") == HEAT_COLOURS[level]
        for k in range(start, end):
            out[k] = level
    assert -1 not in out, "every second of the video has a cell"
    return out


# ------------------------------------------------------------------------------------------ login
def test_login_is_required_and_keys_are_checked(browser, server):
    srv, keys, _ = server
    s = Session(browser, srv.url, None)
    try:
        s.goto("/leads")
        assert "/login" in s.page.url
        s.shot("login")
        # a write key cannot read
        s.page.fill("input[name=key]", keys["write"])
        s.page.click("button[type=submit]")
        assert "cannot read" in s.page.locator(".error-message").inner_text()
        # a wrong key is refused
        s.page.fill("input[name=key]", "lsr_not-a-key")
        s.page.click("button[type=submit]")
        assert "unknown or revoked" in s.page.locator(".error-message").inner_text()
        # the read key logs in and lands on the page asked for
        s.page.fill("input[name=key]", keys["read"])
        s.page.click("button[type=submit]")
        s.page.wait_for_url(re.compile(r".*/leads$"))
        assert s.page.locator("#leads-table tbody tr").count() > 0
        # logging out needs the form's CSRF token
        bad = s.context.request.post(srv.url + "/logout", form={"csrf": "forged"}, max_redirects=0)
        assert bad.status == 403
        s.page.click("text=Log out")
        s.page.wait_for_url(re.compile(r".*/login"))
        s.goto("/model")
        assert "/login" in s.page.url
    finally:
        s.close()
    # without a browser: no key, no page; the session cookie is HttpOnly
    r = httpx.get(srv.url + "/leads", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    r = httpx.get(srv.url + f"/leads?key={keys['read']}", follow_redirects=False)
    assert r.status_code == 303 and "key=" not in r.headers["location"]
    assert "httponly" in r.headers["set-cookie"].lower()


def test_demo_mode_opens_reading_to_loopback_only(population, tmp_path):
    # A second, keyless service over a copy of the store with the demo flag.
    import shutil
    copy = tmp_path / "demo.duckdb"
    shutil.copy(population.path, copy)
    store = open_store(str(copy))
    try:
        app = create_app(store, Settings(demo=True), installers=("leadscore.web.app",))
        app.state.web_clock = lambda: AS_OF
        with ServerThread(app) as srv:
            r = httpx.get(srv.url + "/leads")
            assert r.status_code == 200 and "demo (read only)" in r.text
            # the demo viewer may read but not change anything
            token = "t" * 24
            r = httpx.post(srv.url + "/model/activate", data={"csrf": token}, cookies={"ls_csrf": token})
            assert r.status_code == 403 and "admin key" in r.text
    finally:
        store.close()


# ------------------------------------------------------------------------------------------ leads
def test_leads_list_ranks_the_expected_top_lead_and_filters_by_tier(reader, population):
    page = reader.page
    reader.goto("/leads")
    rows = page.locator("#leads-table tbody tr")
    assert rows.first.get_attribute("data-lead") == population.top_lead
    assert float(rows.first.get_attribute("data-score")) == pytest.approx(population.top_score, abs=1e-6)
    assert page.locator("#lead-total").inner_text().replace(",", "") == str(population.leads)
    scores = [float(r.get_attribute("data-score")) for r in rows.all()]
    assert scores == sorted(scores, reverse=True)
    # every row has a tier badge coloured by its class and a trend line
    assert page.locator("#leads-table tbody tr .badge.tier-hot").count() > 0
    assert page.locator("#leads-table tbody svg.spark").count() == rows.count()
    reader.shot("leads")

    # Filtering by tier: ticking "cold" applies at once (progressive JS) and changes the rows.
    first_before = rows.first.get_attribute("data-lead")
    page.locator("input[name=tier][value=cold]").check()
    page.wait_for_url(re.compile(r".*tier=cold.*"))
    rows = page.locator("#leads-table tbody tr")
    tiers = {r.get_attribute("data-tier") for r in rows.all()}
    assert tiers == {"cold"}
    assert rows.first.get_attribute("data-lead") != first_before
    assert page.locator("#lead-total").inner_text().replace(",", "") == str(population.tiers["cold"])
    reader.shot("leads-cold")

    # sort by fit ascending through the column header, then page on
    reader.goto("/leads?sort=fit&order=asc&limit=25")
    fits = [float(x.inner_text()) for x in page.locator("#leads-table tbody tr td:nth-child(4)").all()]
    assert fits == sorted(fits)
    page.click("#next-page")
    assert "page=2" in page.url
    assert page.locator("#leads-table tbody tr td.rank").first.inner_text() == "26"

    # bad input is an error page naming the parameter, not a crash
    resp = reader.goto("/leads?min_score=abc")
    assert resp.status == 422 and "min_score" in page.locator(".error-message").inner_text()


# ------------------------------------------------------------------------------------------ a lead
def _breakdown_sums_to_score(page) -> float:
    score = float(page.locator("#lead-score").get_attribute("data-score"))
    lines = [float(x.get_attribute("data-points")) for x in page.locator("#breakdown tr.line").all()]
    assert lines, "the breakdown lists the rules"
    assert sum(lines) == pytest.approx(score, abs=0.011)
    return score


def test_lead_page_explains_the_score_and_draws_the_heatmap(reader, population, server):
    srv, keys, _ = server
    page = reader.page
    reader.goto(f"/leads/{VIEWER}")
    score = _breakdown_sums_to_score(page)
    api = httpx.get(srv.url + f"/api/leads/{VIEWER}", headers={"Authorization": f"Bearer {keys['read']}"},
                    params={"as_of": AS_OF.isoformat()}, timeout=120).json()
    assert score == pytest.approx(api["score"], abs=1e-6)
    assert score == pytest.approx(population.scores[VIEWER], abs=1e-6)
    # the rule behind the meeting booked from the video, with its event
    row = page.locator("#breakdown tr[data-rule=video_cta_meeting]")
    assert row.count() == 1
    row.locator("summary").click()
    assert "CTA Clicked" in row.inner_text()

    strip = page.locator(f'.video-row[data-video="{TEST_VIDEO}"] svg.heatstrip')
    levels = _levels(page, strip)
    expected = []
    for start, end, plays in VIEWER_RUNS:
        expected += [min(plays, 3)] * (end - start)
    assert len(levels) == TEST_VIDEO_SECONDS
    assert levels == expected
    cta = strip.locator("g.cta")
    assert cta.count() == 1 and float(cta.get_attribute("data-position")) == CTA_POSITION
    # history chart with causes, timeline, fit attributes, alerts
    marks = page.locator("svg.history circle.mark")
    assert marks.count() == page.locator("#history tbody tr").count() >= 1
    assert marks.first.get_attribute("data-cause") == "event"   # it arrived through live scoring
    assert page.locator("#timeline li").count() > 5
    assert "VP Marketing" in page.locator("#fit-attributes").inner_text()
    assert "became_hot" in page.inner_text("body")
    reader.shot("lead-viewer")

    # the top lead has capped groups: the cap lines keep the sum equal to the score
    reader.goto(f"/leads/{population.top_lead}")
    assert _breakdown_sums_to_score(page) == pytest.approx(population.top_score, abs=1e-6)
    assert page.locator("#breakdown tr.adjust").count() >= 1
    assert page.locator("svg.history circle.mark").count() == 2     # model a month ago, time now
    reader.shot("lead-top")


# ------------------------------------------------------------------------------------------ videos
def test_video_page_engagement_graph_matches_the_stats_api(reader, server, population):
    srv, keys, store = server
    page = reader.page
    reader.goto("/videos")
    row = page.locator(f'#videos-table tr[data-video="{TEST_VIDEO}"]')
    assert row.locator("td.plays").inner_text() == "3"
    reader.shot("videos")

    row.locator("a").first.click()
    page.wait_for_url(re.compile(rf".*/videos/{TEST_VIDEO}$"))
    series = json.loads(page.locator("svg.engagement").get_attribute("data-series"))
    api = httpx.get(srv.url + f"/api/videos/{TEST_VIDEO}", headers={"Authorization": f"Bearer {keys['read']}"},
                    params={"as_of": AS_OF.isoformat()}, timeout=120).json()
    assert series["retention"] == [g["share"] for g in api["graph"]]
    assert series["rewatches"] == [g["plays"] - g["viewers"] for g in api["graph"]]
    # and both are what the three hand-made viewers watched:
    # viewer-exact 0–20 (5–15 twice) and 40–60; viewer-b 0–30; viewer-c 0–10 twice.
    watching = [(k < 20 or k >= 40) + (k < 30) + (k < 10) for k in range(TEST_VIDEO_SECONDS)]
    rewatch = [(5 <= k < 15) + (k < 10) for k in range(TEST_VIDEO_SECONDS)]
    assert series["viewers"] == 3
    assert series["retention"] == [round(w / 3, 4) for w in watching]
    assert series["rewatches"] == rewatch
    # the drawn line has one point per second
    points = page.locator("svg.engagement polyline.retention").get_attribute("points").split()
    assert len(points) == TEST_VIDEO_SECONDS

    # viewer rows ordered by score, each linking to its lead, strips matching their watching
    viewers = page.locator("#viewers .viewer")
    ids = [v.get_attribute("data-lead") for v in viewers.all()]
    assert ids == sorted(ids, key=lambda lead: -population.scores[lead])
    assert set(ids) == {VIEWER, "viewer-b", "viewer-c"}
    b = page.locator('#viewers .viewer[data-lead="viewer-b"]')
    assert _levels(page, b.locator("svg.heatstrip")) == [1] * 30 + [0] * 30
    reader.shot("video")
    page.locator(f'#viewers .viewer[data-lead="{VIEWER}"] a').click()
    page.wait_for_url(re.compile(rf".*/leads/{VIEWER}$"))


# ------------------------------------------------------------------------------------------ escaping
def test_event_and_trait_strings_show_as_text(reader):
    page = reader.page
    reader.goto("/leads?q=" + quote("<script>"))
    cell = page.locator("#leads-table tbody tr").first
    assert cell.get_attribute("data-lead") == XSS
    assert XSS in cell.inner_text()
    reader.goto("/leads/" + quote(XSS, safe=""))
    assert page.locator("#lead-name").inner_text() == XSS
    assert XSS in page.locator("#timeline").inner_text()        # the page view's title
    assert XSS in page.locator("#fit-attributes").inner_text()  # company.name, title
    assert page.locator("script").count() == 1                  # only /static/app.js
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content()
    time.sleep(0.3)
    assert reader.dialogs == []
    reader.shot("lead-xss")


# ------------------------------------------------------------------------------------------ alerts
def test_alerts_page_shows_deliveries_and_replay_needs_admin_and_csrf(reader, server):
    srv, keys, _ = server
    page = reader.page
    reader.goto("/alerts")
    assert page.locator("#alerts-table tbody tr").count() == 4
    assert page.locator("#deliveries-table .badge.status-delivered").count() == 4
    assert "disabled" in page.inner_text("body")                 # the endpoint that answered 410
    reader.shot("alerts")
    csrf = page.locator("form[action='/logout'] input[name=csrf]").get_attribute("value")
    # a read key may not replay, even with the right token
    r = reader.context.request.post(srv.url + "/alerts/replay", form={"csrf": csrf}, max_redirects=0)
    assert r.status == 403 and "admin key" in r.text()
    assert page.locator("text=Enable again").count() == 0

    # an admin re-enables the endpoint that answered 410 through the page's (CSRF-protected) form
    admin = Session(reader.context.browser, srv.url, keys["admin"])
    try:
        admin.goto("/alerts")
        admin.page.click("text=Enable again")
        admin.page.wait_for_url(re.compile(r".*/alerts\?done=.*"))
        assert "enabled again" in admin.page.locator("#done").inner_text()
        assert admin.page.locator("text=Enable again").count() == 0
        assert "disabled" not in admin.page.locator("#deliveries-table").inner_text()
    finally:
        admin.close()


# ------------------------------------------------------------------------------------------ model (last: it activates)
def test_model_page_what_if_and_activation(browser, server, population):
    srv, keys, store = server
    reader = Session(browser, srv.url, keys["read"])
    try:
        page = reader.page
        reader.goto("/model")
        assert page.locator("#rules tr[data-rule=executive] td.points").inner_text() == "+30"
        assert page.locator("#activate-form").count() == 0           # read key: no activation
        # moving the hot threshold re-counts the tiers (fetch as you type)
        page.fill("#n_hot", "200")
        page.wait_for_selector("#whatif-changed[data-ready='1']")
        hot = sum(1 for s in population.scores.values() if s >= 200)
        assert page.locator("#whatif-table tr[data-tier=hot] td.proposed").inner_text().replace(",", "") == str(hot)
        reader.shot("model")
    finally:
        reader.close()

    admin = Session(browser, srv.url, keys["admin"])
    try:
        page = admin.page
        admin.goto("/model")
        old_version = page.locator("#model-version").inner_text()
        # without the CSRF token the activation is refused
        r = admin.context.request.post(srv.url + "/model/activate", form={"t_hot": "200"}, max_redirects=0)
        assert r.status == 403
        page.fill("#n_hot", "200")
        page.wait_for_selector("#whatif-changed[data-ready='1']")
        page.click("#activate-form button")
        page.wait_for_url(re.compile(r".*/model\?(activating|done)=.*"))
        deadline = time.monotonic() + 300
        while page.locator("#model-version").inner_text() == old_version or page.locator("#activation").count():
            assert time.monotonic() < deadline, "activation did not finish"
            time.sleep(1)
            admin.goto("/model")
        admin.goto("/leads?tier=hot")
        hot = sum(1 for s in population.scores.values() if s >= 200)
        assert page.locator("#lead-total").inner_text().replace(",", "") == str(hot)
        admin.goto("/model")
        assert page.locator("#rule-diff").inner_text().count("hot") >= 1     # the diff shows the tier change
        admin.shot("model-activated")
        assert admin.errors == []
    finally:
        admin.close()
