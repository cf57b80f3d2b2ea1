"""The whole promise, end to end on a real server: events arrive on /v1/batch, the lead is re-scored
live, turns hot, and a signed Standard Webhooks alert reaches a receiver on loopback — delivered by the
server's own outbox worker. On DuckDB and PostgreSQL."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook

from leadscore.engine.models_registry import save_model
from leadscore.model import parse_model
from leadscore.service.app import create_app
from leadscore.service.auth import create_key
from leadscore.service.server import ServerThread
from leadscore.service.settings import Settings
from leadscore.service.webhooks import add_endpoint

MODEL = """
name: hot-test
groups:
  product: {axis: engagement}
tiers: [{name: cold}, {name: warm, min: 40}, {name: hot, min: 100}]
alerts:
  - {name: became_hot, trigger: became_tier, tier: hot}
rules:
  - {name: demo, group: product, event: Demo Requested, points: 60, max_count: 1}
  - {name: meeting, group: product, event: Meeting Booked, points: 50, max_count: 1}
"""


class Receiver:
    def __init__(self):
        self.received: list[tuple[dict, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


def test_a_lead_turning_hot_reaches_a_signed_webhook(store, monkeypatch):
    monkeypatch.setenv("LEADSCORE_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("LEADSCORE_DELIVERY_INTERVAL", "0.2")
    now = datetime(2026, 11, 23, 12)
    save_model(store, parse_model(MODEL), now, activate=True)
    receiver = Receiver()
    endpoint = add_endpoint(store, receiver.url, now=now, allow_private=True)
    write = create_key(store, "write", now, name="w").token
    read = create_key(store, "read", now, name="r").token
    app = create_app(store, Settings())
    batch = {"batch": [
        {"type": "track", "userId": "lead-7", "event": "Demo Requested", "messageId": "d1", "timestamp": "2026-11-20T10:00:00Z"},
        {"type": "track", "userId": "lead-7", "event": "Meeting Booked", "messageId": "m1", "timestamp": "2026-11-20T11:00:00Z"},
        {"type": "track", "userId": "lead-8", "event": "Demo Requested", "messageId": "d2", "timestamp": "2026-11-20T10:00:00Z"},
    ]}
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        assert client.post("/v1/batch", json=batch, auth=(write, "")).status_code == 200
        deadline = time.monotonic() + 60
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
        lead = client.get("/api/leads/lead-7", auth=(read, "")).json()
    assert (lead["score"], lead["tier"]) == (110.0, "hot")
    assert len(receiver.received) == 1, "only lead-7 turned hot (lead-8 is warm at 60)"
    headers, body = receiver.received[0]
    msg = Webhook(endpoint.secret).verify(body, {k.lower(): v for k, v in headers.items()})
    assert msg["type"] == "lead.became_hot"
    assert msg["data"]["lead_id"] == "lead-7"
    assert json.loads(body)["data"]["tier"] == "hot"
