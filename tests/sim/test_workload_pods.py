"""kai.sim.workload_pods: a workload manifest as written stands for the pods its controller makes,
named, labelled and owned as that controller does, grouped and scheduled as on a cluster."""
import json
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kai.config import default_config
from kai.sim.loader import LoadError, load_manifests
from kai.sim.simulator import simulate as _simulate

NODES = "\n---\n".join(
    f"kind: Node\nmetadata: {{name: g{i}}}\nstatus: {{allocatable: {{cpu: '64', memory: 256Gi, pods: '110', "
    f"nvidia.com/gpu: '8'}}}}\n" for i in range(2))
QUEUES = ("kind: Queue\napiVersion: scheduling.run.ai/v2\nmetadata: {name: team}\n"
          "spec: {resources: {gpu: {quota: -1, limit: -1}, cpu: {quota: -1, limit: -1}, memory: {quota: -1, limit: -1}}}\n")
TEMPLATE = """
    metadata:
      labels: {kai.scheduler/queue: team, app: demo}
    spec:
      schedulerName: kai-scheduler
      containers: [{name: main, image: x, resources: {limits: {nvidia.com/gpu: '1'}}}]
"""


def simulate(m):
    return _simulate(m, default_config(), cycles=1)


def load(tmp_path, text, name="w.yaml", keep_going=False):
    p = tmp_path / name
    p.write_text(text)
    return load_manifests([str(p)], keep_going=keep_going)


def job(extra="", name="train"):
    return f"apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}, namespace: ml}}\nspec:\n{extra}  template:{TEMPLATE}"


def pods_of(m):
    return {p.metadata.name: p for p in m.objects["Pod"]}


@pytest.mark.parametrize("spec, count", [
    ("", 1),
    ("  parallelism: 3\n", 3),
    ("  parallelism: 3\n  completions: 2\n", 2),
    ("  completions: 5\n", 1),
    ("  parallelism: 4\n  suspend: true\n", 0),
    ("  parallelism: 0\n", 0),
])
def test_a_job_makes_min_of_parallelism_and_completions_pods(tmp_path, spec, count):
    m = load(tmp_path, job(spec))
    pods = m.objects["Pod"]
    assert len(pods) == count
    for p in pods:
        assert p.metadata.name.startswith("train-") and len(p.metadata.name) == len("train-") + 5
        assert p.metadata.namespace == "ml" and p.spec.scheduler_name == "kai-scheduler"
        (ref,) = p.metadata.owner_references
        assert (ref.kind, ref.name, ref.api_version, ref.controller) == ("Job", "train", "batch/v1", True)
        assert ref.uid == m.owners[("Job", "ml", "train")]["metadata"]["uid"]
        labels = p.metadata.labels
        assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == "train"
        assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == ref.uid
        assert labels["kai.scheduler/queue"] == "team" and labels["app"] == "demo"
    assert len({p.metadata.name for p in pods}) == count


def test_an_indexed_job_names_its_pods_by_completion_index(tmp_path):
    m = load(tmp_path, job("  parallelism: 3\n  completions: 3\n  completionMode: Indexed\n"))
    pods = sorted(m.objects["Pod"], key=lambda p: p.metadata.name)
    assert [p.metadata.name.rsplit("-", 1)[0] for p in pods] == ["train-0", "train-1", "train-2"]
    for i, p in enumerate(pods):
        assert p.metadata.annotations["batch.kubernetes.io/job-completion-index"] == str(i)
        assert p.metadata.labels["batch.kubernetes.io/job-completion-index"] == str(i)


def test_names_are_the_same_on_every_load(tmp_path):
    a = sorted(pods_of(load(tmp_path, job("  parallelism: 4\n"), "a.yaml")))
    b = sorted(pods_of(load(tmp_path, job("  parallelism: 4\n"), "b.yaml")))
    assert a == b and len(a) == 4


def test_a_deployment_makes_its_replica_set_and_the_set_its_pods(tmp_path):
    m = load(tmp_path, NODES + "\n---\n" + QUEUES + "\n---\n" +
             f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: ml}}\n"
             f"spec:\n  replicas: 3\n  template:{TEMPLATE}")
    (rs_key,) = [k for k in m.owners if k[0] == "ReplicaSet"]
    rs = m.owners[rs_key]
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs_key == ("ReplicaSet", "ml", f"web-{h}")
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pods = m.objects["Pod"]
    assert len(pods) == 3
    for p in pods:
        assert p.metadata.name.startswith(f"web-{h}-") and p.metadata.labels["pod-template-hash"] == h
        assert p.metadata.owner_references[0].kind == "ReplicaSet"
    # the pod-grouper reads the chain up to the Deployment: a PodGroup per pod, as KAI's
    # groups a Deployment's pods
    report = simulate(m)
    assert len(report["podGroups"]) == 3 and len(report["cycles"][0]["bindings"]) == 3


def test_a_paused_deployment_makes_nothing(tmp_path):
    m = load(tmp_path, f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\n"
                       f"spec:\n  paused: true\n  template:{TEMPLATE}")
    assert m.objects["Pod"] == []


def test_a_stateful_set_makes_ordinals_and_their_claims(tmp_path):
    claim = ("  volumeClaimTemplates:\n  - metadata: {name: data}\n"
             "    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n")
    m = load(tmp_path, f"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db, namespace: ml}}\n"
                       f"spec:\n  replicas: 3\n  serviceName: db\n  podManagementPolicy: Parallel\n{claim}"
                       f"  template:{TEMPLATE}")
    pods = pods_of(m)
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    assert pods["db-1"].metadata.labels["statefulset.kubernetes.io/pod-name"] == "db-1"
    vols = {v.name: v.persistent_volume_claim.claim_name for v in pods["db-2"].spec.volumes if v.persistent_volume_claim}
    assert vols == {"data": "data-db-2"}
    assert sorted(c.metadata.name for c in m.objects["PersistentVolumeClaim"]) == ["data-db-0", "data-db-1", "data-db-2"]


def test_an_ordered_ready_stateful_set_makes_its_first_pod_and_says_so(tmp_path):
    m = load(tmp_path, f"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\n"
                       f"spec:\n  replicas: 3\n  template:{TEMPLATE}")
    assert sorted(pods_of(m)) == ["db-0"]
    assert any("OrderedReady" in n and "db-0" in n for n in m.notes)


def test_a_pytorch_job_makes_its_replicas_and_is_one_gang(tmp_path):
    text = (f"apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {{name: bert, namespace: ml}}\nspec:\n"
            f"  pytorchReplicaSpecs:\n    Master:\n      replicas: 1\n      template:{TEMPLATE.replace(chr(10) + '    ', chr(10) + '        ')}"
            f"    Worker:\n      replicas: 3\n      template:{TEMPLATE.replace(chr(10) + '    ', chr(10) + '        ')}")
    m = load(tmp_path, NODES + "\n---\n" + QUEUES + "\n---\n" + text)
    pods = pods_of(m)
    assert sorted(pods) == ["bert-master-0", "bert-worker-0", "bert-worker-1", "bert-worker-2"]
    w = pods["bert-worker-2"].metadata.labels
    assert (w["training.kubeflow.org/job-name"], w["training.kubeflow.org/replica-type"],
            w["training.kubeflow.org/replica-index"]) == ("bert", "worker", "2")
    assert pods["bert-master-0"].metadata.labels["training.kubeflow.org/job-role"] == "master"
    report = simulate(m)
    (pg,) = report["podGroups"]
    assert pg["minMember"] == 4 and sorted(pg["pods"]) == sorted(pods)
    assert len(report["cycles"][0]["bindings"]) == 4


def test_a_workload_whose_pods_are_given_or_that_was_applied_makes_nothing(tmp_path):
    owned = ("kind: Pod\nmetadata: {name: train-abcde, namespace: ml, ownerReferences: "
             "[{apiVersion: batch/v1, kind: Job, name: train, uid: j-1, controller: true}]}\n"
             "spec: {schedulerName: kai-scheduler, containers: [{name: c}]}\n")
    m = load(tmp_path, job("  parallelism: 3\n") + "\n---\n" + owned)
    assert sorted(pods_of(m)) == ["train-abcde"] and "Job ml/train" in m.skipped
    applied = job("  parallelism: 3\n").replace("namespace: ml}", "namespace: ml, resourceVersion: '12'}") + \
        "status: {active: 3}\n"
    m = load(tmp_path, applied, "applied.yaml")
    assert m.objects["Pod"] == [] and ("Job", "ml", "train") in m.owners


def test_a_workload_kind_whose_pods_are_not_made_is_named(tmp_path):
    m = load(tmp_path, "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec: {schedule: '@daily'}\n")
    assert m.objects["Pod"] == []
    assert any("CronJob default/nightly" in n and "does not make the pods" in n for n in m.notes)


def test_a_malformed_workload_is_an_error_naming_the_field(tmp_path):
    text = job("  parallelism: two\n")
    with pytest.raises(LoadError) as exc:
        load(tmp_path, text)
    assert "w.yaml: document 1 (Job ml/train): spec.parallelism: expected a non-negative integer" in str(exc.value)
    m = load(tmp_path, text + "\n---\n" + job("  parallelism: 2\n", name="other"), keep_going=True)
    assert len(m.errors) == 1 and len(m.objects["Pod"]) == 2


def test_kais_docs_batch_job_runs_in_kai_simulate(tmp_path):
    """KAI's docs/batch/batch-job.yaml as is (default-queue comes with the simulation, as the chart makes it)."""
    text = ("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: batch-job\nspec:\n  parallelism: 2\n"
            "  completions: 2\n  template:\n    metadata:\n      labels:\n        kai.scheduler/queue: default-queue\n"
            "    spec:\n      schedulerName: kai-scheduler\n      restartPolicy: OnFailure\n      containers:\n"
            "        - name: main\n          image: ubuntu\n          args: [\"sleep\", \"infinity\"]\n"
            "          resources:\n            limits:\n              nvidia.com/gpu: \"1\"\n")
    m = load(tmp_path, NODES + "\n---\n" + text)
    report = simulate(m)
    assert len(report["cycles"][0]["bindings"]) == 2
    json.dumps(report)


def test_an_mpijob_makes_its_workers_and_its_launcher_job_and_is_one_gang(tmp_path):
    t = TEMPLATE.replace("\n    ", "\n        ")
    text = (f"apiVersion: kubeflow.org/v2beta1\nkind: MPIJob\nmetadata: {{name: hvd, namespace: ml}}\nspec:\n"
            f"  mpiReplicaSpecs:\n    Launcher:\n      replicas: 1\n      template:{t}"
            f"    Worker:\n      replicas: 2\n      template:{t}")
    m = load(tmp_path, NODES + "\n---\n" + QUEUES + "\n---\n" + text)
    pods = pods_of(m)
    (launcher,) = [n for n in pods if n.startswith("hvd-launcher-")]
    assert sorted(pods) == sorted(["hvd-worker-0", "hvd-worker-1", launcher])
    assert pods[launcher].metadata.owner_references[0].kind == "Job"
    assert m.owners[("Job", "ml", "hvd-launcher")]["metadata"]["ownerReferences"][0]["kind"] == "MPIJob"
    assert pods[launcher].metadata.labels["training.kubeflow.org/job-role"] == "launcher"
    assert pods["hvd-worker-1"].metadata.labels["training.kubeflow.org/replica-index"] == "1"
    report = simulate(m)
    (pg,) = report["podGroups"]
    assert pg["minMember"] == 3 and len(report["cycles"][0]["bindings"]) == 3
    waiting = load(tmp_path, text.replace("spec:\n", "spec:\n  launcherCreationPolicy: WaitForWorkersReady\n", 1),
                   "wait.yaml")
    assert sorted(pods_of(waiting)) == ["hvd-worker-0", "hvd-worker-1"]
    assert any("WaitForWorkersReady" in n for n in waiting.notes)


@pytest.mark.parametrize("workload, labels", [
    (job("  parallelism: 2\n"), "{job-name: train}"),
    (job("  parallelism: 2\n"), "{batch.kubernetes.io/job-name: train}"),
    (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: ml}}\n"
     f"spec:\n  replicas: 2\n  selector: {{matchLabels: {{app: demo}}}}\n  template:{TEMPLATE}", "{app: demo}"),
    ("apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {name: train, namespace: ml}\n"
     "spec: {pytorchReplicaSpecs: {Worker: {replicas: 2}}}\n", "{training.kubeflow.org/job-name: train}"),
    ("apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: train, namespace: ml}\n"
     "spec: {replicatedJobs: [{name: w, replicas: 2, template: {spec: {parallelism: 1}}}]}\n",
     "{jobset.sigs.k8s.io/jobset-name: train}"),
    ("apiVersion: leaderworkerset.x-k8s.io/v1\nkind: LeaderWorkerSet\nmetadata: {name: train, namespace: ml}\n"
     "spec: {replicas: 2, leaderWorkerTemplate: {size: 1}}\n", "{leaderworkerset.sigs.k8s.io/name: train}"),
    ("apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: train, namespace: ml}\n"
     "spec: {headGroupSpec: {}, workerGroupSpecs: [{groupName: g, replicas: 1}]}\n", "{ray.io/cluster: train}"),
])
def test_a_workload_whose_pods_are_given_by_their_labels_makes_nothing_and_says_so(tmp_path, workload, labels):
    given = (f"kind: Pod\nmetadata: {{name: given-0, namespace: ml, labels: {labels}}}\n"
             f"spec: {{schedulerName: kai-scheduler, containers: [{{name: c}}]}}\n")
    m = load(tmp_path, workload + "\n---\n" + given)
    assert sorted(pods_of(m)) == ["given-0"]
    assert any("given-0 is labelled as one of its own" in n for n in m.notes)
    elsewhere = given.replace("namespace: ml", "namespace: other")
    assert len(load(tmp_path, workload + "\n---\n" + elsewhere, "b.yaml").objects["Pod"]) == 3


def test_a_jobset_makes_its_replicated_jobs_and_their_pods(tmp_path):
    t = TEMPLATE.replace("\n    ", "\n            ")
    text = (f"apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {{name: js, namespace: ml}}\nspec:\n"
            f"  replicatedJobs:\n  - name: leader\n    replicas: 1\n    template:\n      spec:\n"
            f"        parallelism: 1\n        template:{t}"
            f"  - name: workers\n    replicas: 2\n    template:\n      spec:\n        parallelism: 2\n"
            f"        completions: 2\n        completionMode: Indexed\n        template:{t}")
    m = load(tmp_path, NODES + "\n---\n" + QUEUES + "\n---\n" + text)
    pods = m.objects["Pod"]
    assert len(pods) == 5
    jobs = sorted(k[2] for k in m.owners if k[0] == "Job")
    assert jobs == ["js-leader-0", "js-workers-0", "js-workers-1"]
    for p in pods:
        assert p.metadata.labels["jobset.sigs.k8s.io/jobset-name"] == "js"
        assert p.metadata.owner_references[0].kind == "Job"
    report = simulate(m)
    # KAI's JobSet grouper, no startup order given: a PodGroup per replicated job
    assert sorted(g["minMember"] for g in report["podGroups"]) == [1, 4]
    assert len(report["cycles"][0]["bindings"]) == 5
    in_order = load(tmp_path, text.replace("spec:\n  replicatedJobs:", "spec:\n  startupPolicy: "
                                           "{startupPolicyOrder: InOrder}\n  replicatedJobs:", 1), "in-order.yaml")
    assert len(in_order.objects["Pod"]) == 1 and any("InOrder" in n for n in in_order.notes)


def test_a_leader_worker_set_makes_groups_of_a_leader_and_its_workers(tmp_path):
    t = TEMPLATE.replace("\n    ", "\n        ")
    text = (f"apiVersion: leaderworkerset.x-k8s.io/v1\nkind: LeaderWorkerSet\nmetadata: {{name: llm, namespace: ml}}\n"
            f"spec:\n  replicas: 2\n  leaderWorkerTemplate:\n    size: 3\n    workerTemplate:{t}")
    m = load(tmp_path, NODES + "\n---\n" + QUEUES + "\n---\n" + text)
    pods = pods_of(m)
    assert sorted(pods) == ["llm-0", "llm-0-1", "llm-0-2", "llm-1", "llm-1-1", "llm-1-2"]
    assert pods["llm-1"].metadata.labels["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert pods["llm-1-2"].metadata.labels["leaderworkerset.sigs.k8s.io/group-index"] == "1"
    assert pods["llm-1-2"].metadata.annotations["leaderworkerset.sigs.k8s.io/size"] == "3"
    assert pods["llm-0-1"].metadata.owner_references[0].name == "llm-0"           # the group's worker set
    assert m.owners[("StatefulSet", "ml", "llm-0")]["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    report = simulate(m)
    # KAI's LWS grouper: a PodGroup per group, minMember the group's size
    assert sorted(g["minMember"] for g in report["podGroups"]) == [3, 3]
    assert len(report["cycles"][0]["bindings"]) == 6
    ready = load(tmp_path, text.replace("spec:\n  replicas: 2\n", "spec:\n  replicas: 2\n  startupPolicy: LeaderReady\n"),
                 "ready.yaml")
    assert sorted(pods_of(ready)) == ["llm-0", "llm-1"] and any("LeaderReady" in n for n in ready.notes)


def test_a_ray_cluster_makes_its_head_and_workers_and_is_one_gang(tmp_path):
    t = TEMPLATE.replace("\n    ", "\n        ")
    text = (f"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {{name: rc, namespace: ml}}\nspec:\n"
            f"  headGroupSpec:\n    template:{t}"
            f"  workerGroupSpecs:\n  - groupName: gpu\n    replicas: 5\n    minReplicas: 1\n    maxReplicas: 3\n"
            f"    template:{t}")
    m = load(tmp_path, NODES + "\n---\n" + QUEUES + "\n---\n" + text)
    pods = pods_of(m)
    heads = [n for n in pods if n.startswith("rc-head-")]
    workers = [n for n in pods if n.startswith("rc-gpu-worker-")]
    assert len(heads) == 1 and len(workers) == 3 and len(pods) == 4         # 5 replicas kept within 1..3
    assert pods[workers[0]].metadata.labels["ray.io/group"] == "gpu"
    assert pods[heads[0]].metadata.labels["ray.io/node-type"] == "head"
    report = simulate(m)
    (pg,) = report["podGroups"]
    assert pg["minMember"] == 2 and len(report["cycles"][0]["bindings"]) == 4      # head + minReplicas
    # a worker group KubeRay suspends (``suspend``) makes no pods
    idle = load(tmp_path, text + f"  - groupName: idle\n    suspend: true\n    replicas: 2\n    template:{t}", "idle.yaml")
    assert sorted(pods_of(idle)) == sorted(pods)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                     max_leaves=6)
_SHAPES = {
    "Job": ("batch/v1", ["parallelism", "completions", "template", "completionMode", "suspend"]),
    "Deployment": ("apps/v1", ["replicas", "template", "selector", "paused"]),
    "StatefulSet": ("apps/v1", ["replicas", "template", "volumeClaimTemplates", "podManagementPolicy"]),
    "PyTorchJob": ("kubeflow.org/v1", ["pytorchReplicaSpecs", "runPolicy"]),
    "MPIJob": ("kubeflow.org/v2beta1", ["mpiReplicaSpecs", "launcherCreationPolicy"]),
    "JobSet": ("jobset.x-k8s.io/v1alpha2", ["replicatedJobs", "startupPolicy", "suspend"]),
    "LeaderWorkerSet": ("leaderworkerset.x-k8s.io/v1", ["replicas", "leaderWorkerTemplate", "startupPolicy"]),
    "RayCluster": ("ray.io/v1", ["headGroupSpec", "workerGroupSpecs", "suspend"]),
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(_SHAPES)), st.data())
def test_any_workload_spec_makes_pods_or_a_named_error_never_a_crash(kind, data):
    api, fields = _SHAPES[kind]
    spec = {f: data.draw(_JSON, label=f) for f in data.draw(st.lists(st.sampled_from(fields), unique=True))}
    doc = {"apiVersion": api, "kind": kind, "metadata": {"name": "w", "namespace": "ml"}, "spec": spec}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        m = load_manifests([path], keep_going=True)
        for e in m.errors:
            assert e.startswith(f"{path}: document 1") and f"{kind} ml/w" in e
        try:
            load_manifests([path])
        except LoadError:
            pass


def test_a_stateful_set_counts_ordinals_from_its_start(tmp_path):
    m = load(tmp_path, f"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\n"
                       f"spec:\n  replicas: 2\n  ordinals: {{start: 5}}\n  podManagementPolicy: Parallel\n"
                       f"  template:{TEMPLATE}")
    assert sorted(pods_of(m)) == ["db-5", "db-6"]


def test_a_replicated_job_that_depends_on_another_is_not_made_and_says_so(tmp_path):
    t = TEMPLATE.replace("\n    ", "\n            ")
    text = (f"apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {{name: js, namespace: ml}}\nspec:\n"
            f"  replicatedJobs:\n  - name: init\n    template:\n      spec:\n        template:{t}"
            f"  - name: main\n    dependsOn: [{{name: init, status: Complete}}]\n    template:\n      spec:\n"
            f"        template:{t}")
    m = load(tmp_path, text)
    assert [p.metadata.labels["jobset.sigs.k8s.io/replicatedjob-name"] for p in m.objects["Pod"]] == ["init"]
    assert any("main dependsOn" in n for n in m.notes)
