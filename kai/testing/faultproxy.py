"""A fault-injecting proxy between kai and kube-apiserver, for reliability tests (issue 16).

Listens on plain HTTP on 127.0.0.1 and forwards every request over HTTPS to the real API
server (the test control plane). Point a client at it with :meth:`FaultProxy.write_kubeconfig`.
Faults are drawn from a ``random.Random(seed)``, so a run is repeatable, and they are bounded:

- ``latency``: each request waits ``uniform(0, latency)`` seconds first;
- ``p_429`` / ``p_503``: answer without forwarding, 429 with ``Retry-After: retry_after``;
- ``p_lost``: a write (POST/PUT/PATCH/DELETE) is forwarded, then the connection is reset
  before the answer arrives (the change happened; the client cannot know);
- ``p_reset`` / ``p_truncate``: a watch stream is cut after ``randint(0, cut_after)``
  events or ``uniform(0, cut_seconds)`` seconds, whichever comes first, by a TCP reset,
  or by a clean end of stream in the middle of an event line;
- ``expire_watches``: the next N watches get one ERROR event (410 Expired) and end;
- ``max_in_a_row``: never more than this many error faults in a row for one (method, path),
  so every request eventually goes through.

``hold(pred, after=n)`` lets the first n requests matching ``pred`` through and holds the
rest (never forwarded) until ``release()``; the tests kill kai meanwhile (a gang cut after k
binds). Every request is recorded (:attr:`records`): time, method, path, query, the
User-Agent, the fault, and the upstream status. ``set_faults(None)`` stops the faults.

Used by tests/e2e/test_reliability_faults.py, tests/testing/test_faultproxy.py and
tests/cache/test_watch.py.
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

__all__ = ["Faults", "FaultProxy", "Record"]

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
        "content-length"}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Faults:
    latency: float = 0.0
    p_429: float = 0.0
    retry_after: int = 1
    p_503: float = 0.0
    p_lost: float = 0.0
    p_reset: float = 0.0
    p_truncate: float = 0.0
    cut_after: int = 20
    cut_seconds: float = 5.0
    expire_watches: int = 0
    max_in_a_row: int = 2


@dataclass
class Record:
    t: float                  # time.monotonic() when the request arrived
    method: str
    path: str
    query: str
    user_agent: str
    fault: str = ""           # "", "429", "503", "lost", "reset", "truncate", "expired", "held"
    status: int = 0           # upstream status (0: not forwarded / no answer)
    t_done: float = 0.0


@dataclass
class _Hold:
    pred: Callable[[str, str], bool]
    after: int
    seen: int = 0
    released: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """See the module docstring. ``upstream``: ``https://127.0.0.1:port``; ``ca_file`` its CA."""

    def __init__(self, upstream: str, ca_file: str | None, faults: Faults | None = None, seed: int = 0) -> None:
        u = urlsplit(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 443
        self._ctx = ssl.create_default_context(cafile=ca_file)
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._in_a_row: dict[tuple[str, str], int] = {}
        self._holds: list[_Hold] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._local = threading.local()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: str | Path, token: str, user: str = "via-proxy") -> str:
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "proxy",
               "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
               "users": [{"name": user, "user": {"token": token}}],
               "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": user}}]}
        p = Path(path)
        p.write_text(json.dumps(cfg))
        p.chmod(0o600)
        return str(p)

    # ------------------------------------------------------------------ control
    def set_faults(self, faults: Faults | None) -> None:
        with self._lock:
            self.faults = faults or Faults()
            self._in_a_row.clear()

    def hold(self, pred: Callable[[str, str], bool], after: int = 0) -> None:
        """Hold requests ``pred(method, path)`` beyond the first ``after`` until :meth:`release`."""
        with self._lock:
            self._holds.append(_Hold(pred, after))

    def release(self) -> None:
        """Held requests are dropped (connection closed, never forwarded); new ones pass."""
        with self._lock:
            holds, self._holds = self._holds, []
        for h in holds:
            h.released.set()

    def held(self) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.fault == "held" and not r.t_done)

    def select(self, method: str | None = None, contains: str = "", fault: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self.records if (method is None or r.method == method) and contains in r.path
                    and (fault is None or r.fault == fault)]

    # ------------------------------------------------------------------ decisions (under the lock)
    def _draw(self, method: str, path: str, watch: bool) -> tuple[str, float, tuple[int, float]]:
        """(fault, latency, (cut after events, cut after seconds)) for one request."""
        with self._lock:
            f = self.faults
            lat = self.rng.uniform(0, f.latency) if f.latency > 0 else 0.0
            for h in self._holds:
                if h.pred(method, path):
                    h.seen += 1
                    if h.seen > h.after:
                        return "held", lat, (0, 0.0)
            if watch and f.expire_watches > 0:
                f.expire_watches -= 1
                return "expired", lat, (0, 0.0)
            key = (method, path)
            fault = ""
            if self._in_a_row.get(key, 0) < f.max_in_a_row:
                x = self.rng.random()
                if x < f.p_429:
                    fault = "429"
                elif x < f.p_429 + f.p_503:
                    fault = "503"
                elif method in _WRITES and x < f.p_429 + f.p_503 + f.p_lost:
                    fault = "lost"
                elif watch:
                    y = self.rng.random()
                    if y < f.p_reset:
                        fault = "reset"
                    elif y < f.p_reset + f.p_truncate:
                        fault = "truncate"
            self._in_a_row[key] = self._in_a_row.get(key, 0) + 1 if fault in ("429", "503", "lost") else 0
            cut = (self.rng.randint(0, max(f.cut_after, 0)), self.rng.uniform(0, f.cut_seconds)) \
                if fault in ("reset", "truncate") else (0, 0.0)
            return fault, lat, cut

    def _hold_event(self, method: str, path: str) -> threading.Event:
        with self._lock:
            for h in self._holds:
                if h.pred(method, path):
                    return h.released
        done = threading.Event()
        done.set()
        return done

    def _record(self, rec: Record) -> Record:
        with self._lock:
            self.records.append(rec)
        return rec

    def _upstream(self, fresh: bool = False) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPSConnection(self.upstream_host, self.upstream_port, context=self._ctx,
                                               timeout=600)
            self._local.conn = conn
        return conn


def _status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": reason, "code": code}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # ------------------------------------------------------------------
    def _proxy(self) -> None:
        px = self.owner
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        watch = q.get("watch", [""])[0] in ("true", "1")
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        fault, lat, cut = px._draw(self.command, u.path, watch)
        rec = px._record(Record(time.monotonic(), self.command, u.path, u.query,
                                self.headers.get("User-Agent", ""), fault))
        if lat:
            time.sleep(lat)
        if fault == "held":
            px._hold_event(self.command, u.path).wait()
            rec.t_done = time.monotonic()
            self._reset()
            return
        if fault == "429":
            self._answer(429, _status_body(429, "TooManyRequests", "fault proxy: slow down"),
                         {"Retry-After": str(px.faults.retry_after)})
            rec.t_done = time.monotonic()
            return
        if fault == "503":
            self._answer(503, _status_body(503, "ServiceUnavailable", "fault proxy: unavailable"))
            rec.t_done = time.monotonic()
            return
        if fault == "expired":
            line = json.dumps({"type": "ERROR", "object": json.loads(
                _status_body(410, "Expired", "fault proxy: too old resource version"))}).encode() + b"\n"
            self._answer(200, line, {"Content-Type": "application/json"})
            rec.t_done = time.monotonic()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        try:
            resp = self._send_upstream(self.command, self.path, body, headers)
        except OSError as exc:
            self._answer(502, _status_body(502, "BadGateway", f"fault proxy: upstream: {exc}"))
            return
        rec.status = resp.status
        if fault == "lost":           # the API server did it; the client never hears
            resp.read()
            rec.t_done = time.monotonic()
            self._reset()
            return
        if watch and resp.status == 200:
            self._stream(resp, fault, cut)
        else:
            data = resp.read()
            self._answer(resp.status, data, {k: v for k, v in resp.getheaders() if k.lower() not in _HOP})
        rec.t_done = time.monotonic()

    def _send_upstream(self, method: str, path: str, body: bytes | None, headers: dict) -> http.client.HTTPResponse:
        px = self.owner
        for attempt in range(2):
            conn = px._upstream(fresh=attempt > 0)
            try:
                conn.request(method, path, body=body, headers=headers)
                return conn.getresponse()
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
        raise OSError("unreachable")

    def _answer(self, status: int, data: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, resp: http.client.HTTPResponse, fault: str, cut: tuple[int, float]) -> None:
        """Forward a watch line by line (chunked); cut it as the fault says."""
        self.send_response(200)
        self.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")          # the proxy closes each watch connection
        self.end_headers()
        sent = 0
        max_events, max_seconds = cut
        deadline = time.monotonic() + max_seconds
        sock = getattr(getattr(resp, "fp", None), "raw", None)
        sock = getattr(sock, "_sock", None)
        try:
            while True:
                line = b""
                if fault and sock is not None:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    line = resp.readline()
                except TimeoutError:          # the time to cut this stream has come
                    pass
                if fault and (sent >= max_events or time.monotonic() >= deadline):
                    if fault == "reset":
                        self._reset()
                        return
                    if line:                  # truncate: half an event, then the end of the stream
                        self._chunk(line[: max(1, len(line) // 2)])
                    break
                if not line:
                    break
                self._chunk(line)
                sent += 1
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            self.owner._upstream(fresh=True)        # the upstream watch connection is not reusable
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _reset(self) -> None:
        """Close the client connection with a TCP RST (SO_LINGER 0)."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True
