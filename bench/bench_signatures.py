"""Scheduling signatures (--use-scheduling-signatures): many identical jobs that cannot reclaim.

N nodes x 8 GPUs are full of another queue's single-GPU jobs, 4 GPUs over that queue's quota;
M identical pending jobs of one 8-GPU pod wait in a starved queue. Freeing a node would take
the other queue below its quota, so the proportion plugin rejects every victim scenario. Without signatures reclaim searches victims for every one of them; with them it
searches once and skips the other M-1 (they have the same signature and are no easier).
Each round times the reclaim action on a freshly opened session; the figure is the ratio
off / on, measured in the same run. Smoke size with KAI_BENCH_SMOKE=1.
Run: PYTHONPATH=.:bench pytest bench/bench_signatures.py --benchmark-enable -p no:cacheprovider -s
"""
from __future__ import annotations

import pytest

from _sizes import size
from kai.api.k8s import (Container, Node, NodeCondition, NodeStatus, ObjectMeta, Pod, PodGroup, PodGroupSpec,
                         PodSpec, PodStatus, Queue, QueueResource, QueueResources, QueueSpec, ResourceRequirements)
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.framework.action import ACTIONS
from kai.scheduler import RecordingCache, Scheduler

N_NODES = size(100, 10)
N_PENDING = size(100, 20)
START = 1_700_000_000.0


def _objects():
    open_ = QueueResource(quota=-1, over_quota_weight=1, limit=-1)

    def q(name, gpu_quota):
        return Queue(metadata=ObjectMeta(name=name), spec=QueueSpec(resources=QueueResources(
            gpu=QueueResource(quota=gpu_quota, over_quota_weight=0, limit=-1), cpu=open_, memory=open_)))

    # q2 runs 4 GPUs over its quota; a q1 job needs a whole node (8 GPUs): freeing one would
    # take q2 4 GPUs below its quota, which the proportion validator rejects in every scenario
    queues = [q("q1", 8), q("q2", N_NODES * 8 - 4)]
    nodes = [Node(metadata=ObjectMeta(name=f"n{i}"),
                  status=NodeStatus(allocatable={"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8", "pods": "110"},
                                    conditions=[NodeCondition(type="Ready", status="True")]))
             for i in range(N_NODES)]
    groups = []
    pods = []

    def pod(name, group, gpus, node=""):
        req = ResourceRequirements(requests={"nvidia.com/gpu": str(gpus)}, limits={"nvidia.com/gpu": str(gpus)})
        return Pod(metadata=ObjectMeta(name=name, namespace="ns", uid=name, annotations={"pod-group-name": group}),
                   spec=PodSpec(scheduler_name="kai-scheduler", node_name=node, priority_class_name="train",
                                containers=[Container(name="c", resources=req)]),
                   status=PodStatus(phase="Running" if node else "Pending"))

    for i in range(N_NODES * 8):
        groups.append(PodGroup(metadata=ObjectMeta(name=f"r{i}", namespace="ns"),
                               spec=PodGroupSpec(min_member=1, queue="q2", priority_class_name="train")))
        pods.append(pod(f"r{i}-0", f"r{i}", 1, f"n{i // 8}"))
    for j in range(N_PENDING):
        groups.append(PodGroup(metadata=ObjectMeta(name=f"w{j}", namespace="ns"),
                               spec=PodGroupSpec(min_member=1, queue="q1", priority_class_name="train")))
        pods.append(pod(f"w{j}-0", f"w{j}", 8))
    return queues, nodes, groups, pods


def _setup(signatures: bool):
    queues, nodes, groups, pods = _objects()
    cfg = default_config()
    cfg.actions = ["reclaim"]
    cfg.use_scheduling_signatures = signatures
    state = ClusterState()
    state.load(nodes=nodes, pods=pods, podgroups=groups, queues=queues, priority_classes=[])
    sched = Scheduler(state, cfg)
    ssn = sched.open_session(RecordingCache(state), now=START)
    return (ssn,), {}


def _run(ssn):
    ACTIONS["reclaim"]().execute(ssn)
    assert not ssn.cache.result.evictions          # nobody may be reclaimed
    ssn.close()


@pytest.mark.parametrize("signatures", [True, False], ids=["signatures", "no-signatures"])
def test_reclaim_identical_pending_jobs(benchmark, signatures):
    benchmark.pedantic(_run, setup=lambda: _setup(signatures), rounds=3, iterations=1)
