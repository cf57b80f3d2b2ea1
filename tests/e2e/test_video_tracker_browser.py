"""The JavaScript tracker in a real browser: headless Chromium (Debian's) plays a real 60-second video
file generated with ffmpeg, the tracker posts to a real leadscore service on loopback, and the heatmap
leadscore builds from those events is checked against what the browser did.

Scenario (the issue's): play 0–20 s, seek back to 5 s, play to 15 s, seek to 40 s, play to the end
→ 0–5 green (1), 5–15 yellow (2), 15–20 green, 20–40 grey (0), 40–60 green, each boundary within 1 s.
The video plays at 1.5x (the tracker reports playback_rate; the reconstruction uses it): shorter,
exercises rate handling, and still leaves room for 10-second heartbeats. The page is served from a second loopback origin, as on a
customer's site (CORS)."""
from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timedelta

import pytest

from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings
from leadscore.store import open_store
from leadscore.video import read
from leadscore.video.picture import runs

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
NOW = datetime(2026, 11, 23, 12, 0, 0)
LEAD = "lead-browser-1"
VIDEO = "demo-60s"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Product demo</title>
<script src="{service}/tracker/leadscore-video.js" data-write-key="{key}" data-user-id="{lead}" async></script>
</head><body>
<h1>Watch the demo</h1>
<video id="demo" data-leadscore data-video-id="{video}" data-title="60 s demo" src="demo.webm"
       width="320" height="240" muted playsinline preload="auto"></video>
</body></html>"""

# Driven inside the page so that seeks happen within a few milliseconds of the target position.
SCENARIO = """async (rate) => {
  const v = document.getElementById('demo');
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  const until = async (t) => { while (v.currentTime < t && !v.ended) { await sleep(5); } return v.currentTime; };
  const seek = (t) => new Promise(r => { v.addEventListener('seeked', () => r(v.currentTime), {once: true}); v.currentTime = t; });
  const log = [];
  v.playbackRate = rate;
  await v.play();
  log.push(['at', await until(20)]);
  log.push(['seeked', await seek(5)]);
  log.push(['at', await until(15)]);
  log.push(['seeked', await seek(40)]);
  await new Promise(r => v.ended ? r() : v.addEventListener('ended', r, {once: true}));
  log.push(['ended', v.currentTime]);
  await window.LeadscoreVideo.flush();
  return log;
}"""


def _have_tools() -> str | None:
    if not shutil.which("ffmpeg"):
        return "ffmpeg is not installed"
    if not shutil.which(CHROMIUM):
        return "Debian's chromium is not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python) is not installed"
    return None


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    if reason := _have_tools():
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("page")
    # 60 s, small and cheap to encode and decode: a VP8 WebM every Chromium build plays; a keyframe per second
    # so seeks land where they are asked to.
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=duration=60:size=128x96:rate=5", "-c:v", "libvpx", "-deadline", "realtime",
                    "-cpu-used", "16", "-b:v", "50k", "-g", "5", "-an", str(out / "demo.webm")],
                   check=True, timeout=180)
    return out


@pytest.fixture
def service(tmp_path):
    store = open_store(str(tmp_path / "browser.duckdb"))
    token = create_key(store, "write", NOW, name="tracker").token
    app = create_app(store, Settings(), installers=())
    with ServerThread(app) as srv:
        yield store, srv.url, token
    store.close()


@pytest.fixture
def page_server(video_file, service):
    from starlette.applications import Starlette
    from starlette.staticfiles import StaticFiles  # Range requests: the browser seeks in the file

    store, url, token = service
    (video_file / "index.html").write_text(PAGE.format(service=url, key=token, lead=LEAD, video=VIDEO))
    app = Starlette()
    app.mount("/", StaticFiles(directory=str(video_file), html=True))
    with ServerThread(app) as srv:
        yield srv.url


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            yield b
        finally:
            b.close()


def _wait_for(store, event: str, timeout: float = 15.0) -> None:
    """The service commits in the background (group commit): wait until ``event`` is stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.query("SELECT count(*) FROM events WHERE user_id = ? AND event = ?", (LEAD, event))[0][0]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{event!r} never reached the store")


def test_tracker_events_make_the_expected_heatmap(service, page_server, browser):
    store, _, _ = service
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_server + "/index.html")
    page.wait_for_function("window.LeadscoreVideo && document.getElementById('demo').readyState >= 1",
                           timeout=15000)
    log = page.evaluate(SCENARIO, 1.5)
    assert abs(log[0][1] - 20) < 0.5 and log[1][1] == pytest.approx(5, abs=0.2)
    assert abs(log[2][1] - 15) < 0.5 and log[3][1] == pytest.approx(40, abs=0.2)
    assert log[4] == ["ended", pytest.approx(60, abs=0.2)]
    _wait_for(store, "Video Playback Completed")
    page.close()
    assert errors == []

    names = [r[0] for r in store.query("SELECT event FROM events WHERE user_id = ? ORDER BY ts", (LEAD,))]
    for expected in ("Video Player Shown", "Video Playback Started", "Video Content Started",
                     "Video Playback Seek Started", "Video Playback Seek Completed", "Video Content Playing",
                     "Video Content Completed", "Video Playback Completed"):
        assert expected in names, (expected, names)
    assert names.count("Video Playback Seek Started") == 2

    as_of = datetime.utcnow() + timedelta(hours=1)
    maps = read.heatmaps(store, VIDEO, as_of, lead_id=LEAD)
    assert len(maps) == 1
    counts = maps[0].counts
    assert len(counts) == 60
    got = runs(counts)
    assert [r[2] for r in got] == [1, 2, 1, 0, 1], got            # green, yellow, green, grey, green
    for (start, end, _), (want_start, want_end) in zip(got, [(0, 5), (5, 15), (15, 20), (20, 40), (40, 60)]):
        assert abs(start - want_start) <= 1 and abs(end - want_end) <= 1, got
    assert read.reject_counts(store, as_of) == {}

    facts = read.views(store, as_of, lead_id=LEAD)[0]
    assert facts["video_id"] == VIDEO and facts["sessions"] == 1 and facts["duration"] == pytest.approx(60, abs=0.1)
    assert abs(facts["unique_seconds"] - 40) <= 2 and abs(facts["replayed_seconds"] - 10) <= 2
    assert facts["completed_50"] and not facts["completed_75"]


def test_leaving_the_page_sends_exited_with_a_beacon(service, page_server, browser):
    store, _, _ = service
    page = browser.new_page()
    page.goto(page_server + "/index.html")
    page.wait_for_function("window.LeadscoreVideo && document.getElementById('demo').readyState >= 1",
                           timeout=15000)
    page.evaluate("""async () => {
        const v = document.getElementById('demo');
        await v.play();
        while (v.currentTime < 3) { await new Promise(r => setTimeout(r, 5)); }
    }""")
    page.goto("about:blank")          # pagehide: Exited is queued and sent with sendBeacon
    _wait_for(store, "Video Playback Exited")
    page.close()
    as_of = datetime.utcnow() + timedelta(hours=1)
    got = runs(read.heatmaps(store, VIDEO, as_of, lead_id=LEAD)[0].counts)
    assert got[0][2] == 1 and abs(got[0][1] - 3) <= 1 and got[1][2] == 0, got
