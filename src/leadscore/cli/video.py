"""`leadscore video …`: the catalog, analytics, heatmap pictures, viewer facts and rejected input."""
from __future__ import annotations

import json
from datetime import datetime

import click
from rich.table import Table

from leadscore.cli.context import console, pass_ctx
from leadscore.cli.timeopt import AS_OF
from leadscore.video import read
from leadscore.video.analytics import video_stats
from leadscore.video.catalog import CatalogError, catalog_rows, import_catalog, load_catalog
from leadscore.video.picture import write_heatmap
from leadscore.video.reconstruct import REJECT_REASONS


def _json(value) -> None:
    click.echo(json.dumps(value, default=str, indent=2))


def _pct(x) -> str:
    return "" if x is None else f"{x:.1f}%"


def _rate(x) -> str:
    return "" if x is None else f"{x * 100:.1f}%"


@click.group("video")
def video() -> None:
    """Video engagement: catalog, analytics, heatmaps."""


@video.group("catalog")
def catalog() -> None:
    """The video catalog (id, title, duration, category → funnel stage, tags)."""


@catalog.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--now", type=AS_OF, default="now", help="Import time recorded with the rows (default: the clock).")
@pass_ctx
def catalog_import(ctx, file, now) -> None:
    """Import (insert or replace) videos from a YAML or CSV FILE; nothing is written if any entry is bad."""
    try:
        videos = load_catalog(file)
    except CatalogError as exc:
        for e in exc.errors:
            click.echo(f"error: {e}", err=True)
        raise click.ClickException(f"{len(exc.errors)} problem(s) in {file}; nothing imported")
    n = import_catalog(ctx.store(), videos, now)
    console.print(f"imported {n} video(s) from {file}", highlight=False)


@catalog.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def catalog_list(ctx, as_json) -> None:
    """The catalog."""
    rows = catalog_rows(ctx.store())
    if as_json:
        _json(rows)
        return
    table = Table(title="video catalog", title_justify="left")
    for c in ("video", "title", "duration", "category", "stage", "tags"):
        table.add_column(c)
    for r in rows:
        table.add_row(r["video_id"], r["title"] or "", f"{r['duration']:g}" if r["duration"] else "",
                      r["category"] or "", r["stage"] or "", r["tags"] or "")
    console.print(table)


@video.command("stats")
@click.option("--as-of", type=AS_OF, default="now", help="Instant of the figures (default: now).")
@click.option("--video", "video_id", help="Only this video (the roll-ups still cover all).")
@click.option("--json", "as_json", is_flag=True, help="Everything, engagement graphs included, as JSON.")
@pass_ctx
def stats(ctx, as_of: datetime, video_id, as_json) -> None:
    """Per-video analytics, roll-ups by funnel stage and category, and the top-performing ranking."""
    result = video_stats(ctx.store(), as_of)
    if video_id:
        result["videos"] = [v for v in result["videos"] if v["video_id"] == video_id]
        if not result["videos"]:
            raise click.ClickException(f"no video {video_id!r} in the catalog or the events")
    if as_json:
        _json(result)
        return
    table = Table(title=f"videos as of {as_of.isoformat(sep=' ')} (ranked by engaged views)", title_justify="left")
    for c in ("#", "video", "stage", "category", "impr.", "plays", "play rate", "viewers", "avg watch",
              "avg %", "complete", "CTA conv.", "engaged", "most replayed"):
        table.add_column(c, justify="right" if c not in ("video", "stage", "category", "most replayed") else "left")
    for v in result["videos"]:
        seg = ", ".join(f"{s['start']}–{s['end']}s (+{s['rewatches']})" for s in v["most_replayed"][:2])
        table.add_row(str(v["rank"]), v["video_id"], v["stage"] or "", v["category"] or "", str(v["impressions"]),
                      str(v["plays"]), _rate(v["play_rate"]), str(v["viewers"]),
                      "" if v["avg_watch_seconds"] is None else f"{v['avg_watch_seconds']:.0f}s",
                      _pct(v["avg_percent_watched"]), _rate(v["completion_rate"]), _rate(v["cta_conversion"]),
                      f"{v['engaged_views']:.2f}", seg)
    console.print(table)
    for key, title in (("by_stage", "by funnel stage"), ("by_category", "by category")):
        t = Table(title=title, title_justify="left")
        for c in (key.removeprefix("by_"), "videos", "plays", "viewers", "watch time", "avg %", "complete",
                  "CTA conv.", "top videos"):
            t.add_column(c)
        for g in result[key]:
            t.add_row(g[key.removeprefix("by_")] or "(not in catalog)", str(g["videos"]), str(g["plays"]),
                      str(g["viewers"]), f"{g['total_watch_seconds'] / 60:.1f} min", _pct(g["avg_percent_watched"]),
                      _rate(g["completion_rate"]), _rate(g["cta_conversion"]), ", ".join(g["top_videos"][:3]))
        console.print(t)


@video.command("heatmap")
@click.argument("video_id", metavar="VIDEO")
@click.option("--lead", "lead_id", help="Only this lead (default: every viewer, one row each).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="heatmap.svg or heatmap.png")
@click.option("--as-of", type=AS_OF, default="now", help="Instant of the heatmap (default: now).")
@click.option("--max-viewers", default=200, show_default=True, help="Rows drawn at most (most-watched first).")
@pass_ctx
def heatmap(ctx, video_id, lead_id, out, as_of, max_viewers) -> None:
    """Draw VIDEO's per-second heatmap: grey not watched, green once, yellow twice, red 3+."""
    if not out.lower().endswith((".svg", ".png")):
        raise click.BadParameter(f"{out}: must end in .svg or .png", param_hint="--out")
    store = ctx.store()
    maps = read.heatmaps(store, video_id, as_of, lead_id=lead_id)
    if not maps:
        who = f"lead {lead_id!r}" if lead_id else "anyone"
        raise click.ClickException(f"no playback of video {video_id!r} by {who} as of {as_of.isoformat(sep=' ')}")
    maps.sort(key=lambda m: (-sum(1 for c in m.counts if c), m.lead_id))
    rows = [(m.lead_id, m.counts) for m in maps[:max_viewers]]
    seconds = max(len(m.counts) for m in maps)
    title_rows = store.query("SELECT title FROM video_catalog WHERE video_id = ?", (video_id,))
    title = (title_rows[0][0] if title_rows and title_rows[0][0] else video_id) + f" — {len(maps)} viewer(s)"
    path = write_heatmap(rows, seconds, title, out)
    console.print(f"wrote {path} ({len(rows)} row(s), {seconds} s)", highlight=False)


@video.command("views")
@click.option("--lead", "lead_id", help="Only this lead.")
@click.option("--as-of", type=AS_OF, default="now")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def views(ctx, lead_id, as_of, as_json) -> None:
    """The viewer facts scoring rules use: per lead and video."""
    rows = read.views(ctx.store(), as_of, lead_id=lead_id)
    if as_json:
        _json(rows)
        return
    table = Table(title="video facts per lead", title_justify="left")
    for c in ("lead", "video", "stage", "unique", "%", "watched", "replayed", "sessions", "CTA", "last played"):
        table.add_column(c)
    for r in rows:
        table.add_row(r["lead_id"], r["video_id"], r["stage"] or "", f"{r['unique_seconds']}s",
                      _pct(r["percent_watched"]), f"{r['watch_seconds']}s", f"{r['replayed_seconds']}s",
                      str(r["sessions"]), str(r["cta_clicks"]), str(r["last_ts"]))
    console.print(table)


@video.command("rejects")
@click.option("--as-of", type=AS_OF, default="now")
@click.option("--json", "as_json", is_flag=True, help="Every rejected event/segment with its reason.")
@pass_ctx
def rejects(ctx, as_of, as_json) -> None:
    """Video input that was dropped, clamped or not credited, counted by reason."""
    if as_json:
        _json(read.rejects(ctx.store(), as_of))
        return
    counts = read.reject_counts(ctx.store(), as_of)
    table = Table(title="rejected video input", title_justify="left")
    for c in ("reason", "count", "meaning"):
        table.add_column(c)
    for reason, meaning in REJECT_REASONS.items():
        if counts.get(reason):
            table.add_row(reason, str(counts[reason]), meaning)
    if not counts:
        console.print("no rejected video input")
        return
    console.print(table)


commands = [video]
