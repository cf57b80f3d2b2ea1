from __future__ import annotations

from datetime import datetime

import pytest

from leadscore.video.catalog import CatalogError, import_catalog, load_catalog, parse_duration

NOW = datetime(2026, 11, 23, 12, 0)


def test_yaml_and_csv_catalogs_import_with_stages_from_categories(store, tmp_path):
    y = tmp_path / "videos.yaml"
    y.write_text("""
videos:
  - id: demo-1
    title: Product demo
    duration: "4:05"
    category: Product Demo
    tags: [pricing, demo]
  - video_id: brand-1
    title: Who we are
    duration: 95
    category: general brand
""")
    c = tmp_path / "more.csv"
    c.write_text("video_id,title,duration,category,stage,tags\n"
                 "cs-1,Acme case study,120.5,case study,,\"roi,finance\"\n"
                 "upd-1,What's new,60,feature update,middle,\n")
    assert import_catalog(store, load_catalog(y), NOW) == 2
    assert import_catalog(store, load_catalog(c), NOW) == 2
    rows = store.query("SELECT video_id, title, duration, category, stage, tags FROM video_catalog ORDER BY video_id")
    assert rows == [
        ("brand-1", "Who we are", 95.0, "brand", "top", None),
        ("cs-1", "Acme case study", 120.5, "case_study", "bottom", "roi,finance"),
        ("demo-1", "Product demo", 245.0, "demo", "bottom", "pricing,demo"),
        ("upd-1", "What's new", 60.0, "feature_update", "middle", None),   # an explicit stage wins
    ]
    # re-importing replaces, never duplicates
    c.write_text("video_id,title,duration,category\ncs-1,Acme story,121,customer success story\n")
    import_catalog(store, load_catalog(c), NOW)
    assert store.query("SELECT title, duration, category, stage FROM video_catalog WHERE video_id = 'cs-1'") == [
        ("Acme story", 121.0, "customer_story", "bottom")]


def test_bad_catalog_names_every_problem_and_writes_nothing(store, tmp_path):
    c = tmp_path / "bad.csv"
    c.write_text("video_id,title,duration,category,stage,colour\n"
                 "a,A,-3,demo,,red\n"
                 ",B,10,demo,,\n"
                 "c,C,1:xx,cartoon,funnel,\n"
                 "a,A again,10,demo,,\n")
    with pytest.raises(CatalogError) as err:
        load_catalog(c)
    msgs = err.value.errors
    assert f"{c}: row 2: unknown field(s) colour (expected video_id, title, duration, category, stage, tags, url)" in msgs
    assert f"{c}: row 2.duration: must be a positive number of seconds, got '-3'" in msgs
    assert f"{c}: row 3.video_id: required" in msgs
    assert any(m.startswith(f"{c}: row 4.category: unknown category 'cartoon'") for m in msgs)
    assert f"{c}: row 4.stage: must be one of top, middle, bottom, retention, got 'funnel'" in msgs
    assert f"{c}: row 4.duration: expected seconds or m:ss, got '1:xx'" in msgs
    assert store.query("SELECT count(*) FROM video_catalog") == [(0,)]


def test_durations():
    assert parse_duration("1:02:03") == 3723
    assert parse_duration(" 90 ") == 90
    assert parse_duration(12.5) == 12.5
    with pytest.raises(ValueError):
        parse_duration(0)
