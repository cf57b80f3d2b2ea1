"""The demo's video catalog: about twenty videos covering every category and funnel stage.

Written as YAML (``videos.yaml``) beside the generated events so that the video module and the
default model can read each video's category, stage and duration.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

# Video category → funnel stage, as the lead-scoring playbooks group them.
FUNNEL_STAGES: dict[str, tuple[str, ...]] = {
    "top": ("ad", "promotional", "educational", "brand", "faq"),
    "middle": ("explainer", "product", "how_to", "culture", "comparison", "feature"),
    "bottom": ("testimonial", "case_study", "customer_story", "review", "demo", "personalised"),
    "retention": ("feature_update", "check_in"),
}
STAGE_OF_CATEGORY = {cat: stage for stage, cats in FUNNEL_STAGES.items() for cat in cats}
STAGES = tuple(FUNNEL_STAGES)


@dataclass(frozen=True)
class Video:
    id: str
    title: str
    category: str
    duration: int  # seconds
    tags: tuple[str, ...] = ()

    @property
    def stage(self) -> str:
        return STAGE_OF_CATEGORY[self.category]


VIDEOS: tuple[Video, ...] = (
    Video("vid-brand-spot", "Scoring that sales trusts (30s spot)", "ad", 30, ("brand", "awareness")),
    Video("vid-launch-promo", "Spring launch: real-time alerts", "promotional", 45, ("launch", "alerts")),
    Video("vid-what-is-scoring", "What is lead scoring?", "educational", 240, ("lead-scoring", "basics")),
    Video("vid-our-story", "Why we built leadscore", "brand", 120, ("company",)),
    Video("vid-faq-pricing", "Pricing FAQ in two minutes", "faq", 110, ("pricing",)),
    Video("vid-explainer", "leadscore explained", "explainer", 150, ("overview",)),
    Video("vid-product-tour", "Product tour", "product", 300, ("overview", "dashboard")),
    Video("vid-howto-model", "How to write a scoring model", "how_to", 420, ("model", "yaml")),
    Video("vid-howto-crm", "How to sync scores to your CRM", "how_to", 360, ("crm", "integrations")),
    Video("vid-culture", "A day at the team", "culture", 180, ("careers", "team")),
    Video("vid-vs-legacy", "leadscore vs. legacy marketing automation", "comparison", 270, ("competitors",)),
    Video("vid-feature-heatmaps", "Feature: video heatmaps", "feature", 200, ("video", "heatmaps")),
    Video("vid-testimonial-atlas", "Atlas Finance on their pipeline", "testimonial", 90, ("finance",)),
    Video("vid-case-northwind", "Case study: Northwind doubled SQLs", "case_study", 330, ("saas", "sql")),
    Video("vid-story-helix", "Customer story: Helix Health", "customer_story", 240, ("healthcare",)),
    Video("vid-review-g2", "Analyst review of leadscore", "review", 210, ("review",)),
    Video("vid-demo-full", "Full product demo", "demo", 900, ("demo", "pricing")),
    Video("vid-demo-short", "Five-minute demo", "demo", 300, ("demo",)),
    Video("vid-personalised", "Your use case, walked through", "personalised", 480, ("personalised",)),
    Video("vid-update-nov", "What's new this quarter", "feature_update", 150, ("release-notes",)),
    Video("vid-checkin", "Quarterly customer check-in", "check_in", 600, ("customers",)),
)
VIDEO_INDEX = {v.id: v for v in VIDEOS}


def catalog_dict() -> dict:
    """The catalog as plain data (what ``videos.yaml`` holds)."""
    return {"videos": [{**asdict(v), "tags": list(v.tags), "stage": v.stage} for v in VIDEOS]}


def write_catalog(path: str | Path) -> Path:
    path = Path(path)
    header = "# The demo population's video catalog: id, title, category (→ funnel stage), duration in seconds.\n"
    path.write_text(header + yaml.safe_dump(catalog_dict(), sort_keys=False, allow_unicode=False))
    return path
