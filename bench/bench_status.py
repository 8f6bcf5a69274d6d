"""``kai status`` on a live control plane with 1,000 kwok GPU nodes (issue 15: "answers in under a second").

One control plane (``bench_live.LiveBench``: etcd + kube-apiserver + kwok), N kwok nodes with 8
GPUs, KAI's default queues plus a small tree, and a workload of G gangs of 8 pending GPU pods
(no scheduler runs, so every pod and PodGroup is in the lists). Timed, in this process:

- ``kai status``: :func:`kai.status.live.status`: one paged list per kind (Nodes, Pods,
  PodGroups, Queues, PriorityClasses, in parallel) + the ConfigMap GET, the ClusterState load
  and one scheduler session for the fair shares; the document as ``--output json`` prints it.
- baseline, same run: the same five lists through the official ``kubernetes`` client
  (``CoreV1Api.list_node`` etc., its object model), without computing anything.

Also reported (``extra_info``): the cold CLI, ``python -m kai status -o json`` in a fresh
interpreter (imports included), wall time over 3 runs.

pytest (smoke size with KAI_BENCH_SMOKE=1: 20 nodes, 10 gangs)::

    PYTHONPATH=.:bench KAI_BENCH_SMOKE=1 python -m pytest bench/bench_status.py -p no:cacheprovider \
        --benchmark-enable -q -s

Full size: the same without KAI_BENCH_SMOKE (1,000 nodes, 125 gangs = 1,000 pending pods).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sizes import size  # noqa: E402
from bench_live import LiveBench, queue_manifest  # noqa: E402
from kai.testing.controlplane import binaries_available  # noqa: E402

NODES = size(1000, 20)
GANGS = size(125, 10)


@pytest.fixture(scope="module")
def cluster():
    ok, reason = binaries_available(names=["etcd", "kube-apiserver", "kwok"])
    if not ok:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: bench_status needs the local control plane, but {reason}", pytrace=False)
        pytest.skip(reason)
    b = LiveBench(NODES, log=lambda *a: None)
    b.start()
    try:
        for q in (queue_manifest("org"), queue_manifest("team-a", "org"), queue_manifest("team-b", "org")):
            b._ensure("/apis/scheduling.run.ai/v2/queues", q)
        b.create_workload("bench-status", "B", kai=True, pods=0, gangs=GANGS, gang_size=8)
        yield b
    finally:
        b.stop()


def _official_lists(api_client, times: dict[str, float]) -> int:
    """The five lists through the official client, one after the other; seconds per call into ``times``."""
    from kubernetes import client as k
    core, sched, custom = k.CoreV1Api(api_client), k.SchedulingV1Api(api_client), k.CustomObjectsApi(api_client)
    calls = {
        "nodes": lambda: core.list_node().items,
        "pods": lambda: core.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed").items,
        "podgroups": lambda: custom.list_cluster_custom_object("scheduling.run.ai", "v2alpha2", "podgroups")["items"],
        "queues": lambda: custom.list_cluster_custom_object("scheduling.run.ai", "v2", "queues")["items"],
        "priorityclasses": lambda: sched.list_priority_class().items,
    }
    n = 0
    for name, fn in calls.items():
        t = time.perf_counter()
        n += len(fn())
        times[name] = round(times.get(name, 0.0) + time.perf_counter() - t, 4)
    return n


@pytest.mark.integration
def test_status_on_1000_nodes(benchmark, cluster):
    from kai.status.live import connect, status
    client = connect(cluster.cp.kubeconfig)
    baseline_client = cluster.cp.api_client()
    _official_lists(baseline_client, {})          # warm-up: connection, the client's lazy imports
    t = time.perf_counter()
    rounds = 3
    per_call: dict[str, float] = {}
    for _ in range(rounds):
        _official_lists(baseline_client, per_call)
    baseline = (time.perf_counter() - t) / rounds

    doc = benchmark.pedantic(lambda: status(client), rounds=5, iterations=1, warmup_rounds=1)
    assert doc["counts"]["nodes"] == NODES and doc["pending"]["pods"] == GANGS * 8
    assert doc["gpu"]["total"]["gpus"] == NODES * 8
    kai_mean = benchmark.stats.stats.mean

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        got = subprocess.run([sys.executable, "-m", "kai", "status", "--kubeconfig", cluster.cp.kubeconfig,
                              "-o", "json"], capture_output=True, text=True, env=env, cwd=str(REPO), timeout=120)
        walls.append(time.perf_counter() - t)
        assert got.returncode == 0, got.stderr
    benchmark.extra_info.update({
        "nodes": NODES, "pending_pods": GANGS * 8, "list_calls": doc["timing"]["listCalls"],
        "list_seconds_last": doc["timing"]["listSeconds"], "compute_seconds_last": doc["timing"]["computeSeconds"],
        "baseline_official_client_lists_s": round(baseline, 4),
        "baseline_per_call_s": {k: round(v / rounds, 4) for k, v in per_call.items()},
        "ratio_vs_official_client_lists": round(baseline / kai_mean, 2),
        "cli_cold_wall_s_min": round(min(walls), 3), "cli_cold_wall_s_mean": round(sum(walls) / len(walls), 3),
    })
    print(f"\nkai status, {NODES} nodes: {kai_mean:.3f}s mean in-process "
          f"(list {doc['timing']['listSeconds']:.3f}s + compute {doc['timing']['computeSeconds']:.3f}s); "
          f"official client lists alone {baseline:.3f}s; cold CLI {min(walls):.3f}s min / "
          f"{sum(walls) / len(walls):.3f}s mean; official client per call "
          f"{ {k: round(v / rounds, 3) for k, v in per_call.items()} }")
    if NODES >= 1000:
        assert kai_mean < 1.0, f"kai status took {kai_mean:.3f}s on {NODES} nodes"
