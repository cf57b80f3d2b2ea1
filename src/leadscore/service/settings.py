"""How the HTTP service is configured: limits, queue sizes, rate limits and where static files live.

Plain constructor arguments (one frozen dataclass) so tests, the CLI and embedding code build the
service the same way; ``Settings.from_env()`` reads ``LEADSCORE_*`` overrides for deployments.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

_VIDEO_STATIC = Path(__file__).resolve().parent.parent / "video" / "static"


@dataclass(frozen=True)
class Settings:
    # ---- request limits (INGEST.md: 32 KB per message; ≥ 4 MiB per request or the Rudder SDK breaks)
    max_message_bytes: int = 32 * KIB
    # After inflation (the compressed body has the same cap). The Rudder SDK closes a batch once it has
    # reached 4 MiB, so its batches run over by up to one message (≤ 32 KB here) plus the envelope.
    max_request_bytes: int = 4 * MIB + 64 * KIB
    max_batch_items: int = 10_000
    max_depth: int = 32                       # JSON nesting inside one message
    max_string_chars: int = 16 * KIB          # any one string value or key
    # Refuse top-level message fields outside the Segment spec + what the Segment/Rudder SDKs send.
    # Free-form objects (context, properties, traits, integrations) are never checked.
    strict_fields: bool = True

    # ---- group commit
    max_pending_events: int = 60_000          # queued, not yet committed; beyond it: 503 + Retry-After
    max_group_events: int = 20_000            # events committed in one transaction at most
    retry_after_seconds: int = 1              # what a 503 tells clients to wait
    inline_parse_bytes: int = 64 * KIB        # larger bodies are parsed in a worker thread
    # In `leadscore serve`'s ingestion process: bodies at least this large are parsed and validated by
    # its validation process (service/validator.py), off its GIL; 0 turns that process off.
    validator_bytes: int = 16 * KIB
    # The durable ingestion log (service/ingest_log.py): "" acknowledges a request once the store has
    # committed it (read-your-writes: what tests and embedding code built with Settings() get);
    # a path acknowledges once the request is fsynced in a log there and applies the log to the
    # store behind it (much faster); "auto" (what Settings.from_env(), thus `leadscore serve`,
    # defaults to) puts it beside a DuckDB file (<file>.ingest-log) or, for PostgreSQL, under
    # $XDG_STATE_HOME/leadscore/ (one log per server process).
    ingest_log: str = ""
    # With the log: the store transactions start at least this far apart (seconds), so a stream of
    # small requests is stored in a few larger transactions; it adds at most this much to freshness.
    apply_interval_seconds: float = 0.1
    # With the log, `leadscore serve` answers /v1/* from a separate ingestion process (service/frontend.py)
    # so requests never wait for the GIL held by store work; False: everything in one process.
    ingest_process: bool = True
    max_inflight_bytes: int = 64 * MIB        # request bodies being validated at once (bounded memory)

    # ---- keys
    key_refresh_seconds: float = 1.0          # revocations made by another process apply within this
    # Default per-key token buckets (requests/second, burst); a key may carry its own.
    write_rate: float = 5_000.0
    write_burst: float = 10_000.0
    read_rate: float = 100.0
    read_burst: float = 200.0
    admin_rate: float = 100.0
    admin_burst: float = 200.0

    # ---- surfaces
    demo: bool = False                        # read endpoints open to loopback clients without a key
    tracker_dir: Path = _VIDEO_STATIC         # served at /tracker/
    cors_origins: tuple[str, ...] = ("*",)    # who may call /v1/* from a browser (trackers on customer sites)

    def rate_for(self, role: str) -> tuple[float, float]:
        return {"write": (self.write_rate, self.write_burst),
                "read": (self.read_rate, self.read_burst),
                "admin": (self.admin_rate, self.admin_burst)}[role]

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """``LEADSCORE_MAX_PENDING_EVENTS=50000`` etc. override the defaults; keyword overrides win.
        A deployment gets the durable ingestion log unless ``LEADSCORE_INGEST_LOG`` says otherwise
        (``off`` or empty: acknowledge after the store's commit)."""
        return cls(**{"ingest_log": "auto", **env_overrides(cls, environ), **overrides})


def env_overrides(cls, environ: dict[str, str] | None = None, prefix: str = "LEADSCORE_") -> dict:
    """Values for a settings dataclass from ``{prefix}{FIELD_NAME}`` variables, typed by the defaults
    (bool: 1/true/yes/on; int, float, Path; tuple: comma-separated)."""
    env = os.environ if environ is None else environ
    values = {}
    for f in fields(cls):
        raw = env.get(f"{prefix}{f.name.upper()}")
        if raw is None:
            continue
        default = getattr(cls, f.name)
        if isinstance(default, bool):
            values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
        elif isinstance(default, (int, float)):
            values[f.name] = type(default)(raw)
        elif isinstance(default, Path):
            values[f.name] = Path(raw)
        elif isinstance(default, tuple):
            values[f.name] = tuple(x.strip() for x in raw.split(",") if x.strip())
        else:
            values[f.name] = raw
    return values
