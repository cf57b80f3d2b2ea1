"""The demo population: seeded, valid Segment messages in the scoring vocabulary, intent that drives
activity and conversion, realistic junk, and the same events whichever way it is written."""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest

from leadscore.demo import (
    STAGE_OF_CATEGORY, VIDEOS, DemoConfig, generate_chunk, iter_messages, write_population,
)
from leadscore.demo import pools
from leadscore.demo.activity import VOCAB
from leadscore.events import normalize_batch

TRACK_EVENTS = {
    "Form Submitted", "Email Delivered", "Email Opened", "Email Link Clicked", "Email Replied", "Demo Requested",
    "Meeting Booked", "Trial Started", "Product Used", "Resource Downloaded", "Social Engaged", "CTA Clicked",
    "Opportunity Won", "Opportunity Lost", "Video Playback Started", "Video Content Started",
    "Video Content Playing", "Video Playback Paused", "Video Playback Resumed", "Video Playback Seek Started",
    "Video Playback Seek Completed", "Video Content Completed", "Video Playback Completed", "Video Playback Exited",
}
SENIORITIES = {"c_level", "vp", "director", "manager", "individual", "student"}
PATH = re.compile(r"^/$|^/blog/.+|^/pricing$|^/docs/.+|^/case-studies/.+|^/careers")


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        write_population(DemoConfig(leads=120, seed=seed), tmp_path / name, "jsonl")
        write_population(DemoConfig(leads=120, seed=seed), tmp_path / name, "parquet")
        write_population(DemoConfig(leads=120, seed=seed), tmp_path / name, "jsonl.gz")
    for f in ("events.jsonl", "events.jsonl.gz", "events.parquet", "truth.csv", "videos.yaml"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (tmp_path / "c" / "events.jsonl").read_bytes()
    assert (tmp_path / "a" / "truth.csv").read_bytes() != (tmp_path / "c" / "truth.csv").read_bytes()


def test_every_message_is_valid_segment_and_in_the_scoring_vocabulary(small):
    chunk, messages = small
    events = normalize_batch(messages, received_at=datetime(2026, 11, 2))
    assert len(events) == chunk.events.num_rows > 300 * 20
    assert len({m["messageId"] for m in messages}) == len(messages)
    kinds = Counter(e.type for e in events)
    assert set(kinds) == {"identify", "group", "page", "track"}
    assert kinds["identify"] == kinds["group"] == 300
    assert {e.event for e in events if e.type == "track"} <= TRACK_EVENTS
    # Every kind of event the generator knows appears in a population this size.
    assert {e.event for e in events if e.type == "track"} >= TRACK_EVENTS - {"Video Playback Paused", "Video Playback Resumed"}
    for e in events:
        p = e.properties
        if e.type == "identify":
            assert p["seniority"] in SENIORITIES and p["title"] and p["address"]["country"]
            assert set(p["company"]) == {"name", "employee_count", "industry"} and p["company"]["employee_count"] >= 1
            assert e.anonymous_id and e.user_id and e.context["userAgent"]
        elif e.type == "group":
            assert e.group_id.startswith("acct-") and p["name"]
        elif e.type == "page":
            assert PATH.match(p["path"]), p["path"]
            assert p["url"].endswith(p["path"]) and p["session_id"] and 0 <= p["scroll_depth"] <= 100
            assert p["time_on_page"] > 0
        elif e.event.startswith("Email"):
            assert p["campaign_type"] in {"cold_outreach", "nurture", "sales_follow_up"}
            assert p["email_id"] and p["campaign_id"] and "email" in e.context["traits"]
        elif e.event == "CTA Clicked":
            assert p["cta_type"] in {"button", "form", "meeting"} and 0 <= p["position"] <= p["total_length"]
            assert p["content_asset_id"] in {v.id for v in VIDEOS}
        elif e.event.startswith("Video"):
            assert p["session_id"] and p["content_asset_id"] in {v.id for v in VIDEOS}
            assert 0 <= p["position"] <= p["total_length"]
            if e.event.startswith("Video Content"):
                assert p["asset_id"] == p["content_asset_id"]
        elif e.event == "Resource Downloaded":
            assert p["resource_type"] in pools.RESOURCE_TYPES
        elif e.event == "Social Engaged":
            assert p["network"] in pools.SOCIAL_NETWORKS and p["action"] in pools.SOCIAL_ACTIONS
        elif e.event == "Product Used":
            assert p["feature"] in pools.PRODUCT_FEATURES
    # Short visits that score negative exist, and so do deep ones.
    tops = [e.properties["time_on_page"] for e in events if e.type == "page"]
    assert sum(t < 5 for t in tops) > 0.05 * len(tops) and max(tops) > 120
    # Anonymous page views come before identify, which links them.
    anon = [e for e in events if e.type == "page" and e.user_id is None]
    assert anon and all(e.anonymous_id for e in anon)
    identify_at = {e.anonymous_id: e.ts for e in events if e.type == "identify"}
    assert all(e.ts <= identify_at[e.anonymous_id] for e in anon)


def test_video_sessions_follow_the_video_spec(small):
    chunk, messages = small
    by_session = defaultdict(list)
    for m in messages:
        if m["type"] == "track" and "session_id" in m["properties"] and m["event"].startswith("Video"):
            by_session[m["properties"]["session_id"]].append(m)
    assert len(by_session) > 100
    rewinds = forwards = completed = 0
    for msgs in by_session.values():
        names = [m["event"] for m in msgs]
        assert names[0] == "Video Playback Started" and names[1] == "Video Content Started"
        assert names[-1] in ("Video Playback Completed", "Video Playback Exited")
        beats = [m["properties"] for m in msgs if m["event"] == "Video Content Playing"]
        assert all(b["position"] % 10 == 0 for b in beats) or any(m["event"].startswith("Video Playback Seek") for m in msgs)
        for m in msgs:
            if m["event"] == "Video Playback Seek Started":
                p = m["properties"]
                rewinds += p["seek_position"] < p["position"]
                forwards += p["seek_position"] > p["position"]
        completed += names[-1] == "Video Playback Completed"
        # Heartbeats at normal speed are 10 s apart in wall time while playing.
        times = [datetime.fromisoformat(m["timestamp"].replace("Z", "")) for m in msgs if m["event"] == "Video Content Playing"]
        assert times == sorted(times)
    assert rewinds > 5 and forwards > 3 and completed > 10


def test_catalog_covers_every_category_and_stage():
    assert 18 <= len(VIDEOS) <= 25
    assert {v.category for v in VIDEOS} == set(STAGE_OF_CATEGORY)
    assert {v.stage for v in VIDEOS} == {"top", "middle", "bottom", "retention"}
    assert all(v.duration > 0 for v in VIDEOS)


def test_intent_drives_conversion_fit_and_activity():
    chunk = generate_chunk(DemoConfig(leads=500, seed=3), 0)
    truth = chunk.truth.to_pandas()
    ev = chunk.events.to_pandas()
    conv = truth[truth.converted]
    assert 5 <= len(conv) <= 100
    assert conv.intent.mean() > truth[~truth.converted].intent.mean() + 0.15
    # Outcomes are events too: one Opportunity Won per converted lead, at converted_at.
    won = ev[ev.event == "Opportunity Won"]
    assert sorted(won.lead_id) == sorted(conv.lead_id)
    assert dict(zip(won.lead_id, won.ts)) == dict(zip(conv.lead_id, conv.converted_at))
    lost = ev[ev.event == "Opportunity Lost"]
    assert set(lost.lead_id) == set(truth[truth.outcome == "lost"].lead_id)

    per_lead = ev.groupby("lead_id").size().reindex(truth.lead_id).to_numpy()
    assert np.corrcoef(truth.intent, per_lead)[0, 1] > 0.5
    hi, lo = truth.intent >= truth.intent.quantile(0.75), truth.intent <= truth.intent.quantile(0.25)

    def rate(mask, cond):
        leads = set(truth[mask].lead_id)
        return ev[ev.lead_id.isin(leads) & cond].lead_id.nunique() / len(leads)

    bottom = {v.id for v in VIDEOS if v.stage == "bottom"}
    is_bottom_video = ev.properties.str.contains("|".join(f'"content_asset_id":"{b}"' for b in bottom))
    for cond in (ev.event == "Demo Requested", ev.name == "Pricing", ev.event == "Email Replied",
                 (ev.event == "Video Content Playing") & is_bottom_video):
        assert rate(hi, cond) > 2 * rate(lo, cond)
    # Better fit with intent: fewer students and out-of-market leads among the interested.
    assert (truth[hi].seniority == "student").mean() < (truth[lo].seniority == "student").mean()
    assert truth[hi].in_market.mean() > truth[lo].in_market.mean()


def test_junk_leads_are_there_in_realistic_shares(small):
    chunk, messages = small
    traits = [m["traits"] for m in messages if m["type"] == "identify"]
    emails = [t["email"] for t in traits]
    disposable = sum(e.split("@")[-1] in pools.DISPOSABLE_DOMAINS for e in emails)
    role = sum(e.split("@")[0] in pools.ROLE_LOCALS for e in emails)
    invalid = sum(not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", e) for e in emails)
    gibberish = sum((t["first_name"], t["last_name"]) in pools.JUNK_NAMES for t in traits)
    assert min(disposable, role, invalid, gibberish) >= 1
    junk = disposable + role + invalid + gibberish
    assert 0.04 * len(traits) <= junk <= 0.25 * len(traits)
    assert Counter(chunk.truth.column("junk").to_pylist())["none"] > 0.6 * len(traits)
    agents = Counter(m["context"]["userAgent"] for m in messages if m["type"] == "identify")
    assert any("Trident/7.0" in ua for ua in agents) and any("Firefox" in ua for ua in agents)
    countries = Counter(t["address"]["country"] for t in traits)
    in_market = sum(countries[c] for c in pools.SOLD_MARKETS)
    assert 0.7 * len(traits) < in_market < len(traits)


def test_the_year_ends_at_the_given_instant_not_the_clock():
    end = datetime(2020, 3, 1)
    chunk = generate_chunk(DemoConfig(leads=80, seed=1, end=end), 0)
    ts = chunk.events.column("ts").to_pylist()
    assert max(ts) < end and min(ts) >= end - timedelta(days=365 + 41)


def test_jsonl_and_parquet_describe_the_same_events(tmp_path):
    import pyarrow.parquet as pq

    config = DemoConfig(leads=150, seed=5)
    write_population(config, tmp_path, "jsonl.gz")
    write_population(config, tmp_path, "parquet")
    import gzip
    with gzip.open(tmp_path / "events.jsonl.gz", "rt") as f:
        messages = [json.loads(line) for line in f]
    assert messages == list(iter_messages(config))
    events = normalize_batch(messages, received_at=datetime(2026, 11, 2))
    table = pq.read_table(tmp_path / "events.parquet").to_pylist()
    assert len(table) == len(events)
    for e, row in zip(events, table):
        assert (e.message_id, e.type, e.event, e.name, e.user_id, e.anonymous_id, e.group_id, e.ts) == (
            row["message_id"], row["type"], row["event"], row["name"], row["user_id"], row["anonymous_id"],
            row["group_id"], row["ts"])
        assert e.properties == json.loads(row["properties"]) and e.context == json.loads(row["context"])
        assert row["lead_id"] == (e.user_id or row["lead_id"])
    cols = pq.read_schema(tmp_path / "events.parquet").names
    from leadscore.events import EVENT_COLUMNS
    assert cols == [*EVENT_COLUMNS, "lead_id"]


def test_pool_words_are_safe_inside_json_text():
    words = [*pools.FIRST_NAMES, *pools.LAST_NAMES, *(w for pair in pools.JUNK_NAMES for w in pair),
             *pools.DISPOSABLE_DOMAINS, *pools.ROLE_LOCALS, *pools.FREEMAIL_DOMAINS, *pools.COMPANY_HEADS,
             *pools.COMPANY_TAILS, *pools.INDUSTRIES, *(t for ts in pools.TITLES.values() for t in ts),
             *(c for row in pools.COUNTRIES for c in row if isinstance(c, str)), *(u[0] for u in pools.USER_AGENTS),
             *pools.BLOG_SLUGS, *pools.DOCS_SLUGS, *pools.CASE_SLUGS, *pools.REFERRERS,
             *(c for row in pools.CAMPAIGNS for c in row), *(v.title for v in VIDEOS), *(v.id for v in VIDEOS)]
    for w in words:
        assert json.dumps(w)[1:-1] == w, w
    assert len(VOCAB) == len(set(VOCAB))


def test_bad_sizes_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="leads: expected a whole number from 1 to 10,000,000, got 0"):
        DemoConfig(leads=0)
    with pytest.raises(ValueError, match="seed"):
        DemoConfig(leads=10, seed=-1)
    with pytest.raises(ValueError, match="format: expected one of jsonl, jsonl.gz, parquet"):
        write_population(DemoConfig(leads=10), "/nonexistent-never-created", "csv")


def test_parallel_workers_write_the_same_bytes_as_one(tmp_path, monkeypatch):
    from leadscore.demo import generator

    monkeypatch.setattr(generator, "CHUNK_LEADS", 100)   # three chunks from 250 leads (workers fork)
    config = DemoConfig(leads=250, seed=4)
    assert config.chunks == 3
    write_population(config, tmp_path / "one", "parquet", workers=1)
    write_population(config, tmp_path / "two", "parquet", workers=2)
    for f in ("events.parquet", "truth.csv"):
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    import pyarrow.parquet as pq
    lead_ids = pq.read_table(tmp_path / "one" / "events.parquet", columns=["lead_id"]).column(0).to_pylist()
    assert len(set(lead_ids)) == 250 and lead_ids == sorted(lead_ids)
