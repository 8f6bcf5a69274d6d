"""End to end: ``kai status`` against the local control plane with the real ``kai scheduler`` running.

A node pool of two 4-GPU kwok nodes, a queue tree (vs-root -> vs-team-a, vs-team-b), a running
gang, a gang too big for the pool, a job over its queue's limit and two fraction pods sharing a
GPU. ``kai status`` runs as a subprocess (the real CLI, the admin kubeconfig) and its JSON is
checked against what was created and what the scheduler wrote; the text view and ``--watch``
are checked too. On kwok nothing reads a GPU through NVML, so the reservation pod's GPU index
annotation is patched by the test (as in test_status_e2e.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from e2e_helpers import REPO, SchedulerProcess, ensure, play_gpu_device, pod_manifest, queue_manifest, wait_for
from kai.cache.kubeclient import ApiError
from kai.api.reasons import cause
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

QUEUES = "/apis/scheduling.run.ai/v2/queues"
PG = "/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
RES_PODS = "/api/v1/namespaces/kai-resource-reservation/pods"
POOL = "vs-pool"
NODES = ("vs-gpu-0", "vs-gpu-1")


def kai_status(kubeconfig: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "kai", "status", "--kubeconfig", kubeconfig, *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=str(REPO))


@pytest.fixture(scope="module")
def pool(control_plane):
    for n in NODES:
        try:
            control_plane.create_node(fake_node_manifest(n, gpus=4, cpu="16", memory="64Gi",
                                                         labels={"kai.scheduler/node-pool": POOL}))
        except Exception as exc:   # noqa: BLE001 - already there
            if "AlreadyExists" not in str(exc) and "409" not in str(exc):
                raise
    control_plane.wait_nodes_ready(list(NODES))
    return POOL


@pytest.fixture(scope="module")
def pool_scheduler(pool, kai_cluster, tmp_path_factory):
    """The pool's own scheduling shard (its nodes carry kai.scheduler/node-pool, which the
    default shard leaves alone, as KAI's does)."""
    proc = SchedulerProcess(kai_cluster, tmp_path_factory.mktemp("vs-pool") / "scheduler.log", "--leader-elect",
                            "--namespace", "kai-scheduler", "--partition-label-value", POOL)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _in_pool(m: dict) -> dict:
    m["spec"]["nodeSelector"] = {"kai.scheduler/node-pool": POOL}
    m["metadata"]["labels"]["kai.scheduler/node-pool"] = POOL
    return m


def _pool_queue(q: dict) -> dict:
    q["metadata"]["labels"] = {"kai.scheduler/node-pool": POOL}
    return q


def _podgroup(c, ns, name, queue, min_member):
    ensure(c, PG.format(ns=ns), {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                                 "metadata": {"name": name, "labels": {"kai.scheduler/node-pool": POOL}},
                                 "spec": {"minMember": min_member, "queue": queue}})


def _reasons(c, ns, name) -> list[str]:
    st = c.get(f"{PG.format(ns=ns)}/{name}").get("status") or {}
    for cond in st.get("schedulingConditions") or []:
        if cond.get("type") == "UnschedulableOnNodePool":
            return [r.get("message", "") for r in cond.get("reasons") or []]
    return []


def test_status_shows_queues_gangs_fractions_and_pool(kai_client, kai_scheduler, pool_scheduler, kube_namespace,
                                                      pool, control_plane):
    # kai_scheduler (the default shard) runs too: it must leave the pool's reservation pods alone
    c, ns = kai_client, kube_namespace
    ensure(c, QUEUES, _pool_queue(queue_manifest("vs-root")))
    ensure(c, QUEUES, _pool_queue(queue_manifest("vs-team-a", "vs-root", 2)))
    qb = _pool_queue(queue_manifest("vs-team-b", "vs-root", 2))
    qb["spec"]["resources"]["gpu"]["limit"] = 3
    ensure(c, QUEUES, qb)
    uuid = "GPU-5f0c9a1e-2222-4333-8444-555566667777"
    stop = threading.Event()

    t = play_gpu_device(c, uuid, lambda n: n in NODES, stop)
    try:
        # a running gang of 2 x 2 GPUs (over vs-team-a's quota of 2: the scheduler writes OverQuota)
        _podgroup(c, ns, "gang", "vs-team-a", 2)
        for i in range(2):
            c.post(f"/api/v1/namespaces/{ns}/pods", _in_pool(pod_manifest(
                f"gang-{i}", gpus=2, annotations={"pod-group-name": "gang"})))
        wait_for(lambda: all(c.get(f"/api/v1/namespaces/{ns}/pods/gang-{i}")["spec"].get("nodeName")
                             for i in range(2)), 40, what="the gang bound")
        # two fractions sharing one GPU in vs-team-b
        for name, frac in (("frac-a", "0.5"), ("frac-b", "0.25")):
            _podgroup(c, ns, name, "vs-team-b", 1)
            c.post(f"/api/v1/namespaces/{ns}/pods", _in_pool(pod_manifest(
                name, gpus=0, annotations={"pod-group-name": name, "gpu-fraction": frac})))
        wait_for(lambda: all(c.get(f"/api/v1/namespaces/{ns}/pods/{n}")["spec"].get("nodeName")
                             for n in ("frac-a", "frac-b")), 60, what="both fractions bound")
        # a gang the pool cannot hold, and a job above vs-team-b's limit of 3 GPUs
        _podgroup(c, ns, "huge", "vs-team-a", 3)
        for i in range(3):
            c.post(f"/api/v1/namespaces/{ns}/pods", _in_pool(pod_manifest(
                f"huge-{i}", gpus=4, annotations={"pod-group-name": "huge"})))
        _podgroup(c, ns, "over", "vs-team-b", 1)
        c.post(f"/api/v1/namespaces/{ns}/pods", _in_pool(pod_manifest(
            "over-0", gpus=3, annotations={"pod-group-name": "over"})))
        huge_why = wait_for(lambda: _reasons(c, ns, "huge"), 40, what="huge's UnschedulableOnNodePool condition")
        over_why = wait_for(lambda: _reasons(c, ns, "over"), 40, what="over's UnschedulableOnNodePool condition")
        wait_for(lambda: "OverQuota" in [x["type"] for x in (c.get(f"{QUEUES}/vs-team-a").get("status") or {})
                                         .get("conditions") or []], 30, what="vs-team-a OverQuota condition")

        got = kai_status(control_plane.kubeconfig, "--output", "json", "--top", "50")
        assert got.returncode == 0, got.stderr
        doc = json.loads(got.stdout)
        # the scheduler may rewrite a message between our read and kai status's list
        huge_now, over_now = _reasons(c, ns, "huge"), _reasons(c, ns, "over")

        # --- the queue tree, with quota, fair share, allocation and pending GPUs
        qs = {q["name"]: q for q in doc["queues"]}
        root, a, b = qs["vs-root"], qs["vs-team-a"], qs["vs-team-b"]
        assert (root["parent"], root["depth"], a["parent"], a["depth"], b["depth"]) == (None, 0, "vs-root", 1, 1)
        names = [q["name"] for q in doc["queues"]]
        assert names.index("vs-root") < names.index("vs-team-a") < names.index("vs-team-b")   # tree order
        assert (a["quota"]["gpu"], b["quota"]["gpu"], b["limit"]["gpu"]) == (2, 2, 3)
        assert a["allocated"]["gpu"] == 4 and b["allocated"]["gpu"] == 0.75
        assert root["allocated"]["gpu"] == 4.75
        assert a["requested"]["gpu"] == 16 and a["pending"]["gpu"] == 12     # huge: 3 x 4 GPUs waiting
        assert b["pending"]["gpu"] == 3
        assert a["fairShare"]["gpu"] >= a["allocated"]["gpu"] and b["fairShare"]["gpu"] >= 0.75
        assert "OverQuota" in a["conditions"] and a["problem"] is None
        assert doc["capacity"]["gpu"] >= 8

        # --- pending PodGroups, with the reasons the scheduler wrote, grouped by cause
        top = {r["podGroup"]: r for r in doc["pending"]["top"]}
        huge, over = top[f"{ns}/huge"], top[f"{ns}/over"]
        assert (huge["queue"], huge["pendingPods"], huge["pods"], huge["minMember"]) == ("vs-team-a", 3, 3, 3)
        assert huge["source"] == "PodGroup" and huge["reasons"] in (huge_why, huge_now)
        assert huge["cause"] == cause(huge["reasons"][0])
        assert "insufficient nvidia.com/gpu" in huge["reasons"][0] or "didn't match" in huge["reasons"][0]
        assert over["cause"] == "OverLimit" and over["reasons"] in (over_why, over_now)
        assert f"{ns}/gang" not in top and f"{ns}/frac-a" not in top
        causes = {x["cause"]: x["count"] for x in doc["pending"]["byCause"]}
        assert causes.get("OverLimit", 0) >= 1 and causes.get(huge["cause"], 0) >= 1

        # --- GPU occupancy of the pool: 4 whole, 0.75 in fractions on one shared GPU
        pools = {p["name"]: p for p in doc["gpu"]["pools"]}
        p = pools[POOL]
        assert (p["nodes"], p["gpus"], p["whole"], p["fractional"], p["fragmented"], p["free"]) == \
            (2, 8, 4, 0.75, 0.25, 3)
        assert p["largestFree"] in (2, 3)
        assert doc["gpu"]["total"]["gpus"] >= 8
        assert doc["counts"]["nodes"] >= 2 and doc["counts"]["queues"] >= 3
        assert doc["schedulerConfig"].startswith("KAI defaults")      # the chart's ConfigMap is not installed here
        assert doc["timing"]["listCalls"] >= 5

        # --- the text view draws the same
        txt = kai_status(control_plane.kubeconfig, "--width", "130", "--color", "never")
        assert txt.returncode == 0, txt.stderr
        out = txt.stdout
        for needle in ("QUEUES", "├─ vs-team-a", "└─ vs-team-b", "PENDING", f"{ns}/huge", "OverLimit",
                       "GPU OCCUPANCY", POOL, "█", "│"):
            assert needle in out, f"{needle!r} missing from:\n{out}"
        assert "\x1b[" not in out                                   # --color never

        # --- the scheduler's ConfigMap, when there, configures the fair-share computation
        cm_path = "/api/v1/namespaces/kai-scheduler/configmaps"
        ensure(c, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kai-scheduler"}})
        ensure(c, cm_path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kai-scheduler-config"},
                            "data": {"config.yaml": "actions: allocate\ntiers:\n- plugins:\n  - name: proportion\n"
                                                    "    arguments: {kValue: '2.0'}\n"}})
        try:
            got = kai_status(control_plane.kubeconfig, "-o", "json")
            assert got.returncode == 0, got.stderr
            assert json.loads(got.stdout)["schedulerConfig"] == "ConfigMap kai-scheduler/kai-scheduler-config"
        finally:
            c.delete(f"{cm_path}/kai-scheduler-config")

        # --- kubectl plugin entry point answers the same document
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        plug = subprocess.run([sys.executable, "-c", "import sys; from kai.cli import kubectl_main; "
                               "sys.argv = ['kubectl-kai'] + sys.argv[1:]; sys.exit(kubectl_main())",
                               "status", "-o", "json", "--kubeconfig", control_plane.kubeconfig],
                              capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO))
        assert plug.returncode == 0, plug.stderr
        assert {q["name"] for q in json.loads(plug.stdout)["queues"]} >= {"vs-root", "vs-team-a", "vs-team-b"}
    finally:
        # leave no GPU reservation pod behind: a scheduler starting later must find none of ours
        try:
            c.request("DELETE", f"/api/v1/namespaces/{ns}/pods", params={"gracePeriodSeconds": 0})
        except ApiError:
            pass

        def reservations_gone() -> bool:
            try:
                return not [p for p in c.get(RES_PODS)["items"] if p["spec"].get("nodeName") in NODES]
            except ApiError:
                return False
        try:
            wait_for(reservations_gone, 60, what="the reservation pods on the vs nodes deleted")
        finally:
            stop.set()
            t.join(2)
        for q in ("vs-team-a", "vs-team-b", "vs-root"):
            try:
                c.delete(f"{QUEUES}/{q}")
            except ApiError:
                pass


def test_watch_refreshes_until_stopped(control_plane, kai_cluster):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "kai", "status", "--kubeconfig", control_plane.kubeconfig,
                             "--watch", "--interval", "0.3", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(10)
    docs = [json.loads(x) for x in lines]
    assert all(d["counts"]["nodes"] >= 2 for d in docs)
    assert docs[0]["generatedAt"] <= docs[1]["generatedAt"]

