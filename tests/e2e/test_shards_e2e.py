"""End to end: scheduling shards (KAI's SchedulingShard partitions) on the local control plane.

Two ``kai scheduler`` processes with ``--partition-label-value`` ``sa`` and ``sb`` (and the
session's default shard, which owns what carries no node-pool label) run at the same time over
two disjoint pools of kwok nodes labelled ``kai.scheduler/node-pool``. Each shard's queues carry
its label; pods name their shard with the same label (the pod-grouper copies it onto their
PodGroup). Checked: every pod lands in its own pool, each pod is bound exactly once (the API
server's audit log of the schedulers' service account), each shard's cache holds its own nodes
only and its own leader Lease, and a pod labelled for a partition no scheduler serves is left
exactly as it was created (same resourceVersion, no PodGroup, no condition, no Event).
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from e2e_helpers import SchedulerProcess, ensure, pod_manifest, queue_manifest, wait_for
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

POOL_KEY = "kai.scheduler/node-pool"
QUEUES = "/apis/scheduling.run.ai/v2/queues"
SHARDS = ("sa", "sb")
NODES = {s: [f"shard-{s}-0", f"shard-{s}-1"] for s in SHARDS}
GPUS_PER_NODE = 4


@pytest.fixture(scope="module")
def shard_pools(control_plane, kai_client, kai_cluster):
    for shard, names in NODES.items():
        for n in names:
            try:
                control_plane.create_node(fake_node_manifest(n, gpus=GPUS_PER_NODE, cpu="16", memory="64Gi",
                                                             labels={POOL_KEY: shard}))
            except Exception as exc:   # noqa: BLE001 - already there
                if "AlreadyExists" not in str(exc) and "409" not in str(exc):
                    raise
        for q in (queue_manifest(f"{shard}-parent"), queue_manifest(f"{shard}-queue", f"{shard}-parent")):
            q["metadata"]["labels"] = {POOL_KEY: shard}
            ensure(kai_client, QUEUES, q)
    control_plane.wait_nodes_ready([n for names in NODES.values() for n in names])
    return NODES


@pytest.fixture(scope="module")
def shard_schedulers(shard_pools, kai_cluster, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("shards")
    procs = {s: SchedulerProcess(kai_cluster, logdir / f"{s}.log", "--leader-elect", "--namespace", "kai-scheduler",
                                 "--partition-label-value", s) for s in SHARDS}
    try:
        for p in procs.values():
            p.wait_ready()
        yield procs
    finally:
        for p in procs.values():
            p.stop()


def _pods(c, ns):
    return {p["metadata"]["name"]: p for p in c.get(f"/api/v1/namespaces/{ns}/pods")["items"]}


def test_two_shards_schedule_disjoint_pools(kai_client, kai_scheduler, shard_schedulers, kube_namespace,
                                            control_plane):
    c, ns = kai_client, kube_namespace
    per_shard = GPUS_PER_NODE * 2          # fills the shard's pool exactly
    tag = uuid.uuid4().hex[:6]
    outsider = pod_manifest(f"outsider-{tag}", gpus=1, queue="sc-queue", labels={POOL_KEY: "sc"})
    c.post(f"/api/v1/namespaces/{ns}/pods", outsider)
    created_rv = c.get(f"/api/v1/namespaces/{ns}/pods/outsider-{tag}")["metadata"]["resourceVersion"]
    for i in range(per_shard):               # interleaved: both shards get work at the same moment
        for s in SHARDS:
            c.post(f"/api/v1/namespaces/{ns}/pods",
                   pod_manifest(f"{s}-{i}", gpus=1, queue=f"{s}-queue", labels={POOL_KEY: s}))

    def all_bound():
        pods = _pods(c, ns)
        bound = {n: p["spec"].get("nodeName") for n, p in pods.items() if not n.startswith("outsider")}
        return bound if len(bound) == per_shard * 2 and all(bound.values()) else None

    bound = wait_for(all_bound, 90, 0.5, "all shard pods bound")
    for name, node in bound.items():
        shard = name.split("-")[0]
        assert node in NODES[shard], f"{name} of shard {shard} landed on {node}"
    for s in SHARDS:                          # each pool filled exactly: 1 GPU per pod, 4 per node
        used = [n for name, n in bound.items() if name.startswith(s + "-")]
        assert sorted(set(used)) == NODES[s] and all(used.count(n) == GPUS_PER_NODE for n in NODES[s])

    # each pod bound once, by exactly one scheduler
    bindings: dict[str, list[str]] = {}
    for e in control_plane.audit_events():
        ref = e.get("objectRef") or {}
        if (ref.get("resource") == "pods" and ref.get("subresource") == "binding" and ref.get("namespace") == ns
                and e.get("verb") == "create" and (e.get("responseStatus") or {}).get("code", 201) < 300):
            bindings.setdefault(ref.get("name"), []).append(e.get("userAgent", ""))
    assert set(bindings) == set(bound), "binding requests do not match the pods"
    assert all(len(v) == 1 for v in bindings.values()), {k: v for k, v in bindings.items() if len(v) > 1}

    # each shard's cache holds only its pool, and each shard holds its own Lease
    for s, proc in shard_schedulers.items():
        code, body = proc.get("/debug/state")
        assert code == 200
        state = json.loads(body)
        assert state["nodePool"] == s
        assert set(state["nodes"]) == set(NODES[s])
        assert all(q.startswith(s + "-") for q in state["queues"]), state["queues"]
        lease = c.get(f"/apis/coordination.k8s.io/v1/namespaces/kai-scheduler/leases/kai-scheduler-{s}")
        assert lease["spec"].get("holderIdentity"), lease
    code, body = kai_scheduler.get("/debug/state")
    default_nodes = set(json.loads(body)["nodes"])
    assert not default_nodes & {n for names in NODES.values() for n in names}, "default shard sees shard nodes"

    # the pod of a partition nobody serves: untouched by all three schedulers
    time.sleep(3)
    pod = c.get(f"/api/v1/namespaces/{ns}/pods/outsider-{tag}")
    assert pod["metadata"]["resourceVersion"] == created_rv, pod["metadata"]
    assert not pod["spec"].get("nodeName")
    assert "pod-group-name" not in (pod["metadata"].get("annotations") or {})
    assert not (pod.get("status") or {}).get("conditions")
    events = c.get(f"/api/v1/namespaces/{ns}/events")["items"]
    assert not [e for e in events if (e.get("involvedObject") or {}).get("name") == f"outsider-{tag}"]
    pgs = c.get(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups")["items"]
    assert {pg["metadata"]["labels"].get(POOL_KEY) for pg in pgs} == set(SHARDS)
