"""Trait values as the store keeps them: flattened keys and the browser named from a user agent."""
from __future__ import annotations

from typing import Any

from ua_parser import parse as _parse_ua  # the maintained uap-core rules; no hand-written UA regexes


def flatten_traits(traits: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'company': {'industry': 'SaaS'}} → {'company.industry': 'SaaS'}; lists stay whole."""
    out: dict[str, Any] = {}
    for key, value in (traits or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_traits(value, name + "."))
        else:
            out[name] = value
    return out


def browser_of(user_agent: str) -> str:
    """The browser family of a user agent ("Chrome", "Firefox", "IE", ...); "Other" if unknown."""
    result = _parse_ua(user_agent[:2000])
    family = result.user_agent.family if result and result.user_agent else None
    return family or "Other"
