"""Outbound webhooks against a real receiver on loopback that verifies Standard Webhooks signatures.

Time is simulated through ``run_once(now)``; the receiver is a real HTTP server (stopped and started
again on the same port to play "down for minutes").
"""
from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from leadscore.service import outbox
from leadscore.service.outbox import Alert, dead_letters, delivery_attempts, enqueue, enqueue_alerts, list_deliveries, replay
from leadscore.service.webhooks import (UnsafeTarget, WebhookWorker, add_endpoint, generate_secret, get_endpoint,
                                        set_endpoint_enabled)
from leadscore.store import open_store

T0 = datetime(2026, 11, 23, 12, 0, 0)


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that verifies every request with ``Webhook(secret).verify``.

    ``answers`` is a list of (status, headers, delay) consumed one per request; when empty, 200.
    """

    def __init__(self, secret: str):
        self.secret = secret
        self.port = 0
        self.received: list[tuple[str, dict]] = []     # verified (webhook-id, body)
        self.rejected: list[str] = []                  # verification failures
        self.requests = 0
        self.answers: list[tuple[int, dict, float]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.requests += 1
                    status, headers, delay = receiver.answers.pop(0) if receiver.answers else (200, {}, 0.0)
                if delay:
                    time.sleep(delay)
                if 200 <= status < 300:
                    try:
                        payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                    except WebhookVerificationError as exc:
                        with receiver.lock:
                            receiver.rejected.append(str(exc))
                        status = 400
                    else:
                        with receiver.lock:
                            receiver.received.append((self.headers["webhook-id"], payload))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self) -> list[str]:
        return [mid for mid, _ in self.received]


@pytest.fixture
def receiver():
    r = Receiver(generate_secret()).start()
    yield r
    r.stop()


def _worker(store, **kw):
    kw.setdefault("allow_private", True)  # the receiver is on loopback
    kw.setdefault("rng", random.Random(7))
    return WebhookWorker(store, **kw)


def test_delivery_is_signed_thin_and_carries_a_stable_webhook_id(store, receiver):
    ep = add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    got = enqueue(store, "lead.became_hot", {"score": 87.5, "tier": "hot"}, lead_id="u1", now=T0,
                  timestamp=datetime(2026, 11, 23, 11, 59, 30))
    assert got.deliveries == 1 and got.message_id.startswith("msg_")
    with _worker(store) as w:
        report = w.run_once(T0)
    assert (report.attempted, report.delivered) == (1, 1)
    assert receiver.rejected == []
    assert receiver.received == [(got.message_id, {"type": "lead.became_hot", "timestamp": "2026-11-23T11:59:30.000Z",
                                                   "data": {"score": 87.5, "tier": "hot", "lead_id": "u1"}})]
    [row] = list_deliveries(store)
    assert (row["status"], row["attempts"], row["last_status"], row["delivered_at"], row["endpoint_id"]) == \
        ("delivered", 1, 200, T0, ep.endpoint_id)


def test_a_wrong_secret_fails_verification_at_the_receiver(store, receiver):
    add_endpoint(store, receiver.url, now=T0, secret=generate_secret(), allow_private=True)
    enqueue(store, "lead.high_intent", {"event": "Demo Requested"}, lead_id="u1", now=T0)
    with _worker(store) as w:
        report = w.run_once(T0)
    assert report.delivered == 0 and receiver.received == [] and receiver.rejected == ["No matching signature found"]
    [row] = list_deliveries(store)
    assert (row["status"], row["last_status"]) == ("pending", 400)


def test_event_type_filter_and_disabled_endpoints_get_nothing(store, receiver):
    add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True, event_types=["lead.became_hot"])
    off = add_endpoint(store, receiver.url, now=T0, allow_private=True)
    set_endpoint_enabled(store, off.endpoint_id, False)
    a = enqueue(store, "lead.stage_changed", {"from": "lead", "to": "mql"}, lead_id="u1", now=T0)
    b = enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
    assert (a.deliveries, b.deliveries) == (0, 1)
    with _worker(store) as w:
        w.run_once(T0)
    assert receiver.ids() == [b.message_id]


def test_enqueue_joins_the_callers_transaction(store):
    add_endpoint(store, "https://hooks.example.com/x", now=T0)
    with pytest.raises(RuntimeError):
        with store.transaction():
            enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
            raise RuntimeError("the write that caused the alert failed")
    assert store.query("SELECT count(*) FROM outbox_messages")[0][0] == 0
    assert store.query("SELECT count(*) FROM webhook_deliveries")[0][0] == 0
    with store.transaction() as conn:  # the raw connection works as well
        enqueue(conn, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
    assert store.query("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")[0][0] == 1


def test_private_targets_are_refused_unless_allowed(store, receiver):
    with pytest.raises(UnsafeTarget, match="127.0.0.1 is a private/internal address"):
        add_endpoint(store, receiver.url, now=T0)
    # A name that resolves to loopback passes registration but not delivery.
    add_endpoint(store, f"http://localhost:{receiver.port}/hooks", now=T0, secret=receiver.secret)
    m = enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
    with WebhookWorker(store) as w:  # default: allow_private off
        report = w.run_once(T0)
    assert (report.blocked, report.dead, receiver.requests) == (1, 1, 0)
    [row] = dead_letters(store)
    assert "private/internal address" in row["last_error"] and "allow_private is off" in row["last_error"]
    replay(store, now=T0, message_ids=[m.message_id])
    with _worker(store) as w:  # a worker configured to allow internal receivers
        assert w.run_once(T0).delivered == 1
    assert receiver.ids() == [m.message_id]


def test_receiver_down_for_minutes_then_every_alert_arrives_once_in_order_per_lead(store_url, receiver):
    store = open_store(store_url)
    add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    sent = {"a": [], "b": []}
    for i in range(3):
        for lead in ("a", "b"):
            m = enqueue(store, "lead.score_jumped", {"n": i}, lead_id=lead, now=T0 + timedelta(seconds=i))
            sent[lead].append(m.message_id)
    receiver.stop()  # down
    w = _worker(store)
    r1 = w.run_once(T0 + timedelta(seconds=2))
    assert (r1.attempted, r1.delivered) == (2, 0)  # only the head of each lead's queue is tried
    r2 = w.run_once(T0 + timedelta(seconds=10))   # the 5 s retry, still down
    assert (r2.attempted, r2.delivered) == (2, 0)
    assert w.run_once(T0 + timedelta(seconds=60)).attempted == 0  # next retry is ~5 min later
    # A restart: the worker and the store go away; the state is in the store only.
    w.close()
    store.close()
    receiver.start()  # back up, same port
    store = open_store(store_url)
    with _worker(store) as w2:
        r3 = w2.run_once(T0 + timedelta(minutes=6))
    assert (r3.delivered, r3.failed) == (6, 0)
    by_lead = {"a": [], "b": []}
    for mid, body in receiver.received:
        by_lead[body["data"]["lead_id"]].append(mid)
    assert by_lead == sent
    assert len(set(receiver.ids())) == 6 and receiver.rejected == []
    [head] = list_deliveries(store, message_id=sent["a"][0])
    assert (head["attempts"], head["status"]) == (3, "delivered")
    assert [a["error"] is not None for a in delivery_attempts(store, sent["a"][0])] == [True, True, False]
    store.close()


def test_retry_after_on_429_is_honoured(store, receiver):
    add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    receiver.answers = [(429, {"Retry-After": "120"}, 0.0)]
    enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
    enqueue(store, "lead.became_hot", {"score": 91}, lead_id="u2", now=T0)
    with _worker(store, concurrency=1, batch_size=1) as w:
        assert w.run_once(T0).attempted == 1  # 429: the endpoint pauses, u2 is not tried
        assert w.run_once(T0 + timedelta(seconds=60)).attempted == 0
        assert w.run_once(T0 + timedelta(seconds=121)).delivered == 2
    assert receiver.requests == 3


def test_redirects_are_failures_and_410_disables_the_endpoint(store, receiver):
    ep = add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    receiver.answers = [(302, {"Location": receiver.url + "/elsewhere"}, 0.0), (410, {}, 0.0)]
    m = enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
    with _worker(store) as w:
        w.run_once(T0)
        [row] = list_deliveries(store)
        assert (row["status"], row["last_status"], receiver.requests) == ("pending", 302, 1)
        assert "not followed" in row["last_error"]
        report = w.run_once(T0 + timedelta(seconds=10))
        assert report.disabled_endpoints == [ep.endpoint_id]
        assert get_endpoint(store, ep.endpoint_id).enabled is False
        assert "410" in get_endpoint(store, ep.endpoint_id).disabled_reason
        assert w.run_once(T0 + timedelta(hours=1)).attempted == 0
        set_endpoint_enabled(store, ep.endpoint_id, True)
        assert w.run_once(T0 + timedelta(hours=1)).delivered == 1
    assert receiver.ids() == [m.message_id]


def test_a_slow_receiver_times_out_and_is_retried(store, receiver):
    add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    receiver.answers = [(200, {}, 1.5)]
    enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
    with _worker(store, timeout=0.3) as w:
        assert w.run_once(T0).failed == 1
        [row] = list_deliveries(store)
        assert row["last_error"].startswith("timeout after 0.3s")
        assert w.run_once(T0 + timedelta(seconds=6)).delivered == 1


def test_dead_after_the_schedule_then_replayed_with_the_same_webhook_id(store, receiver):
    ep = add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    receiver.answers = [(500, {}, 0.0)] * 10
    m = enqueue(store, "lead.stage_changed", {"to": "sql"}, lead_id="u1", now=T0)
    now = T0
    with _worker(store) as w:
        for _ in range(10):
            w.run_once(now)
            now += timedelta(hours=30)
    [row] = dead_letters(store)
    assert (row["message_id"], row["attempts"], row["last_status"]) == (m.message_id, 10, 500)
    assert get_endpoint(store, ep.endpoint_id).enabled is False  # nothing got through: endpoint disabled
    assert len(delivery_attempts(store, m.message_id)) == 10
    assert replay(store, now=now, all_dead=True) == 1
    with _worker(store) as w:
        assert w.run_once(now).delivered == 1
    assert receiver.ids() == [m.message_id] and dead_letters(store) == []


def test_retry_schedule_spacing_follows_standard_webhooks(store, receiver):
    add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    receiver.answers = [(503, {}, 0.0)] * 3
    enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0)
    gaps = []
    now = T0
    with _worker(store) as w:
        for _ in range(3):
            w.run_once(now)
            nxt = list_deliveries(store)[0]["next_attempt_at"]
            gaps.append((nxt - now).total_seconds())
            now = nxt
    assert 4.5 <= gaps[0] <= 5.5 and 270 <= gaps[1] <= 330 and 1620 <= gaps[2] <= 1980


def test_duplicate_message_id_is_enqueued_once_and_erase_removes_a_leads_alerts(store):
    add_endpoint(store, "https://hooks.example.com/x", now=T0)
    first = enqueue_alerts(store, [Alert("lead.became_hot", {"score": 90}, "u1", message_id="alert-u1-hot-1"),
                                   Alert("lead.became_hot", {"score": 70}, "u2")], now=T0)
    again = enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=T0, message_id="alert-u1-hot-1")
    assert [e.message_id for e in first][0] == "alert-u1-hot-1" and again is None
    assert store.query("SELECT count(*) FROM webhook_deliveries")[0][0] == 2
    assert outbox.erase_lead(store, "u1") == {"messages": 1, "crm_sync": 0}
    assert store.query("SELECT lead_id FROM outbox_messages") == [("u2",)]


def test_background_delivery_threads_send_on_the_wall_clock_and_stop(store, receiver):
    from datetime import timezone

    from leadscore.service.webhooks import start_background_delivery
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    add_endpoint(store, receiver.url, now=now, secret=receiver.secret, allow_private=True)
    m = enqueue(store, "lead.became_hot", {"score": 90}, lead_id="u1", now=now)
    stop = threading.Event()
    threads = start_background_delivery(store, stop=stop, allow_private=True, interval=0.05)
    deadline = time.monotonic() + 10
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(5)
    assert receiver.ids() == [m.message_id]
    assert not any(t.is_alive() for t in threads)


def test_random_receiver_failures_never_break_order_or_lose_an_alert(store, receiver):
    rnd = random.Random(20261123)
    add_endpoint(store, receiver.url, now=T0, secret=receiver.secret, allow_private=True)
    sent: dict[str, list[str]] = {lead: [] for lead in ("a", "b", "c")}
    for i in range(4):
        for lead in sent:
            sent[lead].append(enqueue(store, "lead.score_jumped", {"n": i}, lead_id=lead, now=T0).message_id)
    receiver.answers = [(500 if rnd.random() < 0.4 else 200, {}, 0.0) for _ in range(200)]
    now = T0
    with _worker(store) as w:
        for _ in range(40):
            w.run_once(now)
            now += timedelta(hours=25)  # past any retry delay
            if not list_deliveries(store, status="pending"):
                break
    assert dead_letters(store) == []
    got: dict[str, list[str]] = {lead: [] for lead in sent}
    for mid, body in receiver.received:
        got[body["data"]["lead_id"]].append(mid)
    assert got == sent
    assert receiver.requests > 12  # some failed and were retried
