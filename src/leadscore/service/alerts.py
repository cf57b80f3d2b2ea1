"""Alert rules of the model (``alerts:``) applied to score changes: pure functions, then storage.

``evaluate`` turns the score changes of one re-score (``leadscore.engine.ScoreChange``), the events of
the batch that caused it and a little context (each lead's lowest score in the score_jump window, the
current scores of leads with high-intent events) into ``AlertRecord``s. It reads no database and no
clock, so the rules are tested on plain values. ``store_alerts`` writes them to the ``alerts`` table
(migration 0010) and enqueues each as a webhook in the outbox, in one transaction on the connection it
is given (``leadscore.service.live`` passes the transaction that also enqueues the CRM sync items).

Triggers (``leadscore.model.schema.Alert``):
- ``became_tier``: the lead enters ``tier`` from a lower tier (or is scored for the first time in it);
- ``entered_stage``: the lead enters ``stage`` from a lower stage (or first scored in it);
- ``score_jump``: the score is at least ``points`` above the lowest score the lead held during the
  last ``within`` (a lead unknown before counts from 0), and this change is the one that crossed that
  line (so a lead that stays high does not alert on every event);
- ``high_intent``: one of ``event`` arrived in the batch for a lead whose fit meets ``fit`` (one alert
  per such event, whether or not the score moved).
Alert ids are deterministic (rule, lead, instant, cause), so re-running a re-score re-emits nothing.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from leadscore.engine.current import ScoreChange
from leadscore.model.conditions import Condition
from leadscore.model.schema import Alert, Model

#: Webhook event types by trigger (``became_tier`` adds the tier: ``lead.became_hot``).
TYPES = {"entered_stage": "lead.stage_changed", "score_jump": "lead.score_jumped", "high_intent": "lead.high_intent"}


@dataclass(frozen=True)
class BatchEvent:
    """One event of the ingested batch, resolved to its lead."""
    message_id: str
    lead_id: str
    event: str | None       # track event name (page/identify/...: None)
    type: str
    ts: datetime


_DETAIL = json.JSONEncoder(default=str)  # json.dumps(detail, default=str), its encoder built once


@dataclass
class AlertRecord:
    alert_id: str
    lead_id: str
    name: str
    trigger: str
    type: str
    fired_at: datetime
    model_version: str
    score: float | None
    prev_score: float | None
    tier: str | None
    prev_tier: str | None
    stage: str | None
    prev_stage: str | None
    cause: str
    cause_ref: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> tuple:
        return (self.alert_id, self.lead_id, self.name, self.trigger, self.type, self.fired_at, self.model_version,
                self.score, self.prev_score, self.tier, self.prev_tier, self.stage, self.prev_stage, self.cause,
                self.cause_ref, _DETAIL.encode(self.detail))

    def payload(self) -> dict[str, Any]:
        """The webhook's ``data``: ids and numbers only (a thin payload)."""
        out = {"alert": self.name, "trigger": self.trigger, "lead_id": self.lead_id, "model_version": self.model_version,
               "score": self.score, "prev_score": self.prev_score, "tier": self.tier, "prev_tier": self.prev_tier,
               "stage": self.stage, "prev_stage": self.prev_stage, "cause": self.cause}
        out.update(self.detail)
        return out


ALERT_COLUMNS = ("alert_id", "lead_id", "name", "trigger", "type", "fired_at", "model_version", "score", "prev_score",
                 "tier", "prev_tier", "stage", "prev_stage", "cause", "cause_ref", "detail")


def alert_type(alert: Alert) -> str:
    if alert.trigger == "became_tier":
        return "lead.became_" + re.sub(r"[^a-zA-Z0-9_]", "_", alert.tier or "tier")
    return TYPES[alert.trigger]


def _alert_id(*parts: Any) -> str:
    return "alr_" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def condition_holds(cond: Condition | None, value: float | None) -> bool:
    """A model condition on a number (the fit score). Only numeric operators can hold for a number;
    a text operator (glob, regex, is, ...) on fit never holds."""
    if cond is None:
        return True
    if cond.exists is not None and (value is not None) != cond.exists:
        return False
    if value is None:
        return cond.exists is False
    checks = {
        "eq": lambda c: value == c, "ne": lambda c: value != c,
        "in_": lambda c: value in [x for x in c if isinstance(x, (int, float))],
        "not_in": lambda c: value not in [x for x in c if isinstance(x, (int, float))],
        "gt": lambda c: value > c, "gte": lambda c: value >= c, "lt": lambda c: value < c, "lte": lambda c: value <= c,
        "between": lambda c: c[0] <= value <= c[1],
    }
    for op in ("contains", "prefix", "glob", "regex", "is_", "is_not"):
        if getattr(cond, op) is not None:
            return False
    for op, check in checks.items():
        target = getattr(cond, op)
        if target is not None and not check(target):
            return False
    return True


def _rank(names: Sequence[str], name: str | None) -> int:
    return names.index(name) if name in names else -1


def score_jump_since(alert: Alert, at: datetime) -> datetime:
    return at - (alert.within or timedelta(days=1))


def evaluate(model: Model, changes: Iterable[ScoreChange], events: Iterable[BatchEvent] = (), *,
             window_low: Mapping[tuple[str, str], float] | None = None,
             current: Mapping[str, Mapping[str, Any]] | None = None) -> list[AlertRecord]:
    """The alerts the model's rules raise for these changes and batch events.

    ``window_low[(alert name, lead)]``: the lowest score the lead held in the alert's window before this
    change (see ``score_jump_since``; a lead not scored at the window's start counts 0 there); missing =
    the score did not move in the window before this change (its previous score, or 0 for a new lead).
    ``current[lead]``: the lead's live score row (score, fit, tier, stage, ...) for high-intent checks
    of leads whose score did not change (a changed lead's values come from its change).
    """
    changes = list(changes)
    events = list(events)
    window_low = window_low or {}
    current = current or {}
    tiers = [t.name for t in model.tiers]
    stages = [s.name for s in model.stages]
    version = model.model_version
    out: list[AlertRecord] = []
    by_lead = {c.lead_id: c for c in changes}
    for alert in model.alerts:
        kind = alert_type(alert)
        if alert.trigger in ("became_tier", "entered_stage", "score_jump"):
            for c in changes:
                detail: dict[str, Any] = {}
                if alert.trigger == "became_tier":
                    fired = c.tier == alert.tier and c.prev_tier != c.tier and _rank(tiers, c.prev_tier) < _rank(tiers, c.tier)
                elif alert.trigger == "entered_stage":
                    fired = c.stage == alert.stage and c.prev_stage != c.stage and _rank(stages, c.prev_stage) < _rank(stages, c.stage)
                else:
                    before = c.prev_score if c.prev_score is not None else 0.0
                    low = min(window_low.get((alert.name, c.lead_id), before), before)
                    fired = c.score - low >= alert.points and before - low < alert.points
                    if fired:   # (built only for the alerts raised: most changes of a batch raise none)
                        detail = {"rise": round(c.score - low, 4),
                                  "within_seconds": (alert.within or timedelta(days=1)).total_seconds()}
                if fired:
                    out.append(AlertRecord(_alert_id(alert.name, c.lead_id, c.at.isoformat(), c.cause, c.cause_ref),
                                           c.lead_id, alert.name, alert.trigger, kind, c.at, version, c.score, c.prev_score,
                                           c.tier, c.prev_tier, c.stage, c.prev_stage, c.cause, c.cause_ref, detail))
        else:  # high_intent
            wanted = set(alert.event or [])
            for ev in events:
                if ev.event not in wanted:
                    continue
                c = by_lead.get(ev.lead_id)
                if c is not None:
                    row = {"score": c.score, "fit": c.fit, "tier": c.tier, "stage": c.stage, "prev_score": c.prev_score,
                           "prev_tier": c.prev_tier, "prev_stage": c.prev_stage, "at": c.at}
                else:
                    row = dict(current.get(ev.lead_id) or {})
                    if not row:
                        continue  # not a scored lead (an anonymous visitor nobody identified)
                if not condition_holds(alert.fit, row.get("fit")):
                    continue
                at = c.at if c is not None else row.get("at") or ev.ts
                out.append(AlertRecord(_alert_id(alert.name, ev.lead_id, ev.message_id), ev.lead_id, alert.name,
                                       alert.trigger, kind, at, version, row.get("score"), row.get("prev_score"),
                                       row.get("tier"), row.get("prev_tier"), row.get("stage"), row.get("prev_stage"),
                                       "event", ev.message_id, {"event": ev.event, "message_id": ev.message_id,
                                                                "fit": row.get("fit")}))
    return out


def store_alerts(conn: Any, store, records: Sequence[AlertRecord], *, now: datetime) -> int:
    """Write alert records (ignoring ids already stored) and enqueue each as a webhook, on ``conn`` (an
    open transaction of ``store``). Returns how many were new."""
    from leadscore.service import outbox

    if not records:
        return 0
    ids = list(dict.fromkeys(r.alert_id for r in records))
    known = {r[0] for r in store._fetch_in(conn, "SELECT alert_id FROM alerts WHERE alert_id IN {ids}", ids)}
    fresh, seen = [], set()
    for r in records:
        if r.alert_id in known or r.alert_id in seen:
            continue
        seen.add(r.alert_id)
        fresh.append(r)
    if not fresh:
        return 0
    if store.dialect.name == "duckdb" and len(fresh) > 1:
        _insert_duckdb(conn, fresh)
    else:
        store._bulk_insert(conn, "alerts", ALERT_COLUMNS, [r.row() for r in fresh], conflict="plain")
    outbox.enqueue_alerts(outbox.Sql(conn, store), [outbox.Alert(r.type, r.payload(), r.lead_id, r.fired_at, r.alert_id)
                                                   for r in fresh], now=now)
    return len(fresh)


_TYPES = {"fired_at": pa.timestamp("us"), "score": pa.float64(), "prev_score": pa.float64()}


def _insert_duckdb(conn: Any, records: Sequence[AlertRecord]) -> None:
    """The rows ``AlertRecord.row`` gives, staged a column at a time (no row tuples to transpose)."""
    table = pa.table({**{c: pa.array([getattr(r, c) for r in records], _TYPES.get(c, pa.string()))
                         for c in ALERT_COLUMNS[:-1]},
                      "detail": pa.array([_DETAIL.encode(r.detail) for r in records], pa.string())})
    conn.register("_ls_alerts", table)
    try:
        conn.execute(f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) SELECT {', '.join(ALERT_COLUMNS)} FROM _ls_alerts")
    finally:
        conn.unregister("_ls_alerts")


def as_dict(record: AlertRecord) -> dict[str, Any]:
    return asdict(record)
