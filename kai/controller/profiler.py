"""The profiling endpoint of ``kai scheduler`` (KAI's ``--enable-profiler`` / ``--profiler-port``).

KAI serves Go's pprof on port 8182; kai serves the Python equivalents under the same paths,
on their own port, only when the flag is on (``kai.controller.main`` starts it):

``/debug/pprof/``
    an index of what follows.
``/debug/pprof/profile?seconds=30``
    ``cProfile`` of the scheduling cycles that run in the next ``seconds`` (1-300, default
    30): the cycle thread enables the profiler around each cycle (:meth:`CycleProfiler.run`),
    so only scheduling work is measured, at full detail, and nothing is slowed when no
    profile is being taken. The answer is ``pstats`` text sorted by cumulative time
    (``sort=`` any pstats key, ``limit=`` lines, default 60), or with ``format=pstats`` the
    binary stats file ``python -m pstats`` and snakeviz read. One profile at a time (409).
``/debug/pprof/goroutine`` (also ``/debug/pprof/threads``)
    the current stack of every thread.
``/debug/pprof/heap?seconds=10``
    ``tracemalloc``: traces allocations for ``seconds`` (0-300) and answers the ``limit``
    (default 40) source lines holding the most memory allocated meanwhile and still alive,
    with the traced totals. Tracing stops afterwards unless it was already on.
"""
from __future__ import annotations

import cProfile
import io
import marshal
import pstats
import sys
import threading
import time
import traceback
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

MAX_SECONDS = 300.0


class CycleProfiler:
    """cProfile switched on around scheduling cycles while a profile is being taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()          # guards _prof
        self._cycle = threading.Lock()         # held while a profiled cycle runs
        self._prof: cProfile.Profile | None = None
        self.cycles = 0

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)`` (one cycle), profiled if a profile is being taken."""
        with self._lock:
            prof = self._prof
        if prof is None:
            return fn(*args)
        with self._cycle:
            prof.enable()
            try:
                return fn(*args)
            finally:
                prof.disable()
                self.cycles += 1

    def start(self) -> bool:
        with self._lock:
            if self._prof is not None:
                return False
            self._prof = cProfile.Profile()
            self.cycles = 0
            return True

    def finish(self) -> tuple[cProfile.Profile, int]:
        """Stop profiling; the profile (no cycle is inside it any more) and its cycle count."""
        with self._lock:
            prof, self._prof = self._prof, None
        with self._cycle:                      # wait for a cycle still being profiled
            return prof, self.cycles


def thread_stacks() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"thread {names.get(ident, '?')} ({ident}):\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(out)


def heap_profile(seconds: float, limit: int, stop: threading.Event) -> str:
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(10)
    try:
        before = tracemalloc.take_snapshot()
        stop.wait(seconds)
        after = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    lines = [f"# tracemalloc over {seconds:g}s: traced {current / 2**20:.1f} MiB now, peak {peak / 2**20:.1f} MiB",
             f"# top {limit} lines by memory allocated in the window and still held"]
    lines += [str(s) for s in stats[:limit]]
    return "\n".join(lines) + "\n"


INDEX = b"""kai profiler (Python counterparts of Go's pprof paths)
/debug/pprof/profile?seconds=30[&format=pstats][&sort=cumulative][&limit=60]  cProfile of scheduling cycles
/debug/pprof/goroutine                                                          stacks of all threads
/debug/pprof/heap?seconds=10[&limit=40]                                         tracemalloc: memory allocated and held
"""


class ProfilerServer:
    """HTTP server of the endpoints above, on ``port`` (0: any free port)."""

    def __init__(self, profiler: CycleProfiler, port: int, host: str = "0.0.0.0") -> None:
        self.profiler = profiler
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                try:
                    code, ctype, body = server.answer(url.path, q)
                except ValueError as exc:
                    code, ctype, body = 400, "text/plain", f"{exc}\n".encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="profiler", daemon=True)

    def answer(self, path: str, q: dict[str, str]) -> tuple[int, str, bytes]:
        path = path.rstrip("/") or "/"
        if path in ("/debug/pprof", "/"):
            return 200, "text/plain", INDEX
        if path in ("/debug/pprof/goroutine", "/debug/pprof/threads"):
            return 200, "text/plain", thread_stacks().encode()
        if path == "/debug/pprof/heap":
            secs = _number(q, "seconds", 10.0, 0.0, MAX_SECONDS)
            limit = int(_number(q, "limit", 40, 1, 10_000))
            return 200, "text/plain", heap_profile(secs, limit, self.stopping).encode()
        if path == "/debug/pprof/profile":
            return self._cpu(q)
        return 404, "text/plain", b"not found\n"

    def _cpu(self, q: dict[str, str]) -> tuple[int, str, bytes]:
        secs = _number(q, "seconds", 30.0, 1.0, MAX_SECONDS)
        fmt = q.get("format", "text")
        if fmt not in ("text", "pstats"):
            raise ValueError(f"format={fmt!r}: expected text or pstats")
        sort = q.get("sort", "cumulative")
        if sort not in pstats.Stats.sort_arg_dict_default:
            raise ValueError(f"sort={sort!r}: expected one of {sorted(pstats.Stats.sort_arg_dict_default)}")
        limit = int(_number(q, "limit", 60, 1, 100_000))
        if not self.profiler.start():
            return 409, "text/plain", b"a profile is already being taken\n"
        t0 = time.monotonic()
        self.stopping.wait(secs)
        prof, cycles = self.profiler.finish()
        prof.create_stats()
        if fmt == "pstats":
            return 200, "application/octet-stream", marshal.dumps(prof.stats)
        buf = io.StringIO()
        buf.write(f"# {cycles} scheduling cycle(s) profiled over {time.monotonic() - t0:.1f}s\n")
        if prof.stats:
            pstats.Stats(prof, stream=buf).sort_stats(sort).print_stats(limit)
        return 200, "text/plain", buf.getvalue().encode()

    def start(self) -> ProfilerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def _number(q: dict[str, str], key: str, default: float, lo: float, hi: float) -> float:
    raw = q.get(key)
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r}: expected a number") from None
    if not lo <= v <= hi:
        raise ValueError(f"{key}={raw}: expected {lo:g} to {hi:g}")
    return v
