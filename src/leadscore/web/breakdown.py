"""The lead page's "why this score": the engine's explanation laid out by axis, group and rule, with
the caps and floors that cut points shown as their own lines, so the lines add up to the score."""
from __future__ import annotations

import json
from typing import Any

from leadscore.model.schema import Model

_EPS = 1e-6


def _label(rule_or_group: str) -> str:
    return rule_or_group.replace("_", " ")


def build(explanation: dict[str, Any], model: Model) -> dict[str, Any]:
    """``{"axes": [{"axis", "value", "groups": [{"group", "value", "rules": [...], "adjust"}], "adjust"}],
    "score", "lines"}``; ``lines`` is every number shown (rules and adjustments), summing to the score."""
    rules_by_group: dict[str, list[dict]] = {}
    for r in explanation["rules"]:
        rules_by_group.setdefault(r["group"], []).append(r)
    axes, lines = [], []
    for axis in ("fit", "engagement"):
        groups = []
        for name, group in model.groups.items():
            if group.axis != axis:
                continue
            rules = sorted(rules_by_group.get(name, []), key=lambda r: -abs(r["points"]))
            value = float(explanation["groups"].get(name, 0.0))
            if not rules and abs(value) < _EPS:
                continue
            raw = sum(float(r["points"]) for r in rules)
            adjust = round(value - raw, 4)
            why = None
            if abs(adjust) > _EPS:
                why = (f"group cap {group.cap:g}" if group.cap is not None and raw > value
                       else f"group floor {group.floor:g}" if group.floor is not None and raw < value else "rounding")
                lines.append(adjust)
            lines += [float(r["points"]) for r in rules]
            groups.append({"group": name, "label": _label(name), "value": value, "cap": group.cap, "rules": rules,
                           "adjust": adjust if why else None, "why": why, "description": group.description})
        value = float(explanation[axis])
        raw = sum(g["value"] for g in groups)
        adjust = round(value - raw, 4)
        axis_cfg = model.axes.get(axis)
        why = None
        if abs(adjust) > _EPS:
            if axis_cfg is not None and axis_cfg.cap is not None and raw > value:
                why = f"{axis} cap {axis_cfg.cap:g}"
            elif axis_cfg is not None and axis_cfg.floor is not None and raw < value:
                why = f"{axis} floor {axis_cfg.floor:g}"
            else:
                why = "rounding"
            lines.append(adjust)
        axes.append({"axis": axis, "value": value, "groups": groups, "adjust": adjust if why else None, "why": why})
    return {"axes": axes, "score": float(explanation["score"]), "lines": lines}


def describe_event(row: dict[str, Any]) -> str:
    """A short line for an event behind a rule or in the timeline: its name and telling properties."""
    props = row.get("properties") or {}
    if isinstance(props, str):
        try:
            props = json.loads(props)
        except ValueError:
            props = {}
    kind = row.get("type")
    name = row.get("event") or row.get("name") or kind
    bits = []
    if kind == "page":
        name = "Page " + str(props.get("path") or props.get("url") or row.get("name") or "")
        if props.get("title"):
            bits.append(str(props["title"]))
    if props.get("asset_id") == props.get("content_asset_id"):
        props = {k: v for k, v in props.items() if k != "asset_id"}
    for key in ("campaign_type", "email_id", "content_asset_id", "asset_id", "position", "cta_type", "feature",
                "resource_type", "network", "action", "time_on_page"):
        if key in props and props[key] not in (None, ""):
            bits.append(f"{key}={props[key]}")
    if kind in ("identify", "group") and isinstance(props, dict):
        bits.append(", ".join(f"{k}={v}" for k, v in list(props.items())[:4]))
    return f"{name}" + (f" · {' · '.join(bits[:4])}" if bits else "")
