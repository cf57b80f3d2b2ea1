"""Why a lead has its score: every rule that fired, its points and the events behind them, and
what the lead needs for the next tier. Computed by the same compiled query as the score."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from leadscore.engine.compile import Sources, compile_model, scoped_sources
from leadscore.engine.score import lead_scope, score_leads, to_naive_utc
from leadscore.model.schema import Model
from leadscore.store import Store


class UnknownLead(KeyError):
    pass


def explain_lead(store: Store, model: Model, lead: str, as_of: datetime,
                 sources: Sources | None = None) -> dict[str, Any]:
    """The explanation object (the CLI's --json and the API's lead endpoint return it as is)."""
    as_of = to_naive_utc(as_of)
    scope = lead_scope(store, [lead]) if sources is None else None   # the lead's own ids: read once
    frame = score_leads(store, model, as_of, leads=[lead], sources=sources, scope=scope)
    if frame.empty:
        raise UnknownLead(f"no lead {lead!r} in the store")
    row = frame.iloc[0]
    occ = store.query_analytic(compile_model(model, store.dialect, as_of, leads=[lead], sources=sources, explain=True,
                                             scope=scope).sql).to_pylist()
    by_rule: dict[int, list[dict]] = defaultdict(list)
    for o in occ:
        by_rule[int(o["rule_idx"])].append(o)
    traits = _traits(store, lead, scope or lead_scope(store, [lead]))
    rules = []
    for i, rule in enumerate(model.rules):
        points = float(row[f"rule:{rule.name}"])
        hits = int(row[f"hits:{rule.name}"])
        if hits == 0:
            continue
        events = [o for o in by_rule.get(i, [])]
        item = {
            "rule": rule.name, "group": rule.group, "axis": model.groups[rule.group].axis, "kind": rule.kind,
            "points": points, "hits": hits, "description": rule.description,
            "events": [o["message_id"] for o in events if o["message_id"] is not None],
            "occurrences": [{"message_id": o["message_id"], "ts": o["ts"].isoformat() if o["ts"] else None,
                             "points": round(float(o["pts"]), 4)} for o in events],
        }
        if rule.kind == "trait":  # the values that made a fit rule fire
            item["traits"] = {k: traits.get(k) for k in sorted(rule.trait.referenced())}
        rules.append(item)
    score = float(row["score"])
    nxt = model.next_tier(score)
    return {
        "lead": lead,
        "as_of": as_of.isoformat(),
        "model_version": model.model_version,
        "score": score,
        "fit": float(row["fit"]),
        "engagement": float(row["engagement"]),
        "tier": row["tier"],
        "stage": row["stage"],
        "grade": row["grade"],
        "disqualified": bool(row["disqualified"]),
        "probability": None if row["probability"] != row["probability"] else float(row["probability"]),
        "groups": {g: float(row[f"group:{g}"]) for g in model.groups},
        "rules": rules,
        "next_tier": _next_tier(model, row, nxt),
    }


def _traits(store: Store, lead: str, ids: list[str]) -> dict[str, str | None]:
    """The lead's traits, with its account's as ``account.<key>``: the engine's scoped ``resolved_traits``
    over the lead's own ids (the view itself ranks every lead's traits before it can filter)."""
    ctes = scoped_sources(store.dialect, ids)
    sql = "WITH " + ", ".join(f"{name} AS ({q})" for name, q in ctes) + " SELECT key, value FROM s_traits WHERE lead_id = ?"
    out = dict(store.query(sql, (lead,)))
    if out.get("account_id"):
        for key, value in store.query("SELECT key, value FROM account_traits WHERE account_id = ?", (out["account_id"],)):
            out[f"account.{key}"] = value
    return out


def _next_tier(model: Model, row, nxt) -> dict[str, Any] | None:
    """Points still missing for the next tier, and the unfired rules (in groups below their cap)
    that would cover them, biggest first."""
    if nxt is None:
        return None
    missing = round(float(nxt.min) - float(row["score"]), 4)
    suggestions = []
    for rule in model.rules:
        if rule.points <= 0 or rule.kind == "inactivity" or int(row[f"hits:{rule.name}"]) > 0:
            continue
        group = model.groups[rule.group]
        room = None if group.cap is None else group.cap - float(row[f"group:{rule.group}"])
        gain = rule.points if room is None else min(rule.points, max(room, 0))
        if gain > 0:
            suggestions.append({"rule": rule.name, "group": rule.group, "points": gain, "description": rule.description})
    suggestions.sort(key=lambda s: -s["points"])
    return {"tier": nxt.name, "at": nxt.min, "missing": missing, "suggestions": suggestions[:5]}
