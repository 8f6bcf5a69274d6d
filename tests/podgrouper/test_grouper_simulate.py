"""`kai simulate` groups pods through their owners and gang-schedules them with SubGroups;
``--output json`` lists the PodGroups it made."""
from __future__ import annotations

import json

from kai.cli import main
from kai.config import default_config
from kai.sim.loader import load_manifests
from kai.sim.simulator import build_state, simulate

NODES = """apiVersion: v1
kind: Node
metadata: {name: n0}
status: {allocatable: {cpu: '32', memory: 128Gi, pods: '50', nvidia.com/gpu: '4'}}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {allocatable: {cpu: '32', memory: 128Gi, pods: '50', nvidia.com/gpu: '4'}}
"""


def _pod(name, owner_kind, owner_name, owner_uid, api, labels=""):
    return f"""---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: ml
  labels: {{{labels}}}
  ownerReferences: [{{apiVersion: {api}, kind: {owner_kind}, name: {owner_name}, uid: {owner_uid}, controller: true}}]
spec:
  schedulerName: kai-scheduler
  containers: [{{name: c, resources: {{requests: {{cpu: '1', nvidia.com/gpu: '1'}}, limits: {{nvidia.com/gpu: '1'}}}}}}]
"""


def _manifest() -> str:
    out = NODES + """---
apiVersion: batch/v1
kind: Job
metadata:
  name: train
  namespace: ml
  uid: job-uid
  annotations: {kai.scheduler/batch-min-member: '3'}
spec: {parallelism: 3, completions: 3}
"""
    for name, uid in (("bert", "pt-uid"), ("big", "big-uid")):
        out += f"""---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {{name: {name}, namespace: ml, uid: {uid}}}
spec:
  pytorchReplicaSpecs:
    Master: {{replicas: 1}}
    Worker: {{replicas: 3}}
"""
    for i in range(3):
        out += _pod(f"train-{i}", "Job", "train", "job-uid", "batch/v1")
    for name, uid in (("bert", "pt-uid"), ("big", "big-uid")):
        out += _pod(f"{name}-master-0", "PyTorchJob", name, uid, "kubeflow.org/v1",
                    "'training.kubeflow.org/job-role': master, 'training.kubeflow.org/replica-type': master")
        for i in range(3):
            out += _pod(f"{name}-worker-{i}", "PyTorchJob", name, uid, "kubeflow.org/v1",
                        f"'training.kubeflow.org/replica-type': worker, 'training.kubeflow.org/replica-index': '{i}'")
    return out


def test_simulate_groups_job_and_pytorchjob_by_owner(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(_manifest())
    m = load_manifests([str(path)])
    assert ("Job", "ml", "train") in m.owners and ("PyTorchJob", "ml", "bert") in m.owners

    state = build_state(m)
    jobs = {j.name: j for j in state.jobs.values()}
    assert set(jobs) == {"pg-train-job-uid", "pg-bert-pt-uid", "pg-big-big-uid"}
    assert jobs["pg-train-job-uid"].podgroup.spec.min_member == 3
    assert jobs["pg-bert-pt-uid"].podgroup.spec.min_member == 4
    assert {n: len(ps.tasks) for n, ps in jobs["pg-bert-pt-uid"].podsets.items()} == {"master": 1, "worker": 3}

    report = simulate(load_manifests([str(path)]), default_config())
    bound = {b["pod"] for b in report["cycles"][0]["bindings"]}
    train = {f"ml/train-{i}" for i in range(3)}
    bert = {"ml/bert-master-0"} | {f"ml/bert-worker-{i}" for i in range(3)}
    big = {"ml/big-master-0"} | {f"ml/big-worker-{i}" for i in range(3)}
    # 8 GPUs: the 3-pod Job and one 4-pod PyTorchJob fit whole; the other gang (4 more) must not
    # get the single GPU left over
    assert train <= bound
    assert (bert <= bound) != (big <= bound)
    assert not (big & bound) or big <= bound
    assert not (bert & bound) or bert <= bound
    listed = {g["name"]: g for g in report["podGroups"]}
    assert listed["ml/pg-bert-pt-uid"] == {
        "name": "ml/pg-bert-pt-uid", "queue": "default-queue", "minMember": 4, "priorityClassName": "train",
        "pods": ["bert-master-0", "bert-worker-0", "bert-worker-1", "bert-worker-2"],
        "subGroups": [{"name": "master", "minMember": 1, "pods": ["bert-master-0"]},
                      {"name": "worker", "minMember": 3, "pods": ["bert-worker-0", "bert-worker-1", "bert-worker-2"]}]}
    assert "subGroups" not in listed["ml/pg-train-job-uid"]


LWS = NODES + """---
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata: {name: llm, namespace: ml, uid: lws-uid, labels: {kai.scheduler/queue: default-queue}}
spec:
  replicas: 2
  leaderWorkerTemplate:
    size: 5
    subGroupPolicy: {subGroupSize: 2}
"""


def _lws_pods(groups, gpus=1):
    out = ""
    for g in range(groups):
        for w in range(5):
            out += f"""---
apiVersion: v1
kind: Pod
metadata:
  name: llm-{g}-{w}
  namespace: ml
  labels: {{leaderworkerset.sigs.k8s.io/group-index: '{g}', leaderworkerset.sigs.k8s.io/worker-index: '{w}'}}
  ownerReferences: [{{apiVersion: leaderworkerset.x-k8s.io/v1, kind: LeaderWorkerSet, name: llm, uid: lws-uid}}]
spec:
  schedulerName: kai-scheduler
  containers: [{{name: c, resources: {{requests: {{nvidia.com/gpu: '{gpus}'}}, limits: {{nvidia.com/gpu: '{gpus}'}}}}}}]
"""
    return out


def test_simulate_lws_groups_with_segments_json(tmp_path, capsys):
    path = tmp_path / "lws.yaml"
    path.write_text(LWS + _lws_pods(2))        # 2 groups x 5 pods x 1 GPU = 10 > 8: one group fits
    assert main(["simulate", str(path), "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    groups = {g["name"]: g for g in report["podGroups"]}
    assert set(groups) == {"ml/pg-llm-lws-uid-group-0", "ml/pg-llm-lws-uid-group-1"}
    g0 = groups["ml/pg-llm-lws-uid-group-0"]
    assert g0["minMember"] == 5
    # (5-1) % 2 == 0: segment-0 holds the leader and workers 1-2, segment-1 workers 3-4
    assert g0["subGroups"] == [{"name": "segment-0", "minMember": 3, "pods": []},
                               {"name": "segment-1", "minMember": 2, "pods": ["llm-0-3", "llm-0-4"]},
                               {"name": "leader", "minMember": 1, "parent": "segment-0", "pods": ["llm-0-0"]},
                               {"name": "workers", "minMember": 2, "parent": "segment-0",
                                "pods": ["llm-0-1", "llm-0-2"]}]
    bound = {b["pod"] for b in report["cycles"][0]["bindings"]}
    # whole groups or nothing
    for g in range(2):
        members = {f"ml/llm-{g}-{w}" for w in range(5)}
        assert not (members & bound) or members <= bound
    assert len(bound) == 5


def test_simulate_reports_pods_that_cannot_be_grouped(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(NODES + _pod("orphan-0", "PyTorchJob", "missing", "m-uid", "kubeflow.org/v1"))
    assert main(["simulate", str(path), "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["podGroups"] == []
    problems = {p["object"]: p["reason"] for p in report["problems"]}
    assert "pod-grouper" in problems["Pod ml/orphan-0"] and "PyTorchJob ml/missing" in problems["Pod ml/orphan-0"]
    assert report["cycles"][0]["bindings"] == []


QUEUES = """---
apiVersion: scheduling.run.ai/v2
kind: Queue
metadata: {name: team-a}
spec: {resources: {gpu: {quota: -1, limit: -1}, cpu: {quota: -1, limit: -1}, memory: {quota: -1, limit: -1}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: ml, uid: j-uid, labels: {runai/queue: team-a}}
spec: {}
""" + _pod("j-0", "Job", "j", "j-uid", "batch/v1")


def test_queue_label_key_flag_and_config(tmp_path, capsys):
    path = tmp_path / "q.yaml"
    path.write_text(NODES + QUEUES)
    assert main(["simulate", str(path), "--output", "json", "--queue-label-key", "runai/queue"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["podGroups"][0]["queue"] == "team-a"
    assert [b["pod"] for b in report["cycles"][0]["bindings"]] == ["ml/j-0"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text("queueLabelKey: runai/queue\n")
    assert main(["simulate", str(path), "--output", "json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["podGroups"][0]["queue"] == "team-a"
    assert main(["simulate", str(path), "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["podGroups"][0]["queue"] == "default-queue"
    cfg.write_text("queueLabelKey: 'not a key'\n")
    assert main(["simulate", str(path), "--config", str(cfg)]) == 2
    assert "queueLabelKey" in capsys.readouterr().err


def _rack_nodes():
    out = """---
apiVersion: kai.scheduler/v1alpha1
kind: Topology
metadata: {name: dc}
spec:
  levels: [{nodeLabel: example.com/rack}, {nodeLabel: kubernetes.io/hostname}]
"""
    for rack in ("a", "b"):
        for i in range(2):
            out += f"""---
apiVersion: v1
kind: Node
metadata: {{name: {rack}{i}, labels: {{example.com/rack: {rack}, kubernetes.io/hostname: {rack}{i}}}}}
status: {{allocatable: {{cpu: '32', memory: 128Gi, pods: '50', nvidia.com/gpu: '2'}}}}
"""
    return out


def test_pytorchjob_segments_each_land_in_one_rack(tmp_path, capsys):
    """Segments of 4 workers with a required rack level: each segment in one rack (4 GPUs per
    rack), the job as a whole across both racks."""
    job = """---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: seg, namespace: ml, uid: seg-uid, annotations: {kai.scheduler/topology: dc}}
spec:
  pytorchReplicaSpecs:
    Worker:
      replicas: 8
      template:
        metadata:
          annotations: {kai.scheduler/segment-size: '4',
                        kai.scheduler/segment-topology-required-placement: example.com/rack}
"""
    pods = "".join(_pod(f"seg-worker-{i}", "PyTorchJob", "seg", "seg-uid", "kubeflow.org/v1",
                        f"'training.kubeflow.org/replica-type': worker, 'training.kubeflow.org/replica-index': '{i}'")
                   for i in range(8))
    path = tmp_path / "seg.yaml"
    path.write_text(_rack_nodes() + job + pods)
    assert main(["simulate", str(path), "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (pg,) = report["podGroups"]
    assert [(s["name"], s["minMember"], s.get("parent")) for s in pg["subGroups"]] == [
        ("worker", 8, None), ("worker-0", 4, "worker"), ("worker-1", 4, "worker")]
    node = {b["pod"]: b["node"] for b in report["cycles"][0]["bindings"]}
    assert len(node) == 8
    racks = [{node[f"ml/seg-worker-{i}"][0] for i in range(k * 4, k * 4 + 4)} for k in range(2)]
    assert all(len(r) == 1 for r in racks) and racks[0] != racks[1]
