"""The video catalog: id, title, duration, category → funnel stage, topic tags; imported from YAML/CSV.

A file is checked whole before anything is written; every problem names the file, the entry (row
number for CSV, index for YAML) and the field.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

STAGES = ("top", "middle", "bottom", "retention")
CATEGORY_STAGE = {
    **{c: "top" for c in ("ad", "promotional", "educational", "brand", "faq")},
    **{c: "middle" for c in ("explainer", "product", "how_to", "culture", "comparison", "feature")},
    **{c: "bottom" for c in ("testimonial", "case_study", "customer_story", "review", "demo", "personalised")},
    **{c: "retention" for c in ("feature_update", "check_in")},
}
# The wording marketers use for the same categories (normalised: lower case, words joined by "_").
CATEGORY_ALIASES = {
    "commercial_ad": "ad", "commercial": "ad", "advert": "ad", "advertisement": "ad", "promo": "promotional",
    "general_brand": "brand", "brand_video": "brand", "howto": "how_to", "tutorial": "how_to",
    "company_culture": "culture", "competitor_comparison": "comparison", "feature_video": "feature",
    "product_video": "product", "testimonials": "testimonial", "case_studies": "case_study",
    "customer_success": "customer_story", "customer_success_story": "customer_story",
    "customer_stories": "customer_story", "product_review": "review", "reviews": "review",
    "demonstration": "demo", "product_demo": "demo", "personalized": "personalised",
    "personalised_use_case": "personalised", "personalized_use_case": "personalised",
    "feature_updates": "feature_update", "customer_check_in": "check_in", "checkin": "check_in",
}

COLUMNS = ("video_id", "title", "duration", "category", "stage", "tags", "url")


class CatalogError(ValueError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = "; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else "")
        super().__init__(shown)


@dataclass
class Video:
    video_id: str
    title: str | None
    duration: float | None
    category: str | None
    stage: str | None
    tags: list[str] = field(default_factory=list)
    url: str | None = None

    def row(self, imported_at: datetime) -> tuple:
        return (self.video_id, self.title, self.duration, self.category, self.stage,
                ",".join(self.tags) or None, self.url, imported_at)


def normalise_category(text: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    return CATEGORY_ALIASES.get(key, key)


def parse_duration(value: Any) -> float:
    """Seconds from a number, "90", "1:30" or "1:02:03"."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or m:ss")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        if re.fullmatch(r"\d+(:\d{1,2}){1,2}(\.\d+)?", text):
            seconds = 0.0
            for part in text.split(":"):
                seconds = seconds * 60 + float(part)
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"expected seconds or m:ss, got {text!r}") from None
    if not (seconds > 0) or seconds == float("inf"):
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return seconds


def _entry(raw: Any, where: str, errors: list[str]) -> Video | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a mapping of video fields, got {type(raw).__name__}")
        return None
    raw = {str(k).strip().lower(): v for k, v in raw.items() if k is not None}
    if "id" in raw and "video_id" not in raw:
        raw["video_id"] = raw.pop("id")
    unknown = sorted(set(raw) - set(COLUMNS))
    if unknown:
        errors.append(f"{where}: unknown field(s) {', '.join(unknown)} (expected {', '.join(COLUMNS)})")
    before = len(errors)
    vid = raw.get("video_id")
    vid = str(vid).strip() if vid is not None else ""
    if not vid:
        errors.append(f"{where}.video_id: required")
    duration = None
    if raw.get("duration") not in (None, ""):
        try:
            duration = parse_duration(raw["duration"])
        except ValueError as exc:
            errors.append(f"{where}.duration: {exc}")
    category = None
    if raw.get("category") not in (None, ""):
        category = normalise_category(str(raw["category"]))
        if category not in CATEGORY_STAGE:
            errors.append(f"{where}.category: unknown category {raw['category']!r} "
                          f"(known: {', '.join(sorted(CATEGORY_STAGE))})")
    stage = None
    if raw.get("stage") not in (None, ""):
        stage = str(raw["stage"]).strip().lower()
        if stage not in STAGES:
            errors.append(f"{where}.stage: must be one of {', '.join(STAGES)}, got {raw['stage']!r}")
    elif category in CATEGORY_STAGE:
        stage = CATEGORY_STAGE[category]
    tags_raw = raw.get("tags")
    if tags_raw in (None, ""):
        tags = []
    elif isinstance(tags_raw, (list, tuple)):
        tags = [str(t).strip().lower() for t in tags_raw if str(t).strip()]
    else:
        tags = [t.strip().lower() for t in re.split(r"[,|;]", str(tags_raw)) if t.strip()]
    if any("," in t for t in tags):
        errors.append(f"{where}.tags: a tag may not contain a comma")
    title = raw.get("title")
    url = raw.get("url")
    if len(errors) > before:
        return None
    return Video(vid, str(title) if title is not None else None, duration, category, stage, tags,
                 str(url) if url not in (None, "") else None)


def load_catalog(path: str | Path) -> list[Video]:
    """Read a YAML (a list, or ``videos:`` list) or CSV (header row) catalog; CatalogError lists all problems."""
    path = Path(path)
    if not path.exists():
        raise CatalogError([f"{path}: no such file"])
    errors: list[str] = []
    videos: list[Video] = []
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise CatalogError([f"{path}: not valid YAML: {exc}"]) from None
        if isinstance(doc, dict) and "videos" in doc:
            doc = doc["videos"]
        if not isinstance(doc, list):
            raise CatalogError([f"{path}: expected a list of videos (or a 'videos:' list)"])
        items = [(f"{path}: videos[{i}]", raw) for i, raw in enumerate(doc)]
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise CatalogError([f"{path}: empty file (expected a header row)"])
            items = [(f"{path}: row {i + 2}", row) for i, row in enumerate(reader)]
    else:
        raise CatalogError([f"{path}: unknown format {path.suffix!r} (use .yaml, .yml or .csv)"])
    seen: dict[str, str] = {}
    for where, raw in items:
        video = _entry(raw, where, errors)
        if video is None:
            continue
        if video.video_id in seen:
            errors.append(f"{where}.video_id: {video.video_id!r} already given at {seen[video.video_id]}")
            continue
        seen[video.video_id] = where
        videos.append(video)
    if errors:
        raise CatalogError(errors)
    return videos


def import_catalog(store, videos: list[Video], imported_at: datetime) -> int:
    """Insert or replace the given videos in one transaction; returns how many were written."""
    if not videos:
        return 0
    with store.transaction() as conn:
        for start in range(0, len(videos), 500):
            chunk = videos[start:start + 500]
            marks = ",".join("?" * len(chunk))
            store._execute(conn, f"DELETE FROM video_catalog WHERE video_id IN ({marks})", [v.video_id for v in chunk])
        cols = ", ".join(COLUMNS + ("imported_at",))
        marks = ", ".join("?" * (len(COLUMNS) + 1))
        for v in videos:
            store._execute(conn, f"INSERT INTO video_catalog ({cols}) VALUES ({marks})", v.row(imported_at))
    return len(videos)


def catalog_rows(store) -> list[dict[str, Any]]:
    return store.query_dicts("SELECT video_id, title, duration, category, stage, tags, url FROM video_catalog ORDER BY video_id")
