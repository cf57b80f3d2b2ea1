"""Standard Webhooks over HTTPS: the worker connects to the address it checked (no second DNS lookup)
while TLS still verifies the certificate against the URL's host name."""
from __future__ import annotations

import random
from datetime import datetime

import pytest
from tests.contract.fakeapi import FakeApi, Request, expect
from standardwebhooks import Webhook

from leadscore.service.outbox import enqueue, list_deliveries
from leadscore.service.webhooks import WebhookWorker, add_endpoint, generate_secret

T0 = datetime(2026, 11, 23, 12, 0, 0)
SECRET = generate_secret()


class TlsReceiver(FakeApi):
    def handle(self, req: Request):
        expect(req.method == "POST" and req.path == "/hooks", "POST /hooks")
        expect(req.headers.get("host") == f"localhost:{self.port}", f"Host must name the URL's host, got {req.headers.get('host')}")
        expect(req.headers.get("content-type") == "application/json", "JSON body")
        Webhook(SECRET).verify(req.raw, req.headers)  # a bad signature raises: no 2xx, the test fails
        return 204, {}, None


@pytest.fixture
def receiver(server_tls):
    api = TlsReceiver(tls=server_tls).start()
    yield api
    api.stop()
    assert api.violations == []


def test_https_delivery_verifies_the_certificate_by_name(store, receiver, tls_cert):
    add_endpoint(store, f"https://localhost:{receiver.port}/hooks", now=T0, secret=SECRET)
    m = enqueue(store, "lead.became_hot", {"score": 91}, lead_id="u1", now=T0)
    with WebhookWorker(store, allow_private=True, verify=tls_cert[0], rng=random.Random(1)) as w:
        assert w.run_once(T0).delivered == 1
    [req] = receiver.requests
    assert req.headers["webhook-id"] == m.message_id and req.body["data"] == {"score": 91, "lead_id": "u1"}
    assert list_deliveries(store)[0]["last_status"] == 204


def test_an_untrusted_certificate_is_a_failed_attempt(store, receiver):
    add_endpoint(store, f"https://localhost:{receiver.port}/hooks", now=T0, secret=SECRET)
    enqueue(store, "lead.became_hot", {"score": 91}, lead_id="u1", now=T0)
    with WebhookWorker(store, allow_private=True) as w:  # system CAs only
        assert w.run_once(T0).failed == 1
    assert "CERTIFICATE_VERIFY_FAILED" in list_deliveries(store)[0]["last_error"]
    assert receiver.requests == []
