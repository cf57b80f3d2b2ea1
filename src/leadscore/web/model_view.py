"""The Model page's helpers: rules in words, version diffs, a new version with other tier thresholds,
and the conversion rate by score band (when outcomes are known)."""
from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Any

import yaml

from leadscore.model import parse_model
from leadscore.model.conditions import Condition
from leadscore.model.schema import Model, Rule, Where

_OPS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "in_": "in", "not_in": "not in",
        "contains": "contains", "prefix": "starts with", "glob": "matches", "regex": "matches /…/",
        "exists": "exists", "is_": "is", "is_not": "is not", "between": "between"}


def duration(td: timedelta | None) -> str:
    if td is None:
        return ""
    s = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def condition(field: str, cond: Condition) -> str:
    parts = []
    for key, op in _OPS.items():
        value = getattr(cond, key)
        if value is None:
            continue
        if key == "exists":
            parts.append(f"{field} {'exists' if value else 'is missing'}")
        elif key == "regex":
            parts.append(f"{field} matches /{value}/{'i' if cond.ignore_case else ''}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{field} {op} {', '.join(map(str, value))}")
        else:
            parts.append(f"{field} {op} {value}")
    return " and ".join(parts)


def where(w: Where | None) -> str:
    if w is None:
        return ""
    parts = [condition(k, c) for k, c in w.fields().items()]
    if w.any:
        parts.append("(" + " or ".join(where(x) for x in w.any) + ")")
    if w.all:
        parts.append("(" + " and ".join(where(x) for x in w.all) + ")")
    if w.not_:
        parts.append(f"not ({where(w.not_)})")
    return " and ".join(p for p in parts if p)


def reads(rule: Rule) -> str:
    """What the rule reads, in words."""
    if rule.trait is not None:
        return f"trait: {where(rule.trait)}"
    bits = []
    if rule.event is not None:
        bits.append("event " + " or ".join(rule.event_names))
    if rule.page is not None:
        bits.append(f"page {rule.page}")
    if rule.type is not None:
        bits.append("type " + (rule.type if isinstance(rule.type, str) else " or ".join(rule.type)))
    if rule.video:
        bits.append("video facts")
    if rule.inactivity is not None and not bits:
        bits.append("any activity")
    text = ", ".join(bits)
    if rule.where is not None:
        text += f" where {where(rule.where)}"
    return text


def terms(rule: Rule) -> list[str]:
    """How the points are given: repeats, windows, decay, caps, multipliers, aggregates."""
    out = []
    if rule.additional is not None:
        out.append(f"{rule.additional:+g} for each further one" + (f" per {rule.per}" if rule.per else ""))
    elif rule.per:
        out.append(f"once per {rule.per}")
    if rule.max_count:
        out.append(f"at most {rule.max_count}×")
    if rule.window:
        out.append(f"within {duration(rule.window)}")
    if rule.decay is not None:
        if rule.decay.half_life:
            out.append(f"half-life {duration(rule.decay.half_life)}")
        else:
            out.append("decay " + ", ".join(f"keep {s.keep:g} after {duration(s.after)}" for s in rule.decay.steps or []))
    if rule.cap is not None:
        out.append(f"rule cap {rule.cap:g}")
    for m in rule.multipliers:
        if m.property:
            out.append(f"× by {m.property} (" + ", ".join(f"{k} {v:g}" for k, v in (m.values or {}).items()) + ")")
        else:
            out.append("× by response time (" + ", ".join(f"≤{duration(b.within)} {b.factor:g}" for b in m.bands or []) + ")")
    if rule.aggregate is not None:
        a = rule.aggregate
        measure, field = a.measure
        text = f"{measure}{'(' + field + ')' if field else ''}"
        if a.bucket:
            text += f" per {a.bucket}"
        if a.min is not None:
            text += f" ≥ {a.min:g}"
        out.append(text)
    if rule.bands:
        out.append("bands " + ", ".join(f"≥{b.min:g}: {b.points:g}" for b in rule.bands))
    if rule.inactivity is not None:
        out.append(f"after {duration(rule.inactivity.after)} without activity" + (" (also if never)" if rule.inactivity.if_never else ""))
    if rule.disqualify:
        out.append("disqualifies")
    return out


def stage_text(when) -> str:
    """A stage's conditions in words: ``lead and fit ≥ 20 and engagement ≥ 60``."""
    if when is None:
        return "everyone"
    parts = []
    if when.stage:
        parts.append(f"is {when.stage}")
    for field in ("score", "fit", "engagement", "probability"):
        cond = getattr(when, field)
        if cond is not None:
            parts.append(condition(field, cond))
    for group, cond in (when.groups or {}).items():
        parts.append(condition(f"group {group}", cond))
    if when.trait is not None:
        parts.append(where(when.trait))
    if when.event:
        parts.append("did " + " or ".join(when.event) + (f" within {duration(when.within)}" if when.within else ""))
    return " and ".join(parts)


def rules_table(model: Model) -> list[dict[str, Any]]:
    return [{"name": r.name, "group": r.group, "axis": model.groups[r.group].axis, "kind": r.kind, "points": r.points,
             "reads": reads(r), "terms": terms(r), "description": r.description} for r in model.rules]


def source_of(model: Model) -> str:
    return model.source_text or yaml.safe_dump(model.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False)


def text_diff(a: Model, b: Model) -> list[tuple[str, str]]:
    """Unified diff of two versions' files as (kind, line): kind add / del / hunk / same."""
    out = []
    for line in difflib.unified_diff(source_of(a).splitlines(), source_of(b).splitlines(),
                                     a.model_version, b.model_version, lineterm="", n=2):
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") else "del" if line.startswith("-") else "same"
        out.append((kind, line))
    return out


def rule_diff(a: Model, b: Model) -> list[dict[str, Any]]:
    """Rules added, removed or changed (points or definition), and tier threshold changes."""
    ra = {r.name: r for r in a.rules}
    rb = {r.name: r for r in b.rules}
    out = []
    for name in list(ra) + [n for n in rb if n not in ra]:
        x, y = ra.get(name), rb.get(name)
        if x is None:
            out.append({"what": "added", "name": name, "before": None, "after": f"{y.points:g} · {reads(y)}"})
        elif y is None:
            out.append({"what": "removed", "name": name, "before": f"{x.points:g} · {reads(x)}", "after": None})
        elif x.model_dump() != y.model_dump():
            out.append({"what": "changed", "name": name, "before": f"{x.points:g} · {reads(x)} · {'; '.join(terms(x))}",
                        "after": f"{y.points:g} · {reads(y)} · {'; '.join(terms(y))}"})
    ta = [(t.name, t.min) for t in a.tiers]
    tb = [(t.name, t.min) for t in b.tiers]
    if ta != tb:
        fmt = lambda ts: ", ".join(n if m is None else f"{n} ≥ {m:g}" for n, m in ts)  # noqa: E731
        out.append({"what": "tiers", "name": "tiers", "before": fmt(ta), "after": fmt(tb)})
    return out


def with_thresholds(model: Model, thresholds: dict[str, float]) -> Model:
    """A new model version: the same file with other tier minimums (the version becomes the new
    content's hash; a declared ``version`` is dropped so the two can never be confused)."""
    data = yaml.safe_load(source_of(model))
    tiers = []
    for i, t in enumerate(model.tiers):
        entry = {"name": t.name}
        if i > 0:
            entry["min"] = float(thresholds.get(t.name, t.min))
        tiers.append(entry)
    data["tiers"] = tiers
    data.pop("version", None)
    header = f"# Derived from {model.model_version}: tier thresholds set in the dashboard.\n"
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return parse_model(text, f"{model.model_version} (new thresholds)")


def conversion_by_band(store, band: float = 20.0) -> list[dict[str, Any]]:
    """Share of leads with a known outcome that converted (won), per band of their current score.
    Empty when no outcomes are known (no Opportunity Won/Lost events, no imported outcomes)."""
    from leadscore.learn.labels import load_labels

    labels = load_labels(store, "converted")
    if labels.empty:
        return []
    scores = dict(store.query("SELECT lead_id, score FROM lead_scores"))
    bands: dict[int, list[int]] = {}
    for lead, label in zip(labels["lead_id"], labels["label"]):
        s = scores.get(lead)
        if s is None:
            continue
        b = int(float(s) // band)
        bands.setdefault(b, [0, 0])
        bands[b][0] += 1
        bands[b][1] += int(label)
    return [{"from": b * band, "to": (b + 1) * band, "leads": n, "won": w, "rate": w / n}
            for b, (n, w) in sorted(bands.items())]


def parse_thresholds(model: Model, values: dict[str, str]) -> dict[str, float]:
    """``{"warm": "40", "hot": "100"}`` from a form/query → floats for the model's tiers (others kept)."""
    from leadscore.web.session import PageError

    out: dict[str, float] = {}
    for t in model.tiers[1:]:
        raw = values.get(f"t_{t.name}")
        if raw is None or str(raw).strip() == "":
            out[t.name] = float(t.min)
            continue
        try:
            v = float(raw)
        except ValueError:
            raise PageError(422, f"t_{t.name}: expected a number, got {raw!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise PageError(422, f"t_{t.name}: expected a finite number")
        out[t.name] = v
    prev = None
    for t in model.tiers[1:]:
        if prev is not None and out[t.name] <= prev[1]:
            raise PageError(422, f"t_{t.name}: must be above {prev[0]}'s minimum ({prev[1]:g})")
        prev = (t.name, out[t.name])
    return out

