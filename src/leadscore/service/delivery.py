"""Runs the outbox's delivery workers (webhooks, CRM sync) inside the server process.

With the embedded DuckDB store only the process holding the file can reach the outbox, so the
server delivers what it enqueues. Settings from the environment:
LEADSCORE_DELIVERY=0 turns delivery off (e.g. when a separate `leadscore deliveries run` process
serves a PostgreSQL store); LEADSCORE_WEBHOOK_ALLOW_PRIVATE=1 allows loopback/private targets
(development and tests only: the SSRF guard is on by default); LEADSCORE_DELIVERY_INTERVAL seconds.
"""
from __future__ import annotations

import os
import threading

from leadscore.service.webhooks import start_background_delivery


def install(app) -> None:
    if os.environ.get("LEADSCORE_DELIVERY", "1") in ("0", "false", "no"):
        return
    allow_private = os.environ.get("LEADSCORE_WEBHOOK_ALLOW_PRIVATE", "0") in ("1", "true", "yes")
    interval = float(os.environ.get("LEADSCORE_DELIVERY_INTERVAL", "1.0"))
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(app) -> None:
        threads.extend(start_background_delivery(app.state.store, stop=stop, allow_private=allow_private,
                                                 interval=interval))

    def halt(app) -> None:
        stop.set()
        for thread in threads:
            thread.join(20)

    app.state.on_start.append(start)
    app.state.on_stop.append(halt)
    app.state.delivery_stop = stop
