"""Synthetic clusters and workloads for benchmarks and property tests.

``synthetic_nodes(n)``: N nodes x 8 GPUs (or CPU-only), mixed CPU/memory, zone/rack/product
labels, a share of tainted nodes. ``synthetic_jobs(...)``: PodGroups with pods, gangs of
1-64, GPU and CPU-only. Objects are built directly as kai.api.k8s structs (no YAML), with a
seeded RNG so runs are repeatable.
"""
from __future__ import annotations

import random

from kai.api.k8s import (Container, NodeSpec, NodeStatus, ObjectMeta, Pod, PodGroup, PodGroupSpec,
                         PodSpec, PodStatus, ResourceRequirements, Taint, Toleration, Node, Queue,
                         QueueResource, QueueResources, QueueSpec)

_PRODUCTS = ["A100-SXM4-80GB", "H100-SXM5-80GB", "L40S"]


def synthetic_nodes(n: int, seed: int = 0, gpus: int = 8, cpu_only_share: float = 0.05,
                    tainted_share: float = 0.02) -> list[Node]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name = f"node-{i:05d}"
        cpu_only = rng.random() < cpu_only_share
        cpu = rng.choice(["64", "96", "128"])
        mem = rng.choice(["512Gi", "1Ti", "768Gi"])
        labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": f"zone-{i % 4}",
                  "kai.scheduler/rack": f"rack-{i // 32}"}
        alloc = {"cpu": cpu, "memory": mem, "pods": "110"}
        if not cpu_only:
            labels["nvidia.com/gpu.product"] = _PRODUCTS[i % len(_PRODUCTS)]
            labels["nvidia.com/gpu.count"] = str(gpus)
            alloc["nvidia.com/gpu"] = str(gpus)
        taints = []
        if rng.random() < tainted_share:
            taints.append(Taint(key="dedicated", value="infer", effect="NoSchedule"))
        out.append(Node(metadata=ObjectMeta(name=name, uid=f"uid-{name}", labels=labels),
                        spec=NodeSpec(taints=taints), status=NodeStatus(allocatable=alloc)))
    return out


def open_queue(name: str, parent: str = "", gpu_quota: float = -1) -> Queue:
    r = QueueResource(quota=-1, over_quota_weight=1, limit=-1)
    g = QueueResource(quota=gpu_quota, over_quota_weight=1, limit=-1)
    return Queue(metadata=ObjectMeta(name=name, uid=f"uid-q-{name}", creation_timestamp="2024-01-01T00:00:00Z"),
                 spec=QueueSpec(parent_queue=parent, resources=QueueResources(gpu=g, cpu=r, memory=r)))


def make_pod(name: str, ns: str, group: str, gpus: int, cpu: str = "2", mem: str = "16Gi", node: str = "",
             affinity_zone: str | None = None, tolerate: bool = False, created: int = 0) -> Pod:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    spec = PodSpec(scheduler_name="kai-scheduler", node_name=node,
                   containers=[Container(name="main", resources=ResourceRequirements(
                       requests={"cpu": cpu, "memory": mem}, limits=limits))])
    if affinity_zone is not None:
        from kai.api.k8s import Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm
        spec.affinity = Affinity(node_affinity=NodeAffinity(
            required_during_scheduling_ignored_during_execution=NodeSelector(node_selector_terms=[
                NodeSelectorTerm(match_expressions=[NodeSelectorRequirement(
                    key="topology.kubernetes.io/zone", operator="In", values=[affinity_zone])])])))
    if tolerate:
        spec.tolerations = [Toleration(key="dedicated", operator="Exists", effect="NoSchedule")]
    ts = f"2024-01-01T{created // 3600 % 24:02d}:{created // 60 % 60:02d}:{created % 60:02d}Z"
    return Pod(metadata=ObjectMeta(name=name, namespace=ns, uid=f"uid-{ns}-{name}", creation_timestamp=ts,
                                   annotations={"pod-group-name": group}),
               spec=spec, status=PodStatus(phase="Running" if node else "Pending"))


def synthetic_jobs(n_jobs: int, total_pods: int, seed: int = 0, queues: list[str] | None = None,
                   max_gang: int = 64, cpu_only_share: float = 0.1, affinity_share: float = 0.0,
                   prefix: str = "job") -> tuple[list[PodGroup], list[Pod]]:
    """``n_jobs`` PodGroups with about ``total_pods`` pods in gangs of 1..max_gang (minMember = size)."""
    rng = random.Random(seed)
    queues = queues or ["default-queue"]
    sizes = [1] * n_jobs
    left = total_pods - n_jobs
    while left > 0:
        j = rng.randrange(n_jobs)
        if sizes[j] < max_gang:
            sizes[j] += 1
            left -= 1
    pgs, pods = [], []
    for j, size in enumerate(sizes):
        name = f"{prefix}-{j:05d}"
        ns = f"ns-{j % 8}"
        q = queues[j % len(queues)]
        pgs.append(PodGroup(metadata=ObjectMeta(name=name, namespace=ns, uid=f"uid-pg-{name}",
                                                creation_timestamp=f"2024-01-01T00:00:{j % 60:02d}Z"),
                            spec=PodGroupSpec(min_member=size, queue=q, priority_class_name="train")))
        cpu_only = rng.random() < cpu_only_share
        gpus = 0 if cpu_only else 1
        zone = f"zone-{rng.randrange(4)}" if rng.random() < affinity_share else None
        for i in range(size):
            pods.append(make_pod(f"{name}-{i}", ns, name, gpus, cpu="2" if gpus else "8",
                                 affinity_zone=zone, tolerate=zone is not None, created=j))
    return pgs, pods


def running_pods(nodes: list[Node], per_node: int, seed: int = 0, prefix: str = "run",
                 gang: int = 1) -> tuple[list[PodGroup], list[Pod]]:
    """``per_node`` running pods on every node (1 GPU each for the first 4 on GPU nodes),
    grouped into jobs of ``gang`` consecutive pods (a job spans nodes, as distributed training does)."""
    pgs, pods = [], []
    k = 0
    group = ""
    for n in nodes:
        has_gpu = "nvidia.com/gpu" in n.status.allocatable
        for i in range(per_node):
            if k % gang == 0:
                group = f"{prefix}-{k // gang:06d}"
                pgs.append(PodGroup(metadata=ObjectMeta(name=group, namespace="running", uid=f"uid-pg-{group}"),
                                    spec=PodGroupSpec(min_member=gang, queue="default-queue",
                                                      priority_class_name="train")))
            pods.append(make_pod(f"{group}-{k % gang}", "running", group, 1 if (has_gpu and i < 4) else 0,
                                 cpu="500m", mem="2Gi", node=n.metadata.name))
            k += 1
    return pgs, pods
