"""Parsing the --as-of instant: a date (midnight UTC) or an ISO-8601 time. The clock is read here,
at the surface, and passed down; the engine never reads it."""
from __future__ import annotations

from datetime import datetime, timezone

import click


class AsOf(click.ParamType):
    name = "INSTANT"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        if value in (None, "", "now"):
            return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"expected a date (2026-04-10) or an ISO-8601 time (2026-04-10T12:00:00Z), got {value!r}", param, ctx)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        return parsed


AS_OF = AsOf()
commands: list = []
