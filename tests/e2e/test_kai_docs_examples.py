"""KAI-Scheduler's docs examples on a live control plane, behaving as KAI's docs say.

Each example of KAI's ``docs/`` (quickstart, batch, gpu-sharing, priority, elastic, queues)
is applied as the docs apply it, with ``kai scheduler`` running. Three things are changed so
the examples can share one control plane with the other e2e tests, and nothing else: the
pods' ``schedulerName`` is this module's scheduler (``kai-docs``), every pod gets a
``nodeSelector`` for nodes of its own (kwok, the docs' GPU counts), and pods live in the
test's namespace. The manifests are written here as data from the docs' YAML (same names,
labels, annotations and requests).

Notes on the docs themselves:

* priority: ``example/limited-queue.yaml`` makes queue ``test`` (quota 1, limit 1 GPU), but
  the two pods' YAML label ``kai.scheduler/queue: default-queue``; the README's explanation
  ("both pods request 1 GPU, which is the limit of the test queue") is about queue ``test``,
  so the pods are labelled ``test`` here. (In ``default-queue``, quota 0, the non-preemptible
  ``build`` pod could never run: KAI keeps non-preemptible jobs within quota.)
* elastic / batch PyTorchJob: no training operator runs here; its CRD is installed and the
  pods are created as the operator creates them (owned by the PyTorchJob, replica labels).
* gpu-sharing: on kwok nothing reads a GPU through NVML, so the reservation pod's GPU id is
  patched by the test, as KAI's reservation image does on a real node.
"""
from __future__ import annotations

import threading

import pytest

from e2e_helpers import SchedulerProcess, ensure, play_gpu_device, wait_for
from kai.cache.kubeclient import ApiError
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

NAME = "kai-docs"
POOL = "kai-e2e/pool"
QUEUES = "/apis/scheduling.run.ai/v2/queues"
PCS = "/apis/scheduling.k8s.io/v1/priorityclasses"
RES_PODS = "/api/v1/namespaces/kai-resource-reservation/pods"
UNLIMITED = {"quota": -1, "limit": -1, "overQuotaWeight": 1}


# ------------------------------------------------------------------ fixtures / helpers
@pytest.fixture(scope="module")
def docs_scheduler(kai_cluster, kai_client, tmp_path_factory):
    c = kai_client
    # the chart's priority classes (train 50, build-preemptible 75, build 100, inference 125)
    for name, value in (("train", 50), ("build-preemptible", 75), ("build", 100), ("inference", 125)):
        ensure(c, PCS, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                        "metadata": {"name": name}, "value": value})
    proc = SchedulerProcess(kai_cluster, tmp_path_factory.mktemp("kai-docs") / "scheduler.log",
                            "--scheduler-name", NAME)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
        # this module's nodes go with it: other tests' pods tolerate every taint
        for n in c.get("/api/v1/nodes", params={"labelSelector": POOL})["items"]:
            if n["metadata"]["name"].startswith("docs-"):
                try:
                    c.delete(f"/api/v1/nodes/{n['metadata']['name']}")
                except ApiError:
                    pass


def nodes(control_plane, pool: str, count: int = 1, **kw) -> list[str]:
    names = [f"docs-{pool}-{i}" for i in range(count)]
    for n in names:
        try:
            control_plane.create_node(fake_node_manifest(n, labels={POOL: pool, **kw.pop("labels", {})}, **kw))
        except Exception as exc:   # noqa: BLE001 - rerun in the same session
            if "409" not in str(exc) and "AlreadyExists" not in str(exc):
                raise
    control_plane.wait_nodes_ready(names)
    for n in names:
        # the admission plugin taints a new node not-ready; on a real cluster the node
        # lifecycle controller lifts the taint once the node is Ready (it does not run here)
        status, node = control_plane.api_request("GET", f"/api/v1/nodes/{n}")
        taints = [t for t in (node.get("spec") or {}).get("taints") or []
                  if t.get("key") != "node.kubernetes.io/not-ready"]
        if taints != (node.get("spec") or {}).get("taints"):
            node["spec"]["taints"] = taints
            control_plane.api_request("PUT", f"/api/v1/nodes/{n}", node)
    return names


def docs_pod(name: str, pool: str, labels: dict | None = None, annotations: dict | None = None,
             requests: dict | None = None, limits: dict | None = None) -> dict:
    res: dict = {}
    if requests:
        res["requests"] = dict(requests)
    if limits:
        res["limits"] = dict(limits)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})},
            "spec": {"schedulerName": NAME, "nodeSelector": {POOL: pool}, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "ubuntu", "args": ["sleep", "infinity"],
                                     "resources": res}]}}


def queue(name: str, parent: str = "", **resources) -> dict:
    spec: dict = {"resources": resources}
    if parent:
        spec["parentQueue"] = parent
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def put_queue(c, q: dict) -> None:
    try:
        c.post(QUEUES, q)
    except ApiError as exc:
        if exc.status != 409:
            raise
        cur = c.get(f"{QUEUES}/{q['metadata']['name']}")
        c.patch(f"{QUEUES}/{q['metadata']['name']}", {"spec": q["spec"]},
                content_type="application/merge-patch+json") if cur["spec"] != q["spec"] else None


def pod(c, ns, name):
    try:
        return c.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    except ApiError:
        return None


def bound(c, ns, name, timeout=60.0) -> dict:
    try:
        return wait_for(lambda: (p := pod(c, ns, name)) and p["spec"].get("nodeName") and p, timeout,
                        what=f"pod {name} bound")
    except AssertionError as exc:
        p = pod(c, ns, name) or {}
        raise AssertionError(f"{exc}; pod status: {p.get('status')}; events: "
                             f"{[e.get('message') for e in events(c, ns, name)]}") from None


def gone_or_deleting(c, ns, name) -> bool:
    p = pod(c, ns, name)
    return p is None or bool(p["metadata"].get("deletionTimestamp"))


def events(c, ns, name) -> list[dict]:
    return [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"]
            if e["involvedObject"].get("name") == name]


# ------------------------------------------------------------------ quickstart
def test_quickstart_cpu_and_gpu_pods_run(control_plane, kai_client, docs_scheduler, kube_namespace):
    """docs/quickstart: with the default queues, ``cpu-only-pod`` and ``gpu-pod`` both run."""
    c, ns = kai_client, kube_namespace
    nodes(control_plane, "qs", gpus=8)
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("cpu-only-pod", "qs", labels={"kai.scheduler/queue": "default-queue"},
                                                   requests={"cpu": "100m", "memory": "250M"}))
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("gpu-pod", "qs", labels={"kai.scheduler/queue": "default-queue"},
                                                   limits={"nvidia.com/gpu": "1"}))
    bound(c, ns, "cpu-only-pod")
    bound(c, ns, "gpu-pod")


# ------------------------------------------------------------------ batch
def test_batch_job_pods_scheduled_separately(control_plane, kai_client, docs_scheduler, kube_namespace):
    """docs/batch: ``batch-job`` (parallelism 2, 1 GPU each) -- 2 pods, scheduled separately:
    with room for one only, one runs and the other waits."""
    c, ns = kai_client, kube_namespace
    nodes(control_plane, "batch", gpus=1)
    template = docs_pod("x", "batch", labels={"kai.scheduler/queue": "default-queue"},
                        limits={"nvidia.com/gpu": "1"})
    template["spec"]["restartPolicy"] = "OnFailure"
    c.post(f"/apis/batch/v1/namespaces/{ns}/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch-job"},
        "spec": {"parallelism": 2, "completions": 2,
                 "template": {"metadata": {"labels": template["metadata"]["labels"]}, "spec": template["spec"]}}})

    def pods():
        items = c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "job-name=batch-job"})["items"]
        return items if len(items) == 2 else None
    wait_for(pods, 30, what="the Job's 2 pods")
    # one GPU: the pods run one after the other (kwok completes a Job's pod at once), never
    # together, and neither waits for the other (no gang)
    most = 0

    def both_done():
        nonlocal most
        items = pods() or []
        most = max(most, sum(1 for p in items if p["spec"].get("nodeName") and p["status"].get("phase") != "Succeeded"))
        return len(items) == 2 and all(p["status"].get("phase") == "Succeeded" for p in items)
    wait_for(both_done, 90, interval=0.1, what="both pods run, one after the other")
    # both ran on a 1-GPU node: as a gang of 2 they never could; never 2 at once (sampled)
    assert most <= 1


# ------------------------------------------------------------------ gpu sharing
def test_gpu_sharing_fraction_and_memory_pods_share_a_gpu(control_plane, kai_client, docs_scheduler,
                                                          kube_namespace):
    """docs/gpu-sharing: ``gpu-fraction: "0.5"`` and ``gpu-memory: "2000"`` pods run, on one
    shared GPU of a 1-GPU node (the node's device memory from the GPU operator's label)."""
    c, ns = kai_client, kube_namespace
    (node,) = nodes(control_plane, "share", gpus=1, labels={"nvidia.com/gpu.memory": "16384"})
    stop = threading.Event()
    t = play_gpu_device(c, "GPU-0d0c5b7e-0000-4000-8000-000000000001", lambda n: n == node, stop)
    try:
        c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("gpu-sharing", "share",
                                                       labels={"kai.scheduler/queue": "default-queue"},
                                                       annotations={"gpu-fraction": "0.5"}))
        c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("gpu-memory", "share",
                                                       labels={"kai.scheduler/queue": "default-queue"},
                                                       annotations={"gpu-memory": "2000"}))
        a, b = bound(c, ns, "gpu-sharing"), bound(c, ns, "gpu-memory")
        assert a["spec"]["nodeName"] == b["spec"]["nodeName"] == node
        groups = {p["metadata"]["labels"].get("runai-gpu-group") for p in (pod(c, ns, "gpu-sharing"),
                                                                           pod(c, ns, "gpu-memory"))}
        assert len(groups) == 1 and None not in groups          # one shared GPU
    finally:
        stop.set()
        t.join(5)


# ------------------------------------------------------------------ priority
def test_priority_build_preempts_train_at_the_queue_limit(control_plane, kai_client, docs_scheduler,
                                                          kube_namespace):
    """docs/priority: queue ``test`` has quota 1 / limit 1 GPU; ``train-pod`` runs in it; then
    ``build-pod`` (priority 100) is submitted: the scheduler preempts ``train-pod`` and runs
    ``build-pod`` -- on a node with GPUs to spare, so only the queue limit stands between them."""
    c, ns = kai_client, kube_namespace
    nodes(control_plane, "prio", gpus=8)
    put_queue(c, queue("default", cpu=UNLIMITED, gpu=UNLIMITED, memory=UNLIMITED))
    put_queue(c, queue("test", "default", cpu=UNLIMITED, gpu={"quota": 1, "limit": 1, "overQuotaWeight": 1},
                       memory=UNLIMITED))
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("train-pod", "prio",
                                                   labels={"kai.scheduler/queue": "test", "priorityClassName": "train"},
                                                   limits={"nvidia.com/gpu": "1"}))
    bound(c, ns, "train-pod")
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("build-pod", "prio",
                                                   labels={"kai.scheduler/queue": "test", "priorityClassName": "build"},
                                                   limits={"nvidia.com/gpu": "1"}))
    wait_for(lambda: gone_or_deleting(c, ns, "train-pod"), 60, what="train-pod preempted")
    bound(c, ns, "build-pod", 60)
    # (the Evict Event is posted after the DELETE, through the status writer's queue)
    wait_for(lambda: any(e["reason"] == "Evict" and "preempt" in e["message"] for e in events(c, ns, "train-pod")),
             15, what="train-pod's Evict Event")


# ------------------------------------------------------------------ elastic
PYTORCH_CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "pytorchjobs.kubeflow.org"},
               "spec": {"group": "kubeflow.org", "scope": "Namespaced",
                        "names": {"kind": "PyTorchJob", "plural": "pytorchjobs", "singular": "pytorchjob",
                                  "listKind": "PyTorchJobList"},
                        "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                      "schema": {"openAPIV3Schema": {"type": "object",
                                                                     "x-kubernetes-preserve-unknown-fields": True}}}]}}


def _pytorch_crd(c) -> None:
    ensure(c, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", PYTORCH_CRD)

    def served():
        try:
            c.get("/apis/kubeflow.org/v1")
            return True
        except ApiError:
            return False
    wait_for(served, 30, what="PyTorchJob CRD served")


def test_elastic_pytorchjob_starts_at_min_and_shrinks_for_a_higher_priority_pod(control_plane, kai_client,
                                                                                docs_scheduler, kube_namespace):
    """docs/elastic: a PyTorchJob with ``elasticPolicy.minReplicas: 1`` and 2 workers (cpu 4
    each) runs as soon as one worker fits; given room it runs both; when a more prioritized
    workload needs the room, only part of its pods is evicted and the job keeps running."""
    c, ns = kai_client, kube_namespace
    _pytorch_crd(c)
    nodes(control_plane, "elastic", gpus=0, cpu="6")
    job = c.post(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs", {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": "elastic-example-imagenet", "labels": {"kai.scheduler/queue": "default-queue"}},
        "spec": {"elasticPolicy": {"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": 3, "maxRestarts": 100},
                 "pytorchReplicaSpecs": {"Worker": {"replicas": 2, "restartPolicy": "OnFailure"}}}})
    ref = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": job["metadata"]["name"],
           "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    for i in range(2):                   # what the training operator creates
        p = docs_pod(f"elastic-example-imagenet-worker-{i}", "elastic", requests={"cpu": "4"},
                     labels={"training.kubeflow.org/job-name": "elastic-example-imagenet",
                             "training.kubeflow.org/replica-type": "worker",
                             "training.kubeflow.org/replica-index": str(i)})
        p["metadata"]["ownerReferences"] = [ref]
        c.post(f"/api/v1/namespaces/{ns}/pods", p)
    workers = [f"elastic-example-imagenet-worker-{i}" for i in range(2)]

    def running():
        return [w for w in workers if (p := pod(c, ns, w)) and p["spec"].get("nodeName")
                and not p["metadata"].get("deletionTimestamp")]
    # 6 cpus: one worker fits, and the job starts with it (minReplicas 1)
    wait_for(lambda: len(running()) == 1, 60, what="the elastic job running with one worker")
    # more room: the second worker joins
    nodes(control_plane, "elastic", count=2, gpus=0, cpu="6")
    wait_for(lambda: len(running()) == 2, 60, what="both workers running")
    # a more prioritized workload in the same queue needs a worker's room: one worker goes
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("urgent", "elastic", requests={"cpu": "4"},
                                                   labels={"kai.scheduler/queue": "default-queue",
                                                           "priorityClassName": "build-preemptible"}))
    bound(c, ns, "urgent", 90)
    left = running()
    assert len(left) == 1, left                                    # shrunk, not evicted whole
    wait_for(lambda: any(e["reason"] == "Evict" for w in workers for e in events(c, ns, w)), 15,
             what="the shrunk worker's Evict Event")


# ------------------------------------------------------------------ queues
def test_queue_examples_quota_limit_and_unset_values(control_plane, kai_client, docs_scheduler, kube_namespace):
    """docs/queues: the "Basic" ``research-team`` (cpu quota 1000 / limit 2000, gpu quota 1 /
    limit 2, memory unset) with the "Hierarchical" ``ml-team`` under it. Only the leaf takes
    jobs; the parent's GPU limit caps its child; an unset limit admits nothing, so a pod that
    requests memory waits (OverLimit) while one that requests none runs."""
    c, ns = kai_client, kube_namespace
    nodes(control_plane, "queues", gpus=8)
    put_queue(c, {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "research-team"},
                  "spec": {"displayName": "Research Team",
                           "resources": {"cpu": {"quota": 1000, "limit": 2000}, "gpu": {"quota": 1, "limit": 2}}}})
    put_queue(c, {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "ml-team"},
                  "spec": {"displayName": "ML Team", "parentQueue": "research-team", "priority": 200,
                           "resources": {"cpu": {"quota": 500, "overQuotaWeight": 2},
                                         "gpu": {"quota": 1, "overQuotaWeight": 1}}}})
    ml = {"kai.scheduler/queue": "ml-team"}
    # ml-team's own limits are unset (0): a GPU pod cannot run in it ...
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("ml-gpu", "queues", labels=ml,
                                                   requests={"cpu": "100m"}, limits={"nvidia.com/gpu": "1"}))
    # ... nor can a pod in the parent (not a leaf)
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("parent-pod", "queues",
                                                   labels={"kai.scheduler/queue": "research-team"},
                                                   requests={"cpu": "100m"}))

    def reasons(name):
        p = pod(c, ns, name) or {}
        conds = [x.get("message") or "" for x in (p.get("status") or {}).get("conditions") or []
                 if x.get("type") == "PodScheduled"]
        return " ".join(conds + [e.get("message") or "" for e in events(c, ns, name)])
    wait_for(lambda: "limit" in reasons("ml-gpu"), 60, what="ml-gpu waiting on the queue limit")
    wait_for(lambda: "leaf" in reasons("parent-pod"), 60, what="parent-pod refused: not a leaf queue")
    assert not pod(c, ns, "ml-gpu")["spec"].get("nodeName")
    assert not pod(c, ns, "parent-pod")["spec"].get("nodeName")
    # a burst-queue (unlimited cpu, gpu quota 0 / no limit, memory unset) runs a GPU pod
    # without memory requests and keeps one that requests memory waiting
    put_queue(c, {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "burst-queue"},
                  "spec": {"resources": {"cpu": {"quota": -1, "limit": -1}, "gpu": {"quota": 0, "limit": -1}}}})
    burst = {"kai.scheduler/queue": "burst-queue"}
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("burst-gpu", "queues", labels=burst,
                                                   requests={"cpu": "100m"}, limits={"nvidia.com/gpu": "2"}))
    c.post(f"/api/v1/namespaces/{ns}/pods", docs_pod("burst-mem", "queues", labels=burst,
                                                   requests={"cpu": "100m", "memory": "1Gi"}))
    bound(c, ns, "burst-gpu")
    wait_for(lambda: "memory" in reasons("burst-mem"), 60, what="burst-mem waiting on the unset memory limit")
    assert not pod(c, ns, "burst-mem")["spec"].get("nodeName")
