"""The ingestion process: what answers HTTP in `leadscore serve`, apart from the process that owns the store.

Why a second process. In one Python process the event loop that answers requests shares the GIL with
the threads that apply the log to the store and score leads; DuckDB's client holds the GIL for much
of a statement, and every store transaction is Python work too. Measured in one process at 1,000
/v1/track requests/s (bench/RESULTS.md): the event loop stalled for up to 50-75 ms while a store
transaction ran, which was the p99 of the requests. Here the public socket is served by a child
process that does only HTTP, key checks, validation and the log append, so its event loop never
waits for store work; the store's process (the parent, where `leadscore serve` runs) applies the
log, scores, and answers everything else.

    client ──HTTP──▶ ingestion process ──(fsync)──▶ ingestion log (SQLite WAL, shared file)
                      │ /v1/* answered here             │ read back only for what was not handed over
                      │ bodies ≥ 16 KiB ⇄ its validation process (service/validator.py)
                      │ logged events ──socketpair──▶ store process: apply thread → store, live scores
                      │ anything else ──HTTP over a Unix socket──▶ store process: REST API, dashboard
                      ◀── applied position, backlog, store state, API keys ──┘

- **Acknowledgement**: unchanged, a 200 once the request's body is fsynced in the log
  (``LogAppender``), then its validated events go to the store's process over a socket pair, so
  they are not parsed twice; a sequence number that never arrives is read back from the log there.
- **Keys**: the ingestion process cannot open the store (DuckDB allows one process per file): the
  store's process sends it the active keys at start, after any change made through the API, and
  after each periodic reload (``key_refresh_seconds``), so a revocation applies within that.
- **Backlog and store outages**: the store's process reports after each transaction what it has
  applied and holds; the ingestion process answers 503 + Retry-After from that, as before.
- **Lifetime**: started by the store's process (``IngestProcess``) on the socket it bound itself;
  stopped first at shutdown (SIGTERM, its in-flight requests finished); restarted if it dies. It
  dies with its parent: ``PR_SET_PDEATHSIG`` on Linux, and its end of the socket pair reaching EOF.
- **Everything else** (REST API, dashboard, /healthz, /tracker) is passed to the store's process over a
  private Unix socket, with the client's address in ``X-Leadscore-Client`` (trusted only there).

Run as ``python -m leadscore.service.frontend LISTEN_FD CONTROL_FD PARENT_PID`` by ``IngestProcess``.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import operator
import os
import pickle
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

log = logging.getLogger("leadscore.service.frontend")

_HEADER = struct.Struct("!I")
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                         b"trailer", b"trailers", b"transfer-encoding", b"upgrade"})
HANDOVER_GATHER_SECONDS = 0.005
CLIENT_HEADER = b"x-leadscore-client"
SCHEME_HEADER = b"x-leadscore-scheme"


class Channel:
    """Length-prefixed pickles over a socket pair between a server and the child it started (both
    ends are ours: nothing else can write to it)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._rfile = sock.makefile("rb")
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(data)))
            self.sock.sendall(data)

    def recv(self) -> Any:
        """The next message, or None once the other end is closed."""
        head = self._rfile.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack(head)
        data = self._rfile.read(size)
        if len(data) < size:
            return None
        return pickle.loads(data)

    def close(self) -> None:
        try:
            self._rfile.close()
        finally:
            self.sock.close()


def _event_codec():
    from leadscore.events import Event
    names = [f.name for f in fields(Event)]
    # a tuple of the fields pickles in about half the time of the dataclass (measured: 5 against 10 µs/event)
    return operator.attrgetter(*names), Event


# ---------------------------------------------------------------- the ingestion process
class FrontApp:
    """ASGI app of the ingestion process: POST /v1/{kind} answered here (CORS for browser trackers),
    anything else passed to the store's process."""

    def __init__(self, settings, keys, appender, core_socket: str, on_stop=None, validator=None):
        from starlette.middleware.cors import CORSMiddleware

        from leadscore.service import ingest_api
        from leadscore.service.ingest_api import _Inflight

        self.ingest_api = ingest_api
        self.kinds = frozenset(ingest_api.SINGLE_TYPES + ("batch", "import"))
        self.state = SimpleNamespace(settings=settings, keys=keys, writer=appender, validator=validator,
                                     ingest_inflight=_Inflight(settings.max_inflight_bytes))
        self.core_socket = core_socket
        self.on_stop = on_stop
        self.cors = CORSMiddleware(self._ingest, allow_origins=list(settings.cors_origins),
                                   allow_methods=["POST", "OPTIONS"], allow_headers=["*"], max_age=86400)
        self.client = None

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path.startswith("/v1/") and path[4:] in self.kinds:
                method = scope["method"]
                browser = any(name == b"origin" for name, _ in scope["headers"])
                if method == "POST" and not browser:
                    await self._ingest(scope, receive, send)
                    return
                if method in ("POST", "OPTIONS"):
                    await self.cors(scope, receive, send)
                    return
            await self._proxy(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _ingest(self, scope, receive, send):
        from starlette.requests import Request

        scope["app"] = self   # ingest_api.handle reads request.app.state
        response = await self.ingest_api.handle(Request(scope, receive), scope["path"][4:])
        await response(scope, receive, send)

    async def _lifespan(self, receive, send):
        import httpx

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.core_socket),
                                                timeout=httpx.Timeout(None, connect=10.0))
                self.client.headers.clear()   # pass the client's headers, add none
                self.state.writer.start()
                if self.state.validator is not None:
                    await self.state.validator.start(asyncio.get_running_loop())
                freeze_heap()   # everything started (uvicorn's and httpx's modules included), before serving
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.state.validator is not None:
                    self.state.validator.stop()
                self.state.writer.stop()      # logs and hands over what is queued
                if self.on_stop is not None:
                    self.on_stop()            # (uvicorn re-raises SIGTERM once this returns: last chance)
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope, receive, send):
        import httpx

        headers = [(k, v) for k, v in scope["headers"]
                   if k not in _HOP_BY_HOP and k not in (CLIENT_HEADER, SCHEME_HEADER)]
        client = scope.get("client")
        if client:
            headers.append((CLIENT_HEADER, f"{client[0]}:{client[1]}".encode("latin-1")))
        headers.append((SCHEME_HEADER, scope.get("scheme", "http").encode("latin-1")))
        first = await receive()
        body = first.get("body", b"")
        if first.get("more_body"):
            async def stream():
                yield body
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return
                    yield message.get("body", b"")
                    if not message.get("more_body"):
                        return
            content = stream()
        else:
            content = body if body or any(k == b"content-length" for k, _ in headers) else None
        url = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            url += b"?" + scope["query_string"]
        request = self.client.build_request(scope["method"], "http://leadscore" + url.decode("latin-1"),
                                            headers=headers, content=content)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            log.warning("the store's process did not answer %s %s: %s", scope["method"], scope["path"], exc)
            body = b'{"code":"unavailable","message":"the service is starting or stopping; retry shortly"}'
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", b"1"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code, "headers": [
                (k, v) for k, v in response.headers.raw
                if k.lower() not in _HOP_BY_HOP and k.lower() not in (b"date", b"server")]})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


def freeze_heap() -> None:
    """Move everything alive now (modules, classes, the app: ~10^5 objects that live as long as the
    process) out of the cyclic garbage collector's sight, so its full collections scan only what
    requests allocate. Measured in the ingestion process at 1,000 /v1/track requests/s: 2 full
    collections in 8 s, one taking 101 ms (the request tail) on a loaded machine; 24 ms on a quiet
    one when frozen before uvicorn and httpx were imported, hence called once started. For a server
    process (``leadscore serve``), not a library call: frozen objects are never collected."""
    import gc

    gc.collect()
    gc.freeze()


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere the
    control socket's EOF does it (below), a little later."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:   # the parent died before the line above
        os._exit(0)


def child_handshake(control_fd: int, parent: int) -> tuple["Channel", Any] | None:
    """A child process's start (the ingestion and the validation process): die with ``parent``, open
    the control channel on ``control_fd`` and read the parent's ``("hello", payload)``; returns the
    channel and the payload, or None when the parent sent anything else or closed the channel."""
    _die_with_parent(parent)
    channel = Channel(socket.socket(fileno=control_fd))
    hello = channel.recv()
    if hello is None or hello[0] != "hello":
        return None
    return channel, hello[1]


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from leadscore.service.auth import PushedKeyRing
    from leadscore.service.ingest_log import IngestLog
    from leadscore.service.validator import PickledEvents, Validator
    from leadscore.service.writer import LogAppender, use_short_switch_interval

    listen_fd, control_fd, parent = (int(a) for a in (argv or sys.argv[1:])[:3])
    started = child_handshake(control_fd, parent)
    if started is None:
        return 1
    channel, config = started
    settings = config["settings"]
    encode, _ = _event_codec()
    ingest_log = IngestLog(config["log"], exclusive=False)
    keys = PushedKeyRing(settings)
    keys.set_keys(config["keys"])

    # Logged requests go to the store's process from a thread of their own: the log thread (and so the
    # acknowledgements) never waits for the socket, nor for pickling. Unbounded, but what waits here is
    # counted in the backlog (not yet reported received), which answers 503 beyond max_pending_events.
    outbox: queue.SimpleQueue = queue.SimpleQueue()

    def deliver(items) -> None:
        outbox.put(items)

    def send_logged() -> None:
        while True:
            items = outbox.get()
            if items is None:
                return
            # Gather for a moment: under 1,000 small requests/s a message per fsync group (~700/s) cost
            # both processes ~0.25 ms of CPU per request in wake-ups and framing; the store's process
            # applies at most every apply_interval_seconds (0.1 s) anyway.
            time.sleep(HANDOVER_GATHER_SECONDS)
            while True:   # everything waiting, in one message
                try:
                    more = outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    outbox.put(None)
                    break
                items = items + more
            try:
                # events validated by the validation process come pickled already: passed on as they are
                channel.send(("logged", [(item.seq, item.events.data if isinstance(item.events, PickledEvents)
                                          else [encode(ev) for ev in item.events]) for item in items],
                              {"logged_seq": appender.logged_seq, "log_commits": appender.log_commits,
                               "log_busy_seconds": appender.log_busy_seconds}))
            except OSError:
                return   # the store's process is gone; it reads the log back when it starts again

    sender = threading.Thread(target=send_logged, name="leadscore-handover", daemon=True)
    sender.start()

    def drain_sender() -> None:
        outbox.put(None)
        sender.join(30)

    appender = LogAppender(ingest_log, deliver, settings.max_pending_events)
    appender.report(config["report"])

    def listen() -> None:
        while True:
            message = channel.recv()
            if message is None:
                # the store's process is gone (it keeps its end open until this process has exited):
                # what was acknowledged is in the log; stop at once, as a crash would
                os._exit(0)
            if message[0] == "keys":
                keys.set_keys(message[1])
            elif message[0] == "report":
                appender.report(message[1])

    threading.Thread(target=listen, name="leadscore-control", daemon=True).start()
    use_short_switch_interval()
    validator = Validator(settings, config["log_level"]) if settings.validator_bytes > 0 else None
    app = FrontApp(settings, keys, appender, config["core"], on_stop=drain_sender, validator=validator)
    server = uvicorn.Server(uvicorn.Config(app, log_level=config["log_level"], access_log=False,
                                           timeout_graceful_shutdown=10, lifespan="on"))
    try:
        server.run(sockets=[socket.socket(fileno=listen_fd)])
    except KeyboardInterrupt:   # Ctrl-C reaches the whole process group: uvicorn stopped, and re-raised it
        pass
    ingest_log.close()
    import gc
    gc.unfreeze()
    return 0


# ---------------------------------------------------------------- the store's side
class IngestProcess:
    """Started by `leadscore serve`: binds the public socket now (a port in use fails here) and a
    private Unix socket for the store's process's own server; ``start(app)`` (an on_start hook)
    starts the ingestion process, ``stop(app)`` (an on_stop hook, before the writer drains) stops it.
    """

    RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
    GIVE_UP_AFTER = 5        # exits in a row, each within 30 s of its start: the server stops (SIGTERM to itself)

    def __init__(self, host: str, port: int, log_level: str = "warning", stop_timeout: float = 15.0):
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
        self.listener = socket.socket(family, kind, proto)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind(address)
        except OSError as exc:
            self.listener.close()
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.listener.listen(2048)
        self.port = self.listener.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="leadscore-")   # mode 0700: only this user reaches the socket
        self.core_path = os.path.join(self.dir, "core.sock")
        self.core_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.core_socket.bind(self.core_path)
        self.core_socket.listen(256)
        self.log_level = log_level
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._channel: Channel | None = None
        self._reader: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._spawn_lock = threading.Lock()
        self._event = None

    # ---- lifecycle (app hooks)
    def start(self, app) -> None:
        self.writer = app.state.writer
        self.keys = app.state.keys
        self.settings = app.state.settings
        _, self._event = _event_codec()
        self.writer.reporters.append(self._send_report)
        self.keys.listeners.append(self._send_keys)
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="leadscore-ingest-supervisor", daemon=True)
        self._supervisor.start()
        threading.Thread(target=self._refresh_keys, name="leadscore-key-refresh", daemon=True).start()

    def stop(self, app=None) -> None:
        """Stop the ingestion process (it finishes its requests and hands over what it logged), then
        queue whatever the log holds beyond what arrived."""
        self._stopping.set()
        with self._spawn_lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.error("the ingestion process did not stop within %.0f s; killing it", self.stop_timeout)
                proc.kill()
                proc.wait()
        if self._supervisor is not None:
            self._supervisor.join(self.stop_timeout)
        self.close()

    def close(self) -> None:
        for sock in (self.listener, self.core_socket):
            try:
                sock.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- the child
    def _spawn(self) -> None:
        with self._spawn_lock:
            if self._stopping.is_set():
                return
            ours, theirs = socket.socketpair()
            # -P: the working directory is not put on sys.path (a stray json.py there would shadow the real one)
            cmd = [sys.executable, "-P", "-m", "leadscore.service.frontend",
                   str(self.listener.fileno()), str(theirs.fileno()), str(os.getpid())]
            self.proc = subprocess.Popen(cmd, pass_fds=(self.listener.fileno(), theirs.fileno()))
            theirs.close()
            channel = Channel(ours)
            channel.send(("hello", {"settings": self.settings, "log": str(self.writer.log.path),
                                    "core": self.core_path, "log_level": self.log_level,
                                    "keys": self.keys.active_keys(), "report": self.writer.report()}))
            self._channel = channel
            self._reader = threading.Thread(target=self._read, args=(channel,), name="leadscore-ingest-reader",
                                            daemon=True)
            self._reader.start()
            self.writer.front_stats = {"pid": self.proc.pid, "restarts": self.restarts}

    def _read(self, channel: Channel) -> None:
        event = self._event
        while True:
            try:
                message = channel.recv()
            except (OSError, pickle.UnpicklingError, EOFError) as exc:
                log.error("the ingestion process's channel broke: %s", exc)
                message = None
            if message is None:
                break
            if message[0] == "logged":
                from leadscore.service.writer import _Pending

                items = []
                for seq, rows in message[1]:
                    if isinstance(rows, bytes):   # pickled by the validation process
                        rows = pickle.loads(rows)
                    item = _Pending([event(*row) for row in rows], seq=seq)
                    item.future.set_result(None)
                    items.append(item)
                self.writer.front_stats.update(message[2])
                self.writer.receive(items)
        channel.close()

    def _supervise(self) -> None:
        quick = 0   # exits in a row soon after a start
        started = time.monotonic()
        while True:
            proc, reader = self.proc, self._reader
            code = proc.wait()
            if reader is not None:
                reader.join()
            # entries it logged but did not hand over (killed between its fsync and its message)
            self.writer.catch_up_from_log()
            if code in (-signal.SIGINT, -signal.SIGTERM, 0) and not self._stopping.is_set():
                # interrupted with its parent (Ctrl-C reaches the whole process group): the parent's own
                # shutdown follows in a moment; give it that moment before starting another
                self._stopping.wait(2.0)
            if self._stopping.is_set():
                return
            quick = quick + 1 if time.monotonic() - started < 30 else 1
            if quick >= self.GIVE_UP_AFTER:
                log.critical("the ingestion process exited %d times in a row soon after starting (last: %s); "
                             "stopping the server", quick, code)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            log.error("the ingestion process exited with %s; starting it again", code)
            time.sleep(self.RESTART_DELAYS[min(quick - 1, len(self.RESTART_DELAYS) - 1)])
            self.restarts += 1
            started = time.monotonic()
            self._spawn()
            if self._stopping.is_set():
                return

    # ---- what the ingestion process is told
    def _send(self, message) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            channel.send(message)
        except OSError:
            pass   # it is gone: the supervisor starts another, which gets the current state in its hello

    def _send_report(self, report) -> None:
        self._send(("report", report))

    def _send_keys(self, keys) -> None:
        self._send(("keys", keys))

    def _refresh_keys(self) -> None:
        from leadscore.store import StoreUnavailable

        while not self._stopping.wait(self.settings.key_refresh_seconds):
            try:
                self.keys.reload()   # its listeners send the keys on when they changed
            except StoreUnavailable:
                pass
            except Exception:  # noqa: BLE001 - try again at the next tick
                log.exception("could not reload the API keys")


class ForwardedClient:
    """In the store's process: requests that reach it over the private Unix socket come from the
    ingestion process, which names the client in ``X-Leadscore-Client`` (and the scheme); anything
    else keeps the connection's own client (such a header from elsewhere is ignored)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope.get("client"):   # a Unix socket: no peer address
            for name, value in scope["headers"]:
                if name == CLIENT_HEADER:
                    host, _, port = value.decode("latin-1").rpartition(":")
                    scope["client"] = (host, int(port) if port.isdigit() else 0)
                elif name == SCHEME_HEADER and value in (b"http", b"https"):
                    scope["scheme"] = value.decode()
        await self.app(scope, receive, send)


if __name__ == "__main__":
    sys.exit(main())
