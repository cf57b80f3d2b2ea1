"""Every dashboard page over a real server on loopback, on DuckDB and on PostgreSQL: login and
sessions, CSRF, roles, rate limits, error pages, and activating new tier thresholds."""
from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import quote, urlencode

import httpx
import pytest

from leadscore.engine.current import refresh_scores
from leadscore.engine.models_registry import active_model, save_model
from leadscore.events.normalize import normalize_batch
from leadscore.model import default_model_path, load_model
from leadscore.service.app import create_app
from leadscore.service.auth import create_key, revoke_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings
from leadscore.video.catalog import Video, import_catalog
from tests.web.population import AS_OF, TEST_VIDEO, VIEWER, XSS, hand_made_messages


@pytest.fixture
def site(store):
    store.ingest(normalize_batch(hand_made_messages(), AS_OF - timedelta(hours=1)))
    import_catalog(store, [Video(TEST_VIDEO, "Test video", 60.0, "demo", "bottom", ["test"])], AS_OF)
    model = load_model(default_model_path())
    save_model(store, model, AS_OF - timedelta(days=1), activate=True)
    refresh_scores(store, model, AS_OF, cause="model", cause_ref=model.model_version)
    keys = {role: create_key(store, role, AS_OF, name=role).token for role in ("read", "admin", "write")}
    keys["slow"] = create_key(store, "read", AS_OF, name="slow", rate_limit=0.01, burst=1).token
    app = create_app(store, Settings(key_refresh_seconds=0), installers=("leadscore.web.app",))
    app.state.web_clock = lambda: AS_OF
    with ServerThread(app) as srv:
        yield srv, keys, store


def _client(srv, **kw) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=120, follow_redirects=False, **kw)


def _login(client: httpx.Client, key: str) -> None:
    r = client.get(f"/leads?key={quote(key)}")
    assert r.status_code == 303 and r.headers["location"] == "/leads"


def _csrf(client: httpx.Client, path: str = "/leads") -> str:
    page = client.get(path)
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_every_page_renders_for_a_read_key(site):
    srv, keys, _ = site
    with _client(srv) as c:
        _login(c, keys["read"])
        for path in ("/leads", f"/leads/{VIEWER}", "/leads/" + quote(XSS, safe=""), "/videos", f"/videos/{TEST_VIDEO}",
                     "/model", "/alerts", "/leads?tier=hot&sort=fit&order=asc", "/model?t_hot=50"):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text[:500])
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert XSS not in r.text
        r = c.get("/model/whatif.json?t_warm=10&t_hot=20")
        body = r.json()
        assert body["thresholds"] == {"cold": None, "warm": 10.0, "hot": 20.0}
        assert sum(body["proposed"].values()) == sum(body["current"].values()) == 4
        assert c.get("/model/whatif.json?t_warm=30&t_hot=20").status_code == 422
        # static assets are served by leadscore itself
        assert c.get("/static/app.js").status_code == 200 and c.get("/static/app.css").status_code == 200


def test_unknown_things_and_bad_parameters_are_error_pages(site):
    srv, keys, _ = site
    with _client(srv, headers={"Authorization": f"Bearer {keys['read']}"}) as c:
        r = c.get("/leads/nobody-at-all")
        assert r.status_code == 404 and "nobody-at-all" in r.text and "<!doctype html>" in r.text
        assert c.get("/videos/no-such-video").status_code == 404
        r = c.get("/leads?sort=colour")
        assert r.status_code == 422 and "sort" in r.text
        assert c.get("/leads?limit=7").status_code == 422
        assert c.get("/alerts?status=lost").status_code == 422


def test_sessions_roles_revocation_and_rate_limits(site):
    srv, keys, store = site
    with _client(srv) as c:
        r = c.get("/model")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fmodel"
        csrf = _csrf(c, "/login")
        # a write key cannot log in to read; nothing is set
        r = c.post("/login", data={"key": keys["write"], "csrf": csrf, "next": "/model"})
        assert r.status_code == 403 and "cannot read" in r.text
        r = c.post("/login", data={"key": keys["read"], "csrf": csrf, "next": "https://evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/leads"
        assert c.get("/model").status_code == 200
        # revoking the key ends its sessions
        key_id = [k for k in store.query("SELECT key_id, name FROM api_keys") if k[1] == "read"][0][0]
        revoke_key(store, key_id, AS_OF)
        r = c.get("/model")
        assert r.status_code in (303, 401)
    with _client(srv) as c:
        _login(c, keys["slow"])
        assert c.get("/leads").status_code == 200      # the key's one token
        r = c.get("/leads")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_state_changes_need_csrf_same_origin_and_an_admin_key(site):
    srv, keys, store = site
    with _client(srv) as c:
        _login(c, keys["read"])
        csrf = _csrf(c)
        assert c.post("/model/activate", data={"t_hot": "50"}).status_code == 403                    # no token
        assert c.post("/model/activate", data={"t_hot": "50", "csrf": csrf + "x"}).status_code == 403   # wrong token
        r = c.post("/model/activate", data={"t_hot": "50", "csrf": csrf}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "cross-site" in r.text
        r = c.post("/model/activate", data={"t_hot": "50", "csrf": csrf})
        assert r.status_code == 403 and "admin key" in r.text                                        # read key
        r = c.post("/alerts/replay", data={"csrf": csrf})
        assert r.status_code == 403


def test_activating_new_thresholds_makes_a_version_and_rescores(site):
    srv, keys, store = site
    before = active_model(store)
    scores = dict(store.query("SELECT lead_id, score FROM lead_scores"))
    with _client(srv) as c:
        _login(c, keys["admin"])
        csrf = _csrf(c, "/model")
        r = c.post("/model/activate", data={"t_warm": "5", "t_hot": "50", "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"].startswith("/model?done=")
        after = active_model(store)
        assert after.model_version != before.model_version
        assert [(t.name, t.min) for t in after.tiers] == [("cold", None), ("warm", 5.0), ("hot", 50.0)]
        assert [r.model_dump() for r in after.rules] == [r.model_dump() for r in before.rules]
        tiers = dict(store.query("SELECT lead_id, tier FROM lead_scores"))
        assert tiers == {lead: ("hot" if s >= 50 else "warm" if s >= 5 else "cold") for lead, s in scores.items()}
        causes = store.query("SELECT DISTINCT cause_ref FROM score_history WHERE cause = 'model'")
        assert (after.model_version,) in causes
        page = c.get("/model").text
        assert "warm ≥ 40, hot ≥ 100" in page and "warm ≥ 5, hot ≥ 50" in page    # the diff of the tiers
        # the same thresholds again: nothing to do
        r = c.post("/model/activate", data={"t_warm": "5", "t_hot": "50", "csrf": csrf})
        assert r.status_code == 422


def _lead_rows(page: str) -> dict[str, str]:
    """lead id → its Last activity cell, for every row of a Leads page."""
    out = {}
    for lead, row in re.findall(r'<tr data-lead="([^"]+)"(.*?)</tr>', page, re.S):
        out[html.unescape(lead)] = re.search(r'<td class="nowrap">([^<]*)</td>', row).group(1)
    return out


def test_leads_page_last_activity_filters_and_search(site):
    # Newest events (tests/web/population.py, hand-worked): the XSS lead 10:01:00, viewer-exact 10:05:50,
    # viewer-b 11:00:30, viewer-c 12:00:20, all on 2026-10-30; the page is as of 2026-11-02 12:00.
    srv, keys, _ = site
    with _client(srv, headers={"Authorization": f"Bearer {keys['read']}"}) as c:
        assert _lead_rows(c.get("/leads").text) == {XSS: "2026-10-30 10:01", VIEWER: "2026-10-30 10:05",
                                                    "viewer-b": "2026-10-30 11:00", "viewer-c": "2026-10-30 12:00"}
        # active within 3 days: since Oct 30 12:00:00; 3.05 days: since 10:48; 3.1 days: since 09:36
        assert set(_lead_rows(c.get("/leads?active=3").text)) == {"viewer-c"}
        assert set(_lead_rows(c.get("/leads?active=3.05").text)) == {"viewer-b", "viewer-c"}
        assert set(_lead_rows(c.get("/leads?active=3.1").text)) == {XSS, VIEWER, "viewer-b", "viewer-c"}
        assert "No leads match" in c.get("/leads?active=2.9").text
        # search: ids and e-mails of the three viewers; "&" only in viewer-exact's company name
        assert set(_lead_rows(c.get("/leads?q=VIEWER").text)) == {VIEWER, "viewer-b", "viewer-c"}
        assert set(_lead_rows(c.get("/leads?" + urlencode({"q": "& co"})).text)) == {VIEWER}
        assert set(_lead_rows(c.get("/leads?q=viewer&active=3.05").text)) == {"viewer-b", "viewer-c"}
        page = c.get("/leads?q=viewer&limit=25&sort=lead_id&order=asc").text
        assert list(_lead_rows(page)) == ["viewer-b", "viewer-c", VIEWER]   # by id, ascending
        assert re.search(r'id="lead-total">3<', page)
