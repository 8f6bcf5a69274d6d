"""`kai simulate` groups pods through their owners (Job, PyTorchJob) and gang-schedules them."""
from __future__ import annotations

from kai.config import default_config
from kai.sim.loader import load_manifests
from kai.sim.simulator import build_state, simulate


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
    out = """apiVersion: v1
kind: Node
metadata: {name: n0}
status: {allocatable: {cpu: '32', memory: 128Gi, pods: '50', nvidia.com/gpu: '4'}}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {allocatable: {cpu: '32', memory: 128Gi, pods: '50', nvidia.com/gpu: '4'}}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: train
  namespace: ml
  uid: job-uid
  annotations: {kai.scheduler/batch-min-member: '3'}
spec: {parallelism: 3, completions: 3}
---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: bert, namespace: ml, uid: pt-uid}
spec:
  pytorchReplicaSpecs:
    Master: {replicas: 1}
    Worker: {replicas: 3}
---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: big, namespace: ml, uid: big-uid}
spec:
  pytorchReplicaSpecs:
    Master: {replicas: 1}
    Worker: {replicas: 3}
"""
    for i in range(3):
        out += _pod(f"train-{i}", "Job", "train", "job-uid", "batch/v1")
    for name, uid in (("bert", "pt-uid"), ("big", "big-uid")):
        out += _pod(f"{name}-master-0", "PyTorchJob", name, uid, "kubeflow.org/v1",
                    "'training.kubeflow.org/job-role': master")
        for i in range(3):
            out += _pod(f"{name}-worker-{i}", "PyTorchJob", name, uid, "kubeflow.org/v1")
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
    assert len(jobs["pg-bert-pt-uid"].tasks) == 4

    report = simulate(load_manifests([str(path)]), default_config())
    bound = {b["pod"] for b in report["cycles"][0]["bindings"]}
    train = {f"ml/train-{i}" for i in range(3)}
    bert = {"ml/bert-master-0"} | {f"ml/bert-worker-{i}" for i in range(3)}
    big = {"ml/big-master-0"} | {f"ml/big-worker-{i}" for i in range(3)}
    # 8 GPUs: the 3-pod Job and one 4-pod PyTorchJob fit whole; the other gang (4 more) must not
    # get the single GPU left over
    assert train <= bound
    assert (bert <= bound) != (big <= bound)
    assert not (big & bound) or not (bert & bound)
    assert len(bound) == 7
    pending = {u["podGroup"] for u in report["cycles"][0]["unschedulable"]}
    assert pending & {"ml/pg-big-big-uid", "ml/pg-bert-pt-uid"}
