"""Contract-test servers: real HTTP(S) servers on loopback that check the documented HubSpot and
Salesforce request shapes (../shared/specs/CRM.md) and can play back rate limits and errors.

A request that breaks the contract is answered 400 and its complaint kept in ``violations``; every
test asserts that list is empty. ``faults`` is a list of functions tried in order before the normal answer:
the first returning a response (status, headers, body) answers that request instead and is used up.
(A plain module, not conftest.py, so that ``from fakeapi import …`` can never pick another conftest.)
"""
from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

Response = tuple[int, dict[str, str], Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""


class ContractViolation(AssertionError):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise ContractViolation(message)


@dataclass
class FakeApi:
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    faults: list[Callable[[Request], Response | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def handle(self, req: Request) -> Response:  # overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> "FakeApi":
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                parts = urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                req = Request(self.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body, raw)
                with api.lock:
                    api.requests.append(req)
                    fault = None  # the first fault that answers this request is used up; others wait
                    for i, play in enumerate(api.faults):
                        fault = play(req)
                        if fault is not None:
                            del api.faults[i]
                            break
                try:
                    status, headers, payload = fault if fault else api.handle(req)
                except ContractViolation as exc:
                    with api.lock:
                        api.violations.append(f"{req.method} {req.path}: {exc}")
                    status, headers, payload = 400, {}, {"message": f"contract violation: {exc}"}
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if data:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]
