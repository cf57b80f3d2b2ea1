"""The scoring-model file, as pydantic models. ``docs/model-reference.md`` is checked against this
file by a test, so every key documented here is a key the loader accepts."""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadscore.model.conditions import Condition
from leadscore.model.durations import Duration

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MessageType = Literal["track", "page", "screen", "identify", "group", "alias"]


@lru_cache(maxsize=64)
def _content_hash(text: str) -> str:
    """The version hash of a model's text. Cached by the text itself (a str is immutable), so an edited
    model still gets a new version: the live service asks for the version once per changed lead, and a
    sha256 of the model file each time cost ~10 us (70 ms for 7,000 leads)."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Where(BaseModel):
    """Conditions that must all hold: ``field: condition`` pairs plus ``any`` / ``all`` / ``not``.

    For events a field is a property (``path``, ``email_id``) or ``context.<path>``; for traits it
    is a trait key (``title``, ``company.employee_count``) or ``account.<key>``; for video, a fact.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    __pydantic_extra__: dict[str, Condition] = Field(init=False)

    any: list["Where"] | None = None
    all: list["Where"] | None = None
    not_: "Where | None" = Field(None, alias="not")

    def fields(self) -> dict[str, Condition]:
        return dict(self.__pydantic_extra__ or {})

    def referenced(self) -> set[str]:
        out = set(self.fields())
        for sub in (self.any or []) + (self.all or []) + ([self.not_] if self.not_ else []):
            out |= sub.referenced()
        return out


class DecayStep(_Strict):
    after: Duration
    keep: float = Field(ge=0, le=1, description="share of the points kept once older than `after`")


class Decay(_Strict):
    steps: list[DecayStep] | None = None
    half_life: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Decay":
        if (self.steps is None) == (self.half_life is None):
            raise ValueError("decay takes either steps or half_life")
        if self.steps:
            self.steps = sorted(self.steps, key=lambda s: s.after)
        return self


class ResponseTime(_Strict):
    """How long after the matching reference (a sent e-mail) this event happened."""

    since_event: str | None = None
    match: str | None = Field(None, description="property that links the event to its reference, e.g. email_id")
    since_property: str | None = Field(None, description="property holding the reference time (ISO-8601)")

    @model_validator(mode="after")
    def _one_reference(self) -> "ResponseTime":
        if (self.since_event is None) == (self.since_property is None):
            raise ValueError("response_time takes either since_event (with match) or since_property")
        if self.since_event and not self.match:
            raise ValueError("response_time.since_event needs match: the property shared with the reference event")
        return self


class Band(_Strict):
    within: Duration
    factor: float


class Multiplier(_Strict):
    property: str | None = None
    values: dict[str, float] | None = None
    response_time: ResponseTime | None = None
    bands: list[Band] | None = None
    default: float = 1.0

    @model_validator(mode="after")
    def _one_kind(self) -> "Multiplier":
        by_prop = self.property is not None
        by_time = self.response_time is not None
        if by_prop == by_time:
            raise ValueError("a multiplier is either by property (property + values) or by response_time (+ bands)")
        if by_prop and not self.values:
            raise ValueError("values: map each property value to its factor")
        if by_time and not self.bands:
            raise ValueError("bands: list of {within, factor}")
        if self.bands:
            self.bands = sorted(self.bands, key=lambda b: b.within)
        return self


class PointsBand(_Strict):
    min: float
    points: float


class Aggregate(_Strict):
    """Counts, distinct counts, sums or maxima over the rule's matching events, against a threshold."""

    count: bool | None = None
    count_distinct: str | None = Field(None, description="a property/fact, or `day` for distinct days")
    sum: str | None = None
    max: str | None = None
    bucket: str | None = Field(None, description="the threshold must hold inside one bucket: `day` or a property")
    scale: float = 1.0
    min: float | None = None
    max_value: float | None = None

    @model_validator(mode="after")
    def _one_measure(self) -> "Aggregate":
        measures = [m for m in ("count", "count_distinct", "sum", "max") if getattr(self, m) not in (None, False)]
        if len(measures) != 1:
            raise ValueError("an aggregate takes exactly one of count, count_distinct, sum, max")
        return self

    @property
    def measure(self) -> tuple[str, str | None]:
        for m in ("count_distinct", "sum", "max"):
            if getattr(self, m):
                return m, getattr(self, m)
        return "count", None


class Inactivity(_Strict):
    after: Duration = Field(description="no matching event for this long before as-of")
    if_never: bool = Field(False, description="also apply to leads that never had a matching event")


class Rule(_Strict):
    name: str
    group: str
    description: str | None = None
    points: float = 0
    additional: float | None = Field(None, description="points for each occurrence after the first")
    per: str | None = Field(None, description="count first/additional per value of this property")
    max_count: int | None = Field(None, ge=1)
    cap: float | None = Field(None, ge=0, description="the most points (in absolute value) this rule gives")
    window: Duration | None = None
    decay: Decay | None = None
    multipliers: list[Multiplier] = []
    disqualify: bool = False

    # what the rule reads: exactly one of trait / event / page / type / video, plus where
    trait: Where | None = None
    event: str | list[str] | None = None
    page: str | None = Field(None, description="glob on the page path, e.g. /blog/*")
    type: MessageType | list[MessageType] | None = None
    video: bool | None = Field(None, description="read per-viewer video facts instead of events")
    where: Where | None = None

    aggregate: Aggregate | None = None
    bands: list[PointsBand] | None = None
    inactivity: Inactivity | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError(f"rule names are letters, digits and _ (starting with a letter), got {v!r}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "Rule":
        sources = [k for k in ("trait", "event", "page", "type", "video") if getattr(self, k) not in (None, False)]
        if self.trait is not None and len(sources) > 1:
            raise ValueError("a trait rule reads traits only: drop event/page/type/video")
        if not sources and self.inactivity is None:
            raise ValueError("say what the rule reads: trait, event, page, type or video")
        if self.trait is not None and (self.aggregate or self.inactivity or self.window or self.decay or self.multipliers or self.per):
            raise ValueError("window, decay, multipliers, per, aggregate and inactivity apply to event rules, not trait rules")
        if self.aggregate and self.inactivity:
            raise ValueError("a rule is either an aggregate or an inactivity rule, not both")
        if self.bands and not self.aggregate:
            raise ValueError("bands go with aggregate")
        if self.aggregate and (self.per or self.additional is not None or self.max_count or self.multipliers or self.decay):
            raise ValueError("an aggregate rule awards its points once: per, additional, max_count, multipliers and decay do not apply")
        return self

    @property
    def kind(self) -> Literal["trait", "event", "aggregate", "inactivity"]:
        if self.trait is not None:
            return "trait"
        if self.aggregate is not None:
            return "aggregate"
        if self.inactivity is not None:
            return "inactivity"
        return "event"

    @property
    def event_names(self) -> list[str]:
        if self.event is None:
            return []
        return [self.event] if isinstance(self.event, str) else list(self.event)


class Group(_Strict):
    axis: Literal["fit", "engagement"]
    cap: float | None = None
    floor: float | None = None
    description: str | None = None


class Axis(_Strict):
    cap: float | None = None
    floor: float | None = None


class Tier(_Strict):
    name: str
    min: float | None = None


class StageWhen(_Strict):
    score: Condition | None = None
    fit: Condition | None = None
    engagement: Condition | None = None
    groups: dict[str, Condition] | None = None
    trait: Where | None = None
    event: list[str] | None = Field(None, description="any of these events, ever (or within `within`)")
    within: Duration | None = None
    stage: str | None = Field(None, description="the lead also meets this (lower) stage's conditions")
    probability: Condition | None = Field(None, description="the predictive model's probability (see `leadscore train`)")

    @field_validator("event", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Stage(_Strict):
    name: str
    when: StageWhen | None = None


class GradeBand(_Strict):
    grade: str
    min: float | None = None


class Grades(_Strict):
    fit: list[GradeBand] = [GradeBand(grade="A", min=60), GradeBand(grade="B", min=40),
                            GradeBand(grade="C", min=20), GradeBand(grade="D")]
    engagement: list[GradeBand] = [GradeBand(grade="1", min=100), GradeBand(grade="2", min=60),
                                   GradeBand(grade="3", min=30), GradeBand(grade="4")]


class Alert(_Strict):
    """When the service notifies (webhook) about a lead."""

    name: str
    trigger: Literal["became_tier", "entered_stage", "score_jump", "high_intent"]
    tier: str | None = None
    stage: str | None = None
    points: float | None = Field(None, description="score_jump: rise of at least this many points ...")
    within: Duration | None = Field(None, description="... within this long")
    event: list[str] | None = None
    fit: Condition | None = None

    @field_validator("event", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _needs(self) -> "Alert":
        need = {"became_tier": "tier", "entered_stage": "stage", "score_jump": "points", "high_intent": "event"}[self.trigger]
        if getattr(self, need) is None:
            raise ValueError(f"an alert triggered by {self.trigger} needs {need}")
        if self.trigger == "score_jump" and self.within is None:
            self.within = timedelta(days=1)
        return self


class Junk(_Strict):
    """Lists behind the `is:` checks; extend them per model."""

    extra_disposable_domains: list[str] = []
    role_prefixes: list[str] = ["info", "sales", "admin", "support", "contact", "hello", "marketing", "office",
                                "noreply", "no-reply", "webmaster", "team", "hr", "jobs", "billing", "careers"]


class Model(_Strict):
    name: str
    version: str | None = None
    description: str | None = None
    axes: dict[Literal["fit", "engagement"], Axis] = {"fit": Axis(), "engagement": Axis()}
    groups: dict[str, Group]
    rules: list[Rule]
    tiers: list[Tier] = [Tier(name="cold"), Tier(name="warm", min=40), Tier(name="hot", min=100)]
    stages: list[Stage] = [Stage(name="subscriber"), Stage(name="lead")]
    disqualified_stage: str | None = Field(None, description="the highest stage a disqualified lead may hold")
    grades: Grades = Grades()
    alerts: list[Alert] = []
    junk: Junk = Junk()
    source_text: str | None = Field(None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _consistent(self) -> "Model":
        problems = []
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                problems.append(f"rules[{i}].name: {rule.name!r} is used by an earlier rule")
            seen.add(rule.name)
            if rule.group not in self.groups:
                problems.append(f"rules[{i}].group: {rule.group!r} is not one of the groups ({', '.join(self.groups)})")
            if rule.kind == "trait" and self.groups.get(rule.group) and self.groups[rule.group].axis != "fit":
                pass  # a trait rule may feed engagement (e.g. a CRM-imported activity count): allowed
        if self.tiers and self.tiers[0].min is not None:
            problems.append("tiers[0].min: the first (lowest) tier takes no min")
        mins = [t.min for t in self.tiers[1:]]
        if any(m is None for m in mins) or mins != sorted(mins):
            problems.append("tiers: list tiers from lowest to highest, each after the first with a larger min")
        stage_names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            if stage.when and stage.when.stage and stage.when.stage not in stage_names[:i]:
                problems.append(f"stages[{i}].when.stage: {stage.when.stage!r} is not a lower stage")
            if stage.when and stage.when.groups:
                for g in stage.when.groups:
                    if g not in self.groups:
                        problems.append(f"stages[{i}].when.groups: unknown group {g!r}")
        if self.disqualified_stage and self.disqualified_stage not in stage_names:
            problems.append(f"disqualified_stage: {self.disqualified_stage!r} is not a stage")
        for i, alert in enumerate(self.alerts):
            if alert.tier and alert.tier not in [t.name for t in self.tiers]:
                problems.append(f"alerts[{i}].tier: {alert.tier!r} is not a tier")
            if alert.stage and alert.stage not in stage_names:
                problems.append(f"alerts[{i}].stage: {alert.stage!r} is not a stage")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # ---- helpers
    @property
    def model_version(self) -> str:
        """The declared version, else name@<content hash>: any edit gives a new version."""
        if self.version:
            return self.version
        text = self.source_text or self.model_dump_json(by_alias=True)
        return f"{self.name}@{_content_hash(text)}"

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def tier_for(self, score: float) -> str:
        name = self.tiers[0].name
        for tier in self.tiers[1:]:
            if tier.min is not None and score >= tier.min:
                name = tier.name
        return name

    def next_tier(self, score: float) -> Tier | None:
        for tier in self.tiers[1:]:
            if tier.min is not None and score < tier.min:
                return tier
        return None


Where.model_rebuild()
