"""kai.cache.usage_db / usage_store: the lister (KAI's fetch, staleness and wait rules), the
embedded source's recording, and the history ConfigMap on a real API server (round trip, a
stale writer refused, a new leader continuing the history)."""
from __future__ import annotations

import threading

import pytest

from kai.usage.model import parse_usage_db_config, parse_usage_params
from kai.cache.kubeclient import KubeClient
from kai.cache.usage_db import EmbeddedUsageSource, UsageLister, build_usage_lister
from kai.cache.usage_store import ConfigMapHistoryStore


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FlakySource:
    def __init__(self) -> None:
        self.answers: list = []

    def describe(self) -> str:
        return "test"

    def fetch(self, now):
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a


def test_lister_keeps_last_answer_and_reports_staleness():
    clock = Clock()
    params = parse_usage_params({"fetchInterval": "1m", "stalenessPeriod": "5m"})
    src = FlakySource()
    lister = UsageLister(src, params, clock=clock)
    assert lister.current() == ({}, "usage data is not available")
    src.answers = [{"a": (0.5, 0, 0)}, RuntimeError("prometheus down")]
    assert lister.fetch_once()
    assert lister.current() == ({"a": (0.5, 0, 0)}, "")
    clock.t += 400
    assert not lister.fetch_once()                      # the error is logged, the last answer kept
    usage, why = lister.current()
    assert usage == {"a": (0.5, 0, 0)} and "stale" in why


def test_wait_for_first_gives_up_after_wait_timeout():
    lister = UsageLister(FlakySource(), parse_usage_params({"waitTimeout": "0.2s"}))
    assert lister.wait_for_first() is False
    stop = threading.Event()
    stop.set()
    assert UsageLister(FlakySource(), parse_usage_params({})).wait_for_first(stop) is False


def test_embedded_recording_skips_unknown_gaps():
    params = parse_usage_params({"windowSize": "1h", "stalenessPeriod": "5m"})
    src = EmbeddedUsageSource(params, None, clock=Clock(0))
    src.record(0, (8, 0, 0), {"a": (8, 0, 0)})
    src.record(600, (8, 0, 0), {"a": (0, 0, 0)})        # 10 minutes since: nobody knows, not counted
    src.record(660, (8, 0, 0), {"b": (8, 0, 0)})        # a's 0 held for a minute
    src.record(720, (8, 0, 0), {})                      # b's 8 held for a minute
    assert src.fetch(720) == {"b": pytest.approx((0.5, 0, 0))}


def test_build_lister():
    assert build_usage_lister(None, None, "ns", "kai-scheduler") is None
    emb = build_usage_lister(parse_usage_db_config({}), object(), "kai", "kai-scheduler")
    assert emb.describe() == "embedded (ConfigMap kai/kai-scheduler-usage-history)"
    other = build_usage_lister(parse_usage_db_config({"connectionString": "ops/history"}), object(), "kai", "s")
    assert other.describe() == "embedded (ConfigMap ops/history)"
    prom = build_usage_lister(parse_usage_db_config({"clientType": "prometheus", "connectionStringEnvVar": "PROM"}),
                              None, "kai", "s", environ={"PROM": "http://prom:9090"})
    assert prom.describe() == "prometheus at http://prom:9090"


@pytest.mark.integration
def test_history_configmap_on_a_real_api_server(control_plane, kube_namespace):
    client = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    params = parse_usage_params({"windowSize": "1h", "fetchInterval": "1s"})
    clock = Clock(10_000)
    leader = EmbeddedUsageSource(params, ConfigMapHistoryStore(client, kube_namespace, "h"), clock=clock)
    leader.tick(clock.t)                                   # nothing stored yet
    leader.record(clock.t, (8, 8000, 8e9), {"a": (8, 0, 0)})
    clock.t += 60
    leader.record(clock.t, (8, 8000, 8e9), {})
    leader.tick(clock.t)                                   # created
    cm = client.get(f"/api/v1/namespaces/{kube_namespace}/configmaps/h")
    assert cm["metadata"]["labels"]["kai.scheduler/usage-history"] == "true"

    # a second replica becomes leader: it reads the history and continues it
    follower = EmbeddedUsageSource(params, ConfigMapHistoryStore(client, kube_namespace, "h"), clock=clock)
    follower.on_leading()
    follower.tick(clock.t)
    assert follower.fetch(clock.t)["a"][0] == pytest.approx(1.0)
    clock.t += 60
    follower.record(clock.t, (8, 8000, 8e9), {"b": (8, 0, 0)})
    clock.t += 60
    follower.record(clock.t, (8, 8000, 8e9), {})
    follower.tick(clock.t)                                 # replaced (resourceVersion precondition)

    # the old leader, unaware, tries to write its stale copy: refused, and it reloads
    leader.record(clock.t, (8, 8000, 8e9), {})
    clock.t += 1
    leader.record(clock.t, (8, 8000, 8e9), {})
    leader.tick(clock.t)
    leader.tick(clock.t)
    # a 60 s, b 120 s (the new leader's first values also stand for the minute since the last
    # save), of 180 s of 8 GPUs; the old leader's refused copy left no trace
    usage = leader.fetch(clock.t)
    assert usage["a"][0] == pytest.approx(1 / 3, rel=1e-2) and usage["b"][0] == pytest.approx(2 / 3, rel=1e-2)
