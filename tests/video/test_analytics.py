"""Video analytics with hand-worked numbers, the heatmap picture and the CLI."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime

from click.testing import CliRunner
from PIL import Image

from leadscore.cli.main import main
from leadscore.video.analytics import video_stats
from leadscore.video.picture import GREEN, GREY, RED, YELLOW, render_svg
from tests.video.helpers import AS_OF, Viewer, ingest


def _setup(store):
    """demo (bottom, 40 s): lead a watches 0–40 and replays 10–20 twice more, then clicks the CTA;
    lead b watches 0–20; an anonymous visitor watches 0–10. brand (top, 20 s): lead a watches 0–5.
    Four player impressions of demo, one of brand."""
    store.execute("INSERT INTO video_catalog (video_id, title, duration, category, stage, tags) VALUES "
                  "('demo', 'Demo', 40, 'demo', 'bottom', 'pricing'), ('brand', 'Brand', 20, 'brand', 'top', NULL), "
                  "('faq', 'FAQ', 30, 'faq', 'top', NULL)")
    a = Viewer(user="a", session="a1", video="demo", total=40)
    a.ev("Video Player Shown", -1)
    a.ev("Video Playback Started", 0, position=0)
    for t in (10, 20, 30):
        a.ev("Video Content Playing", t, position=t)
    a.ev("Video Playback Seek Started", 30.5, position=30.5, seek_position=10)
    a.ev("Video Playback Seek Completed", 30.6, position=10)
    a.ev("Video Content Playing", 40.6, position=20)
    a.ev("Video Playback Seek Started", 40.7, position=20, seek_position=10)
    a.ev("Video Playback Seek Completed", 40.8, position=10)
    a.ev("Video Content Playing", 50.8, position=20)
    a.ev("Video Playback Seek Started", 50.9, position=20, seek_position=30.5)
    a.ev("Video Playback Seek Completed", 51.0, position=30.5)
    a.ev("Video Content Playing", 60.5, position=40)
    a.ev("Video Playback Completed", 60.6, position=40)
    a.ev("CTA Clicked", 61, position=40, cta_type="meeting")
    b = Viewer(user="b", session="b1", video="demo", total=40)
    b.ev("Video Player Shown", -1)
    b.ev("Video Playback Started", 0, position=0)
    b.ev("Video Content Playing", 10, position=10)
    b.ev("Video Playback Paused", 20, position=20)
    anon = Viewer(user=None, session="n1", video="demo", total=40)
    anon.ev("Video Player Shown", -1)
    anon.ev("Video Playback Started", 0, position=0)
    anon.ev("Video Playback Paused", 10, position=10)
    for m in anon.messages:
        m.pop("userId")
        m["anonymousId"] = "anon-1"
    c = Viewer(user="c", session="c1", video="demo")
    c.ev("Video Player Shown", -1)         # shown, never played
    a2 = Viewer(user="a", session="a2", video="brand", total=20)
    a2.ev("Video Player Shown", -1)
    a2.ev("Video Playback Started", 0, position=0)
    a2.ev("Video Playback Paused", 5, position=5)
    ingest(store, a.messages + b.messages + anon.messages + c.messages + a2.messages)


def test_per_video_figures_rollups_and_ranking(store):
    _setup(store)
    s = video_stats(store, AS_OF)
    assert s["ranking"] == ["demo", "brand", "faq"]
    demo = s["videos"][0]
    # viewers a (40 unique, 60 watched), b (20, 20), anon (10, 10)
    assert (demo["impressions"], demo["plays"], demo["viewers"]) == (4, 3, 3)
    assert demo["play_rate"] == 0.75
    assert demo["total_watch_seconds"] == 90 and demo["avg_watch_seconds"] == 30.0
    assert demo["avg_percent_watched"] == round((100 + 50 + 25) / 3, 4)
    assert demo["completion_rate"] == round(1 / 3, 4)
    assert demo["cta_clicks"] == 1 and demo["cta_conversion"] == round(1 / 3, 4)
    assert demo["engaged_views"] == 1.75
    watching = demo["engagement"]["watching"]
    assert len(watching) == 40
    assert watching[0] == 1.0 and watching[10] == round(2 / 3, 4) and watching[20] == round(1 / 3, 4)
    assert demo["engagement"]["rewatches"][9:21] == [0] + [2] * 10 + [0]
    assert demo["most_replayed"] == [{"start": 10, "end": 20, "rewatches": 2}]
    brand = s["videos"][1]
    assert (brand["viewers"], brand["avg_percent_watched"], brand["engaged_views"], brand["play_rate"]) == (1, 25.0, 0.25, 1.0)
    faq = s["videos"][2]
    assert (faq["viewers"], faq["plays"], faq["play_rate"], faq["avg_percent_watched"]) == (0, 0, None, None)
    stages = {g["stage"]: g for g in s["by_stage"]}
    assert [g["stage"] for g in s["by_stage"]] == ["top", "bottom"]
    assert stages["top"]["videos"] == 2 and stages["top"]["viewers"] == 1 and stages["top"]["top_videos"] == ["brand", "faq"]
    assert stages["bottom"]["avg_percent_watched"] == demo["avg_percent_watched"]
    assert {g["category"] for g in s["by_category"]} == {"demo", "brand", "faq"}
    json.dumps(s)   # the dashboard gets it as JSON


def test_svg_picture_has_one_row_per_viewer_coloured_by_plays():
    svg = render_svg([("lead-a", [1, 1, 2, 2, 3, 0]), ("lead-b", [0, 0, 0, 1, 1, 1])], 6, "Demo")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    cells = [r for r in root.iter(f"{ns}rect") if r.get("class")]
    assert [(c.get("class"), c.get("fill")) for c in cells] == [
        ("s1", GREEN), ("s2", YELLOW), ("s3", RED), ("s0", GREY), ("s0", GREY), ("s1", GREEN)]
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "lead-a" in texts and "lead-b" in texts and "0:00" in texts and "0:05" in texts


def test_cli_catalog_stats_heatmap_views_rejects(store, store_url, tmp_path):
    runner = CliRunner()
    cat = tmp_path / "catalog.yaml"
    cat.write_text("- {id: v1, title: Launch, duration: 60, category: explainer, tags: [launch]}\n")
    res = runner.invoke(main, ["--db", store_url, "video", "catalog", "import", str(cat)])
    assert res.exit_code == 0, res.output
    v = Viewer()
    v.ev("Video Playback Started", 0, position=0)
    v.ev("Video Content Playing", 10, position=10)
    v.ev("Video Playback Seek Started", 10.1, position=10, seek_position=0)
    v.ev("Video Playback Seek Completed", 10.2, position=0)
    v.ev("Video Playback Paused", 15.2, position=5)
    v.ev("Video Content Playing", 40, position=-4)            # a stray heartbeat while paused: clamped
    ingest(store, v.messages)
    store.close()   # the CLI opens the store itself (DuckDB allows one writer)

    asof = ["--as-of", AS_OF.isoformat()]
    res = runner.invoke(main, ["--db", store_url, "video", "stats", "--json", *asof])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["videos"][0]["video_id"] == "v1" and out["videos"][0]["stage"] == "middle"
    assert out["videos"][0]["total_watch_seconds"] == 15

    svg, png = tmp_path / "h.svg", tmp_path / "h.png"
    res = runner.invoke(main, ["--db", store_url, "video", "heatmap", "v1", "--lead", "u1", "--out", str(svg), *asof])
    assert res.exit_code == 0, res.output
    root = ET.fromstring(svg.read_text())
    fills = [r.get("fill") for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class")]
    assert fills == [YELLOW, GREEN, GREY]      # 0–5 twice, 5–10 once, 10–60 never
    res = runner.invoke(main, ["--db", store_url, "video", "heatmap", "v1", "--out", str(png), *asof])
    assert res.exit_code == 0, res.output
    img = Image.open(png)
    assert img.format == "PNG"
    from leadscore.video.picture import LABEL_W, TOP
    assert img.getpixel((LABEL_W + 2, TOP + 5)) == (0xf2, 0xc4, 0x00)   # second 0: yellow
    res = runner.invoke(main, ["--db", store_url, "video", "heatmap", "nope", "--out", str(svg), *asof])
    assert res.exit_code != 0 and "no playback of video 'nope'" in res.output
    res = runner.invoke(main, ["--db", store_url, "video", "heatmap", "v1", "--out", str(tmp_path / "h.gif"), *asof])
    assert res.exit_code != 0 and "must end in .svg or .png" in res.output

    res = runner.invoke(main, ["--db", store_url, "video", "views", "--json", *asof])
    rows = json.loads(res.output)
    assert [(r["lead_id"], r["unique_seconds"], r["watch_seconds"]) for r in rows] == [("u1", 10, 15)]
    res = runner.invoke(main, ["--db", store_url, "video", "rejects", *asof])
    assert res.exit_code == 0 and "negative_position" in res.output


def test_bad_catalog_file_fails_with_every_error(store_url, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,duration,category\nx,abc,demo\n")
    res = CliRunner().invoke(main, ["--db", store_url, "video", "catalog", "import", str(bad)])
    assert res.exit_code != 0
    assert f"{bad}: row 2.duration: expected seconds or m:ss, got 'abc'" in res.output
    assert "nothing imported" in res.output
