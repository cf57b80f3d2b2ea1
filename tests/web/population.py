"""A small scored population for the dashboard tests: the demo generator's leads plus hand-made leads
whose numbers are known exactly (a viewer with a worked heatmap, an XSS-named lead, a top lead).

Everything is as of ``AS_OF``; the dashboard's clock is set to the same instant."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from leadscore.demo.catalog import VIDEOS
from leadscore.demo.generator import DemoConfig
from leadscore.demo.load import load_population
from leadscore.engine.current import refresh_scores
from leadscore.engine.models_registry import save_model
from leadscore.engine.score import score_leads
from leadscore.events.normalize import normalize_batch
from leadscore.model import default_model_path, load_model
from leadscore.service.live import LiveScorer, LiveSettings
from leadscore.service.webhooks import WebhookWorker, add_endpoint
from leadscore.store import open_store
from leadscore.video.catalog import Video, import_catalog
from leadscore.video.simulate import simulate

DEMO_END = datetime(2026, 11, 1)
AS_OF = datetime(2026, 11, 2, 12, 0, 0)
XSS = "<script>alert(1)</script>"
VIEWER = "viewer-exact"           # watched vid-test: 0–5 once, 5–15 twice, 15–20 once, 40–60 once
TEST_VIDEO = "vid-test"
TEST_VIDEO_SECONDS = 60
# The worked heatmap of VIEWER: (start, end, plays) with grey runs included.
VIEWER_RUNS = [(0, 5, 1), (5, 15, 2), (15, 20, 1), (20, 40, 0), (40, 60, 1)]
CTA_POSITION = 50
# Two more viewers of vid-test with simple, known watching: the engagement graph is exact.
OTHER_VIEWERS = {"viewer-b": [("play", 30)], "viewer-c": [("play", 10), ("seek", 0), ("play", 10)]}


@dataclass
class Population:
    path: str
    leads: int
    top_lead: str
    top_score: float
    tiers: dict[str, int]
    scores: dict[str, float]


def _msg(kind: str, user: str, ts: datetime, mid: str, **body) -> dict:
    out = {"type": kind, "userId": user, "messageId": mid, "timestamp": ts.isoformat() + "Z"}
    out.update(body)
    return out


def hand_made_messages() -> list[dict]:
    t = datetime(2026, 10, 30, 10, 0, 0)
    msgs = [
        _msg("identify", XSS, t, "xss-1", traits={"email": "mallory@example.org", "name": XSS, "title": XSS,
                                                   "company": {"name": XSS}, "seniority": "manager"}),
        _msg("page", XSS, t + timedelta(minutes=1), "xss-2", name=XSS,
             properties={"path": "/pricing", "title": XSS, "time_on_page": 40}),
        _msg("identify", VIEWER, t, "ve-1", traits={"email": "vera@viewer.example", "name": "Vera Viewer",
                                                    "title": "VP Marketing", "seniority": "vp",
                                                    "company": {"name": "Viewer & Co", "employee_count": 800}}),
    ]
    sim = simulate([("play", 20), ("seek", 5), ("play", 10), ("seek", 40), ("play", 20)],
                   duration=TEST_VIDEO_SECONDS, start=t + timedelta(minutes=5), user_id=VIEWER, session_id="s-exact",
                   video_id=TEST_VIDEO, id_prefix="ve-video")
    msgs += sim.events
    msgs.append(_msg("track", VIEWER, t + timedelta(minutes=5, seconds=40), "ve-cta", event="CTA Clicked",
                     properties={"cta_type": "meeting", "content_asset_id": TEST_VIDEO, "position": CTA_POSITION}))
    for i, (user, actions) in enumerate(OTHER_VIEWERS.items()):
        msgs.append(_msg("identify", user, t, f"{user}-id", traits={"email": f"{user}@viewer.example"}))
        msgs += simulate(actions, duration=TEST_VIDEO_SECONDS, start=t + timedelta(hours=1 + i), user_id=user,
                         session_id=f"s-{user}", video_id=TEST_VIDEO, id_prefix=f"{user}-video").events
    return msgs


class _Receiver(BaseHTTPRequestHandler):
    """A webhook receiver on loopback: /ok answers 204, /gone answers 410 (the delivery dies)."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204 if self.path == "/ok" else 410)
        self.end_headers()

    def log_message(self, *args):
        pass


def build(path: str, leads: int = 300, seed: int = 7) -> Population:
    store = open_store(path)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        load_population(store, DemoConfig(leads=leads, seed=seed, end=DEMO_END))
        videos = [Video(v.id, v.title, float(v.duration), v.category, v.stage, list(v.tags)) for v in VIDEOS]
        videos.append(Video(TEST_VIDEO, "Test video: 60 seconds", float(TEST_VIDEO_SECONDS), "demo", "bottom", ["test"]))
        import_catalog(store, videos, AS_OF)
        model = load_model(default_model_path())
        save_model(store, model, AS_OF - timedelta(days=30), activate=True)
        # two history points per lead: a month ago and now
        refresh_scores(store, model, AS_OF - timedelta(days=30), cause="model", cause_ref=model.model_version)
        # The hand-made leads arrive through live scoring: alerts, outbox messages, webhook deliveries.
        url = f"http://127.0.0.1:{receiver.server_port}"
        add_endpoint(store, url + "/ok", now=AS_OF, allow_private=True, description="works")
        add_endpoint(store, url + "/gone", now=AS_OF, allow_private=True, description="gone")
        events = normalize_batch(hand_made_messages(), AS_OF - timedelta(hours=1))
        result = store.ingest(events)
        live = LiveScorer(store, LiveSettings(time_rescore_seconds=0), clock=lambda: AS_OF)
        live.process(result.new_message_ids, result.leads_touched, as_of=AS_OF - timedelta(hours=1))
        refresh_scores(store, model, AS_OF, cause="time")
        with WebhookWorker(store, allow_private=True, concurrency=1) as worker:
            worker.run_once(AS_OF)
        frame = score_leads(store, model, AS_OF)
        top = frame.sort_values(["score", "lead_id"], ascending=[False, False]).iloc[0]
        tiers = frame["tier"].value_counts().to_dict()
        return Population(path, len(frame), str(top["lead_id"]), float(top["score"]), {k: int(v) for k, v in tiers.items()},
                          dict(zip(frame["lead_id"], map(float, frame["score"]))))
    finally:
        receiver.shutdown()
        store.close()
