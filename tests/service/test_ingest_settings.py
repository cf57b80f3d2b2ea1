"""Service settings: defaults match INGEST.md's limits; LEADSCORE_* variables override them, typed."""
from pathlib import Path

from leadscore.service.settings import Settings


def test_defaults_follow_the_ingest_spec():
    s = Settings()
    assert (s.max_message_bytes, s.max_request_bytes, s.strict_fields) == (32 * 1024, 4 * 1024 * 1024 + 64 * 1024, True)
    assert s.rate_for("write") == (5000.0, 10000.0)


def test_environment_overrides_are_typed_and_keywords_win():
    env = {"LEADSCORE_MAX_GROUP_EVENTS": "1", "LEADSCORE_DEMO": "yes", "LEADSCORE_CORS_ORIGINS": "https://a.io, https://b.io",
           "LEADSCORE_TRACKER_DIR": "/srv/js", "LEADSCORE_WRITE_RATE": "2.5", "LEADSCORE_RETRY_AFTER_SECONDS": "9"}
    s = Settings.from_env(env, retry_after_seconds=3)
    assert (s.max_group_events, s.demo, s.cors_origins) == (1, True, ("https://a.io", "https://b.io"))
    assert (s.tracker_dir, s.write_rate, s.retry_after_seconds) == (Path("/srv/js"), 2.5, 3)
