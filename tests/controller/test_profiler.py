"""The profiling endpoint (kai.controller.profiler): cProfile of cycles, stacks, heap."""
from __future__ import annotations

import marshal
import threading
import time
import urllib.error
import urllib.request

import pytest

from kai.controller.profiler import CycleProfiler, ProfilerServer


def marker_cycle_work(n: int = 2000) -> int:
    return sum(i * i for i in range(n))


@pytest.fixture
def served():
    prof = CycleProfiler()
    server = ProfilerServer(prof, 0, host="127.0.0.1").start()
    stop = threading.Event()

    def loop():                      # the scheduler's cycle thread
        while not stop.is_set():
            prof.run(marker_cycle_work)
            time.sleep(0.01)

    t = threading.Thread(target=loop, name="cycles", daemon=True)
    t.start()
    yield server
    stop.set()
    t.join()
    server.stop()


def _get(server, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_cpu_profile_measures_the_cycles(served):
    code, body = _get(served, "/debug/pprof/profile?seconds=1&limit=20")
    text = body.decode()
    assert code == 200 and "scheduling cycle(s) profiled" in text
    assert int(text.split()[1]) > 5 and "marker_cycle_work" in text


def test_cpu_profile_as_a_pstats_file(served, tmp_path):
    import pstats
    code, body = _get(served, "/debug/pprof/profile?seconds=1&format=pstats")
    assert code == 200
    path = tmp_path / "kai.pstats"
    path.write_bytes(body)
    stats = pstats.Stats(str(path))
    assert any(fn[2] == "marker_cycle_work" for fn in stats.stats)
    assert marshal.loads(body) == stats.stats


def test_one_profile_at_a_time(served):
    got = []
    t = threading.Thread(target=lambda: got.append(_get(served, "/debug/pprof/profile?seconds=2")))
    t.start()
    time.sleep(0.5)
    code, body = _get(served, "/debug/pprof/profile?seconds=1")
    t.join()
    assert code == 409 and got[0][0] == 200


def test_nothing_is_profiled_between_requests():
    prof = CycleProfiler()
    assert prof.run(marker_cycle_work, 10) == 285 and prof.cycles == 0


@pytest.mark.parametrize("query", ["seconds=0", "seconds=x", "format=svg", "sort=nope", "limit=0"])
def test_bad_parameters_are_400(served, query):
    code, body = _get(served, f"/debug/pprof/profile?{query}")
    assert code == 400 and body


def test_thread_stacks_and_heap_and_index(served):
    code, body = _get(served, "/debug/pprof/goroutine")
    assert code == 200 and b"thread cycles" in body
    code, body = _get(served, "/debug/pprof/heap?seconds=0.3&limit=5")
    assert code == 200 and body.startswith(b"# tracemalloc over 0.3s")
    code, body = _get(served, "/debug/pprof/")
    assert code == 200 and b"/debug/pprof/profile" in body
    assert _get(served, "/debug/pprof/nope")[0] == 404
