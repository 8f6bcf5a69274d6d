"""kubeflow and ray task order: leader pods first (KAI's kubeflow/ray plugin tests), and a
one-GPU cluster binds the master / head of an elastic job before its workers."""
from __future__ import annotations

import msgspec
import pytest

from kai.api.k8s import Pod
from kai.api.pod_info import PodInfo
from kai.api.podgroup_info import default_task_order_key
from kai.api.resources import ResourceRegistry
from kai.config import default_config
from kai.plugins.leaders import Kubeflow, Ray
from kai.sim.loader import load_manifests
from kai.sim.simulator import simulate


def task(name, labels=None, created="2024-01-01T00:00:00Z"):
    pod = msgspec.convert({"metadata": {"name": name, "namespace": "ns", "uid": name, "labels": labels or {},
                                        "creationTimestamp": created},
                           "spec": {"schedulerName": "kai-scheduler"}}, Pod)
    return PodInfo(pod, ResourceRegistry())


class Ssn:
    task_order_key = staticmethod(default_task_order_key)


def compare(key, a, b):
    ka, kb = key(a), key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)


KF = "training.kubeflow.org/job-role"


@pytest.mark.parametrize("left,right,want", [
    ({}, {}, 0),
    ({"training.kubeflow.org/job-name": "A", KF: "worker"}, {}, 0),
    ({KF: "launcher"}, {KF: "worker"}, -1),
    ({KF: "worker"}, {KF: "master"}, 1),
    ({KF: "worker"}, {KF: "worker"}, 0),
    ({"ray.io/node-type": "head"}, {"ray.io/node-type": "worker"}, -1),
    ({"ray.io/node-type": "worker"}, {"ray.io/node-type": "head"}, 1),
    ({"ray.io/node-type": "worker"}, {}, 0),
])
def test_leader_first(left, right, want):
    ssn = Ssn()
    Kubeflow().on_session_open(ssn)
    Ray().on_session_open(ssn)
    # same creation time and name order neutralised: compare only what the plugins add
    key = ssn.task_order_key
    assert compare(lambda t: key(t)[:2], task("a", left), task("b", right)) == want


def test_ranks_chain_in_plugin_order_before_the_task_priority():
    ssn = Ssn()
    Kubeflow().on_session_open(ssn)
    Ray().on_session_open(ssn)
    key = ssn.task_order_key
    assert key.leader_ranks and len(key.leader_ranks) == 2
    hi = task("w", {"kai.scheduler/task-priority": "10"})
    master = task("m", {KF: "master"})
    assert key(master) < key(hi)                       # the leader before a higher task-priority
    assert key(task("a", created="2024-01-01T00:00:00Z")) < key(task("b", created="2024-01-01T00:00:01Z"))


def _elastic(label_key, leader, follower):
    out = """apiVersion: v1
kind: Node
metadata: {name: n0}
status: {allocatable: {cpu: '8', memory: 32Gi, pods: '20', nvidia.com/gpu: '1'}}
---
apiVersion: scheduling.run.ai/v2alpha2
kind: PodGroup
metadata: {name: elastic, namespace: ml}
spec: {minMember: 1, queue: default-queue}
"""
    # workers first in the file (older), the leader last
    for name, role in (("w-0", follower), ("w-1", follower), ("leader", leader)):
        out += f"""---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: ml
  labels: {{{label_key}: {role}}}
  annotations: {{pod-group-name: elastic}}
spec:
  schedulerName: kai-scheduler
  containers: [{{name: c, resources: {{requests: {{nvidia.com/gpu: '1'}}, limits: {{nvidia.com/gpu: '1'}}}}}}]
"""
    return out


@pytest.mark.parametrize("label_key,leader,follower,plugin", [
    ("training.kubeflow.org/job-role", "master", "worker", "kubeflow"),
    ("training.kubeflow.org/job-role", "launcher", "worker", "kubeflow"),
    ("ray.io/node-type", "head", "worker", "ray"),
])
def test_the_leader_gets_the_only_gpu(tmp_path, label_key, leader, follower, plugin):
    path = tmp_path / "c.yaml"
    path.write_text(_elastic(label_key, leader, follower))
    report = simulate(load_manifests([str(path)]), default_config())
    assert [b["pod"] for b in report["cycles"][0]["bindings"]] == ["ml/leader"]
    # without the plugin the oldest pod goes first
    cfg = default_config()
    cfg.plugins = [p for p in cfg.plugins if p.name != plugin]
    report = simulate(load_manifests([str(path)]), cfg)
    assert [b["pod"] for b in report["cycles"][0]["bindings"]] == ["ml/w-0"]
