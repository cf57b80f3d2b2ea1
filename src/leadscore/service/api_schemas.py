"""Response and request bodies of the REST API (pydantic), so the OpenAPI document describes them."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from typing_extensions import Annotated


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it everywhere keeps both stores alike.
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """Parts of the engine's explanation object: new keys the engine adds pass through."""
    model_config = ConfigDict(extra="allow")


class ScoreRow(_Out):
    lead_id: str
    score: float
    fit: float
    engagement: float
    tier: str
    stage: str
    grade: str
    disqualified: bool
    model_version: str
    probability: float | None
    updated_at: str | None


class LeadRow(ScoreRow):
    email: Any = None
    name: str | None = None
    company: Any = None
    title: Any = None
    account: Any = None
    last_activity: str | None = None
    trend: list[float] = Field(default_factory=list, description="the last scores from the history, oldest first")


class LeadPage(_Out):
    items: list[LeadRow]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
    total: int = Field(description="leads matching the filters")


class Occurrence(_Open):
    message_id: str | None
    ts: str | None
    points: float


class RuleHit(_Open):
    """One rule that fired; trait rules also carry ``traits`` (the values that made them fire)."""
    rule: str
    group: str
    axis: str
    kind: str
    points: float
    hits: int
    description: str | None
    events: list[str]
    occurrences: list[Occurrence]


class Suggestion(_Open):
    rule: str
    group: str
    points: float
    description: str | None


class NextTier(_Open):
    tier: str
    at: float
    missing: float
    suggestions: list[Suggestion]


class HistoryRow(_Out):
    changed_at: str | None
    model_version: str
    score: float
    fit: float
    engagement: float
    tier: str
    stage: str
    prev_score: float | None
    prev_tier: str | None
    prev_stage: str | None
    cause: str = Field(description="event | time | model")
    cause_ref: str | None = Field(description="event: the lead's messageIds; model: the version")


class TimelineEvent(_Out):
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    ts: str | None
    received_at: str | None
    properties: Any


class AccountRow(_Out):
    account_id: str
    name: Any = None
    score: float
    engagement: float
    fit: float
    leads: int
    hot_leads: int = Field(description="leads in the model's top tier")
    traits: dict[str, Any]


class AccountPage(_Out):
    items: list[AccountRow]
    next_cursor: str | None
    total: int


class AccountLead(LeadRow):
    counted: bool = Field(description="one of the leads whose engagement the account score sums")


class Rollup(_Out):
    top_n: int
    fit: str
    engagement_weight: float
    fit_weight: float


class AccountDetail(AccountRow):
    rollup: Rollup
    lead_items: list[AccountLead]


class LeadDetail(_Open):
    """The explanation object (exactly the keys of ``leadscore explain --json``) plus what the lead page shows."""
    lead: str
    as_of: str
    model_version: str
    score: float
    fit: float
    engagement: float
    tier: str
    stage: str
    grade: str
    disqualified: bool
    probability: float | None
    groups: dict[str, float]
    rules: list[RuleHit]
    next_tier: NextTier | None
    traits: dict[str, Any]
    account: AccountRow | None
    current: ScoreRow | None = Field(description="the live score as stored (null before the first re-score)")
    history: list[HistoryRow]
    timeline: list[TimelineEvent]
    videos: list[dict[str, Any]]


class VideoStats(_Out):
    video_id: str
    title: Any = None
    category: Any = None
    stage: Any = None
    duration: float | None
    viewers: int
    views: int
    sessions: int
    avg_percent_watched: float | None
    completion_rate: dict[str, float | None]
    watch_seconds: float | None
    cta_clicks: int
    last_viewed: str | None


class GraphPoint(_Out):
    second: int
    plays: int
    viewers: int
    share: float


class ViewerHeatmap(_Out):
    lead_id: str
    seconds_watched: int
    counts: list[int]


class VideoDetail(VideoStats):
    graph: list[GraphPoint]
    heatmaps: list[ViewerHeatmap]
    heatmap_viewers: int


class ModelVersion(_Out):
    version: str
    name: str
    created_at: str | None
    active: bool


class ModelUpload(BaseModel):
    source: Text = Field(description="the model file's YAML text", max_length=1_000_000)
    filename: Text = Field("model.yaml", max_length=200, description="named in validation errors")
    activate: bool = Field(False, description="activate at once (re-scores everyone)")


class ModelSaved(_Out):
    version: str
    name: str
    rules: int
    groups: int
    created: bool = Field(description="false when this version was already stored")
    activation: dict[str, Any] | None = None


class DryRunRequest(BaseModel):
    source: Text | None = Field(None, max_length=1_000_000, description="a model file's YAML text")
    filename: Text = Field("model.yaml", max_length=200)
    version: Text | None = Field(None, max_length=200, description="or a stored version")
    as_of: datetime | None = None


class DryRunResult(_Out):
    version: str
    as_of: str
    leads: int = Field(description="leads scored")
    tier_changes: int = Field(description="leads whose tier would change")
    stage_changes: int
    score_changes: int
    moves: list[dict[str, Any]]


class Activation(_Out):
    state: str
    version: str | None = None
    done: int | None = None
    total: int | None = None
    started_at: str | None = None
    changed: int | None = None
    tier_changes: int | None = None
    error: str | None = None
    reason: str | None = None


class AlertOut(_Out):
    alert_id: str
    lead_id: str
    name: str
    trigger: str
    type: str
    fired_at: str | None
    model_version: str
    score: float | None
    prev_score: float | None
    tier: str | None
    prev_tier: str | None
    stage: str | None
    prev_stage: str | None
    cause: str | None
    cause_ref: str | None
    detail: dict[str, Any]


class AlertPage(_Out):
    items: list[AlertOut]
    next_cursor: str | None
    total: int


class Delivery(_Out):
    message_id: str
    type: str
    lead_id: str | None
    endpoint_id: str
    url: str | None
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    created_at: str | None
    seq: int


class ReplayRequest(BaseModel):
    message_ids: list[Text] | None = Field(None, max_length=1000)
    endpoint_id: Text | None = Field(None, max_length=200)
    all_dead: bool = False
    include_delivered: bool = False


class ReplayResult(_Out):
    replayed: int


class WhatIfRequest(BaseModel):
    thresholds: dict[Text, float | None] = Field(description="tier name → minimum score (the lowest tier: null)")


class WhatIfResult(_Out):
    thresholds: dict[Text, float | None]
    current: dict[str, int]
    proposed: dict[str, int]
    moves: list[dict[str, Any]]
    changed: int


class ModelSummary(_Out):
    name: str
    version: str
    description: str | None
    groups: dict[str, dict[str, Any]]
    rules: list[dict[str, Any]]
    tiers: list[dict[str, Any]]
    stages: list[str]
    alerts: list[dict[str, Any]]
    scored_by_version: dict[str, int]
    distribution: dict[str, Any]
    active: bool


class RescoreRequest(BaseModel):
    as_of: datetime | None = Field(None, description="default: now")


class RescoreResult(_Out):
    cause: str
    as_of: str | None
    leads: int
    changes: int
    alerts: int
    crm_items: int


class Erased(_Out):
    lead_id: str
    deleted: dict[str, int]


class LeadExport(_Out):
    lead_id: str
    ids: list[str]
    tables: dict[str, list[dict[str, Any]]]


class WebhookIn(BaseModel):
    url: Text = Field(max_length=2000)
    event_types: list[Text] | None = Field(None, max_length=50)
    description: Text | None = Field(None, max_length=500)
    allow_private: bool = Field(False, description="allow loopback/private addresses (tests, on-premise receivers)")


class WebhookOut(_Out):
    endpoint_id: str
    url: str
    event_types: list[str] | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: str | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret (whsec_…); shown only in this response")


class LiveStats(_Out):
    model_version: str | None
    high_water: str | None
    batches: int
    yielded_batches: int = Field(0, description="event passes run below the process's CPU priority: at least "
                                                "LEADSCORE_YIELD_BACKLOG events (default 0: every pass) were waiting "
                                                "to be stored")
    events: int
    changes: int
    alerts: int
    crm_items: int
    errors: int
    partial_leads: int = Field(0, description="leads re-scored partially: only the rules their new messages can move "
                                              "derived, the others read from the rule cache (engine.partial)")
    full_leads: int = Field(0, description="leads re-scored from their whole history (every rule derived)")
    merged_leads: int = Field(0, description="leads re-scored from their rule cache and the batch's messages alone, "
                                             "no history read (engine.partial, DuckDB)")
    score_seconds: float = Field(0.0, description="time spent computing re-scores (the scoring queries)")
    write_seconds: float = Field(0.0, description="time spent writing them (scores, history, cache, alerts, outbox), "
                                                  "holding the store's write lock")
    freshness_seconds: dict[str, Any]
    activation: dict[str, Any]
    last_time_rescore: dict[str, Any] | None
    time_rescore_seconds: float


SortLead = Literal["score", "fit", "engagement", "updated", "lead_id"]
SortAccount = Literal["score", "engagement", "fit", "leads", "account_id"]
Order = Literal["asc", "desc"]


class ErrorLoc(_Out):
    loc: str
    message: str


class ErrorBody(_Out):
    code: str
    message: str
    errors: list[ErrorLoc] | None = None


#: Error answers every /api route may give (documented so clients and schema checks know them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON"},
    401: {"model": ErrorBody, "description": "no key, or an unknown/revoked key"},
    403: {"model": ErrorBody, "description": "the key's role may not do this"},
    422: {"model": ErrorBody, "description": "a bad parameter or body; `errors[].loc` names the field"},
    429: {"model": ErrorBody, "description": "over the key's rate limit (see Retry-After)"},
    503: {"model": ErrorBody, "description": "the store is unavailable (see Retry-After)"},
}
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such item"}}
