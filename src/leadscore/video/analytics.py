"""Video analytics: per video, per funnel stage and category, and a ranking; JSON-ready dicts.

Everything is computed from the same reconstruction as the scoring facts (one row per viewer and
video: on DuckDB the compiled walk of leadscore.video.fast, elsewhere the SQL), then aggregated in SQL. Viewers are leads, or ``anon:<anonymousId>`` for people never identified,
so analytics count everyone while scoring only sees leads.

Definitions (per video):
- impressions: ``Video Player Shown`` events (sent by leadscore-video.js when a player is first seen);
- plays: playback sessions; viewers: distinct viewers with a session;
- play_rate: plays / impressions (NULL without impressions: trackers other than ours do not send them);
- total_watch_seconds: seconds played including replays; avg_watch_seconds: per viewer;
- avg_percent_watched: mean of the viewers' percent of the video watched (unique seconds);
- completion_rate: share of viewers who watched every second (completed_100);
- engagement graph: per second, the share of viewers who watched it (``watching``) and how many
  times it was played again beyond each viewer's first time (``rewatches``);
- most replayed segments: the stretches with the most rewatches;
- cta_conversion: share of viewers who clicked a CTA inside the video;
- engaged_views: Σ percent_watched / 100 over viewers (full-view equivalents): reach × depth; the
  ranking orders videos by it, then by CTA conversion, completion rate and id.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from leadscore.events.normalize import STORED_EVENT_COLUMNS
from leadscore.store.dialect import quote_literal
from leadscore.video.catalog import STAGES
from leadscore.video.facts import video_views_sql
from leadscore.video.read import as_of_sql, heat_and_views, use_kernel
from leadscore.video.reconstruct import (DEFAULT_HEARTBEAT_S, DEFAULT_JITTER_S, DEFAULT_TOLERANCE_S, _ctes,
                                         _heatmap_ctes, _with)
from leadscore.video.simulate import cells

SHOWN_EVENT = "Video Player Shown"


def viewer_events(source: str = "resolved_events") -> str:
    """The resolved events with anonymous people as viewers of their own: ``anon:<anonymousId>``."""
    cols = ", ".join(f"r.{c}" for c in STORED_EVENT_COLUMNS)
    return (f"(SELECT {cols}, COALESCE(r.lead_id, CASE WHEN r.anonymous_id IS NOT NULL "
            f"THEN 'anon:' || r.anonymous_id END) AS lead_id FROM {source} r)")


def _per_video_sql(store, as_of: str, views: str | None = None) -> str:
    """Per video, rolled up from the viewer facts (``views``: a relation holding them; default: the SQL)."""
    d = store.dialect
    dbl = d.double()
    views = views or f"({video_views_sql(d, viewer_events(), as_of)})"
    return f"""
        SELECT v.video_id, MAX(v.title) AS title, MAX(v.category) AS category, MAX(v.stage) AS stage,
               MAX(v.duration) AS duration, COUNT(*) AS viewers, SUM(v.sessions) AS plays,
               SUM(v.watch_seconds) AS total_watch_seconds,
               AVG(v.percent_watched) AS avg_percent_watched,
               AVG(CASE WHEN v.completed_100 THEN CAST(1 AS {dbl}) ELSE CAST(0 AS {dbl}) END) AS completion_rate,
               SUM(v.cta_clicks) AS cta_clicks,
               SUM(CASE WHEN v.cta_clicks > 0 THEN 1 ELSE 0 END) AS cta_viewers,
               SUM(COALESCE(v.percent_watched, 0)) / 100 AS engaged_views
        FROM {views} v GROUP BY v.video_id"""


def _impressions_sql(store, as_of: str) -> str:
    d = store.dialect
    vid = d.json_str("e.properties", "content_asset_id")
    return (f"SELECT {vid} AS video_id, COUNT(*) AS impressions FROM resolved_events e "
            f"WHERE e.event = {quote_literal(SHOWN_EVENT)} AND e.ts <= {as_of} AND {vid} IS NOT NULL "
            f"GROUP BY {vid}")


def _engagement_sql(store, as_of: str, heat: str | None = None) -> str:
    """Per video, runs of seconds with (viewers who watched them, total plays): a sweep over the
    viewers' heatmap runs (``heat``: a relation holding them; default: the SQL)."""
    if heat is None:
        ctes = _ctes(store.dialect, viewer_events(), as_of, "video_catalog", DEFAULT_HEARTBEAT_S, DEFAULT_JITTER_S,
                     DEFAULT_TOLERANCE_S) + _heatmap_ctes(store.dialect)
    else:
        ctes = [("lsv_heat", f"SELECT lead_id, video_id, start_sec, end_sec, plays FROM {heat}")]
    ctes += [
        ("lsa_pts", """
            SELECT video_id, sec, SUM(dv) AS dv, SUM(dp) AS dp FROM (
                SELECT video_id, start_sec AS sec, CAST(SIGN(plays) AS BIGINT) AS dv, plays AS dp FROM lsv_heat
                UNION ALL
                SELECT video_id, end_sec AS sec, -CAST(SIGN(plays) AS BIGINT) AS dv, -plays AS dp FROM lsv_heat
            ) b GROUP BY video_id, sec"""),
        ("lsa_runs", """
            SELECT video_id, sec AS start_sec, LEAD(sec) OVER (PARTITION BY video_id ORDER BY sec) AS end_sec,
                   CAST(SUM(dv) OVER (PARTITION BY video_id ORDER BY sec ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS watching,
                   CAST(SUM(dp) OVER (PARTITION BY video_id ORDER BY sec ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS plays
            FROM lsa_pts"""),
    ]
    return _with(ctes, "SELECT video_id, start_sec, end_sec, watching, plays FROM lsa_runs "
                       "WHERE end_sec IS NOT NULL AND watching > 0")


def _num(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, float):
        return round(x, 4)
    try:
        return int(x)
    except (TypeError, ValueError):
        return float(x)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def video_stats(store, as_of: datetime, top_segments: int = 3) -> dict[str, Any]:
    """All the analytics as one JSON-ready dict: ``videos`` (per video, ranked), ``by_stage``,
    ``by_category``, ``ranking`` (video ids, best first) and ``as_of``."""
    a = as_of_sql(store, as_of)
    runs: dict[str, list[dict]] = {}
    if use_kernel(store):
        with store.transaction() as conn:
            hv = heat_and_views(store, as_of, viewer_events())
            conn.register("lsa_views", hv.views)
            conn.register("lsa_heat", hv.runs)
            try:
                per_video = store.query_dicts(_per_video_sql(store, a, "lsa_views"))
                engagement = store.query_dicts(_engagement_sql(store, a, "lsa_heat") + " ORDER BY video_id, start_sec")
            finally:
                conn.unregister("lsa_views")
                conn.unregister("lsa_heat")
    else:
        per_video = store.query_dicts(_per_video_sql(store, a))
        engagement = store.query_dicts(_engagement_sql(store, a) + " ORDER BY video_id, start_sec")
    rows = {r["video_id"]: r for r in per_video}
    for r in engagement:
        runs.setdefault(r["video_id"], []).append(r)
    shown = {r["video_id"]: int(r["impressions"]) for r in store.query_dicts(_impressions_sql(store, a))}
    catalog = {r["video_id"]: r for r in store.query_dicts(
        "SELECT video_id, title, duration, category, stage, tags FROM video_catalog")}

    videos = []
    for vid in sorted(set(rows) | set(shown) | set(catalog)):
        r = rows.get(vid, {})
        c = catalog.get(vid, {})
        viewers = int(r.get("viewers") or 0)
        plays = int(r.get("plays") or 0)
        impressions = shown.get(vid, 0)
        duration = r.get("duration") or c.get("duration")
        n = cells(duration) if duration else max((x["end_sec"] for x in runs.get(vid, [])), default=0)
        watching = [0.0] * n
        rewatches = [0] * n
        for x in runs.get(vid, []):
            for k in range(max(0, x["start_sec"]), min(n, x["end_sec"])):
                watching[k] = round(x["watching"] / viewers, 4) if viewers else 0.0
                rewatches[k] = int(x["plays"] - x["watching"])
        segments = sorted(
            ({"start": x["start_sec"], "end": x["end_sec"], "rewatches": int(x["plays"] - x["watching"])}
             for x in runs.get(vid, []) if x["plays"] > x["watching"]),
            key=lambda s: (-s["rewatches"], -(s["end"] - s["start"]), s["start"]))[:top_segments]
        total_watch = int(r.get("total_watch_seconds") or 0)
        videos.append({
            "video_id": vid, "title": c.get("title") or r.get("title"), "category": c.get("category"),
            "stage": c.get("stage"), "tags": [t for t in (c.get("tags") or "").split(",") if t],
            "duration": _num(duration), "impressions": impressions, "plays": plays,
            "play_rate": _ratio(plays, impressions), "viewers": viewers,
            "total_watch_seconds": total_watch, "avg_watch_seconds": _ratio(total_watch, viewers),
            "avg_percent_watched": _num(r.get("avg_percent_watched")),
            "completion_rate": _num(r.get("completion_rate")),
            "cta_clicks": int(r.get("cta_clicks") or 0),
            "cta_conversion": _ratio(int(r.get("cta_viewers") or 0), viewers),
            "engaged_views": _num(float(r.get("engaged_views") or 0.0)),
            "engagement": {"watching": watching, "rewatches": rewatches},
            "most_replayed": segments,
        })
    videos.sort(key=lambda v: (-v["engaged_views"], -(v["cta_conversion"] or 0), -(v["completion_rate"] or 0),
                               v["video_id"]))
    for i, v in enumerate(videos, 1):
        v["rank"] = i
    return {
        "as_of": as_of.isoformat(),
        "videos": videos,
        "by_stage": _rollup(videos, "stage", order=STAGES),
        "by_category": _rollup(videos, "category"),
        "ranking": [v["video_id"] for v in videos],
    }


def _rollup(videos: list[dict], key: str, order: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The per-video figures summed (counts) or viewer-weighted (rates) per stage or category."""
    groups: dict[str | None, list[dict]] = {}
    for v in videos:
        groups.setdefault(v[key], []).append(v)
    out = []
    rank = {name: i for i, name in enumerate(order)}
    for name in sorted(groups, key=lambda g: (g is None, rank.get(g, len(rank)), g or "")):
        vs = groups[name]
        viewers = sum(v["viewers"] for v in vs)
        plays = sum(v["plays"] for v in vs)
        impressions = sum(v["impressions"] for v in vs)
        total_watch = sum(v["total_watch_seconds"] for v in vs)

        def weighted(field: str) -> float | None:
            pairs = [(v[field], v["viewers"]) for v in vs if v[field] is not None and v["viewers"]]
            w = sum(n for _, n in pairs)
            return round(sum(x * n for x, n in pairs) / w, 4) if w else None

        out.append({
            key: name, "videos": len(vs), "impressions": impressions, "plays": plays,
            "play_rate": _ratio(plays, impressions), "viewers": viewers,
            "total_watch_seconds": total_watch, "avg_watch_seconds": _ratio(total_watch, viewers),
            "avg_percent_watched": weighted("avg_percent_watched"),
            "completion_rate": weighted("completion_rate"),
            "cta_clicks": sum(v["cta_clicks"] for v in vs),
            "cta_conversion": weighted("cta_conversion"),
            "engaged_views": round(sum(v["engaged_views"] for v in vs), 4),
            "top_videos": [v["video_id"] for v in vs][:5],   # vs is in ranking order
        })
    return out
