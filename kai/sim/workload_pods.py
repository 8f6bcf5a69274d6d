"""The pods workload controllers would make, for ``kai simulate``.

A workload manifest of a kind below, as written (no ``status``, no ``resourceVersion``:
never applied) and with no pod in the input that is its own (owned by it, or labelled as its controller labels its pods: :func:`adopter`),
stands for the pods its controller creates once it is applied. :func:`workload_pods`
makes them as that controller names and labels them, owned by the workload, so that the
pod-grouper groups them as it would on a cluster (KAI's docs examples are such manifests:
``docs/batch/batch-job.yaml``, ``pytorch-job.yaml``, ``elastic/pytorch-elastic.yaml``).

What each controller makes, at creation:

- ``batch/v1`` Job: ``min(parallelism, completions)`` pods (``parallelism`` 1 when unset),
  none while ``suspend``; ``<job>-<suffix>``, or ``<job>-<index>-<suffix>`` with the
  completion index for ``completionMode: Indexed``; the Job controller's labels
  (``batch.kubernetes.io/job-name``, ``controller-uid`` and their legacy twins).
- ``apps/v1`` Deployment: its ReplicaSet ``<deployment>-<pod-template-hash>`` (owned by it)
  with ``replicas`` pods (1 when unset), none while ``paused``; ReplicaSet: ``replicas`` pods.
- ``apps/v1`` StatefulSet: ``<set>-<ordinal>`` (from ``spec.ordinals.start``) with its ``volumeClaimTemplates`` claims
  (``<template>-<set>-<ordinal>``); every ordinal with ``podManagementPolicy: Parallel``,
  only ordinal 0 with ``OrderedReady`` (the default: the next waits until it is Running and
  Ready, which a simulation does not reach).
- Kubeflow training jobs (``PyTorchJob``, ``TFJob``, ``XGBoostJob``, ``PaddleJob``,
  ``JAXJob``, ``MXJob``): ``<job>-<replica type>-<index>`` for each replica spec, with the
  training operator's labels; none while ``runPolicy.suspend``.
- ``JobSet`` (``jobset.x-k8s.io/v1alpha2``): ``replicas`` Jobs ``<jobset>-<replicatedJob>-<index>``
  per replicated job, owned by it, with JobSet's labels on them and their pods, each Job's
  pods as above; none while ``suspend``; with ``startupPolicyOrder: InOrder`` only the first
  replicated job's, and none of a replicated job that ``dependsOn`` others (they wait for the
  others to be ready or complete, which a simulation does not reach: a note says so).
- ``LeaderWorkerSet`` (``leaderworkerset.x-k8s.io/v1``): ``replicas`` groups; the leader
  StatefulSet ``<lws>`` (owned by it) with leader pods ``<lws>-<group>``, and per group a
  worker StatefulSet ``<lws>-<group>`` owned by its leader pod, with workers
  ``<lws>-<group>-<index>`` (1 to size - 1); the LWS labels and size annotation; with
  ``startupPolicy: LeaderReady`` the leaders only (the workers wait for a ready leader: a
  note says so).
- ``RayCluster`` (``ray.io/v1``, KubeRay): the head ``<cluster>-head-<suffix>`` and, per
  worker group not suspended, ``replicas`` (``minReplicas`` when unset, kept within
  ``minReplicas``..``maxReplicas``) times ``numOfHosts`` workers ``<cluster>-<group>-worker-<suffix>``,
  with KubeRay's labels; none while ``suspend``.
- ``MPIJob`` (``kubeflow.org/v2beta1``, the MPI operator): workers ``<job>-worker-<index>``
  owned by it, and its launcher Job ``<job>-launcher`` with the launcher pod, made at start
  (``launcherCreationPolicy: AtStartup``, the default) or, with ``WaitForWorkersReady``,
  once the workers are ready, which a simulation does not reach (a note says so).

Names that a controller draws at random (a Job's or ReplicaSet's pod suffix, the
pod-template-hash) are drawn from a hash of the workload and the pod's place instead: the
same manifests give the same names. Any other workload kind is left to the user (its pods
given as manifests), with a note.
"""
from __future__ import annotations

import copy
import hashlib
import json

import msgspec

from kai.api.k8s import LabelSelector
from kai.api.selectors import compile_selector

#: the alphabet Kubernetes draws generated name suffixes from (no vowels, no look-alikes)
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

#: Kubeflow training job kind -> (field of its replica specs, operator name)
KUBEFLOW = {
    "PyTorchJob": ("pytorchReplicaSpecs", "pytorchjob-controller"),
    "TFJob": ("tfReplicaSpecs", "tfjob-controller"),
    "XGBoostJob": ("xgbReplicaSpecs", "xgboostjob-controller"),
    "PaddleJob": ("paddleReplicaSpecs", "paddlejob-controller"),
    "JAXJob": ("jaxReplicaSpecs", "jaxjob-controller"),
    "MXJob": ("mxReplicaSpecs", "mxjob-controller"),
}
_LWS = "leaderworkerset.sigs.k8s.io/"
#: replica types whose index 0 gets the ``job-role: master`` label
_MASTER_TYPES = ("master", "chief", "launcher")
#: workload kinds whose pods kai simulate makes
EXPANDED = frozenset({"Job", "Deployment", "ReplicaSet", "StatefulSet", "MPIJob", "JobSet", "LeaderWorkerSet",
                       "RayCluster", *KUBEFLOW})
#: workload kinds a user may expect to make pods, which kai simulate does not model
NOT_EXPANDED = frozenset({"CronJob", "DaemonSet", "RayJob", "RayService",
                          "Notebook", "InferenceService", "Workflow", "SparkApplication"})


def as_written(obj: dict) -> bool:
    """True for a manifest never applied: no ``status`` (or an empty one) and no
    ``metadata.resourceVersion`` (a dump of a live cluster has both)."""
    meta = obj.get("metadata") or {}
    return not obj.get("status") and not meta.get("resourceVersion")


def adopter(obj: dict):
    """``labels -> bool``: True for a pod (in the workload's namespace) that looks like one of
    the workload's own: the name label its controller sets (``job-name``,
    ``training.kubeflow.org/job-name``, ``jobset.sigs.k8s.io/jobset-name``,
    ``leaderworkerset.sigs.k8s.io/name``, ``ray.io/cluster``), or, for a Deployment,
    ReplicaSet or StatefulSet, a non-empty ``spec.selector`` that matches (the controller
    would adopt that pod)."""
    kind, name = obj["kind"], (obj.get("metadata") or {}).get("name")
    if kind == "Job":
        return lambda labels: name in (labels.get("job-name"), labels.get("batch.kubernetes.io/job-name"))
    if kind in KUBEFLOW or kind == "MPIJob":
        return lambda labels: labels.get("training.kubeflow.org/job-name") == name
    if kind == "JobSet":
        return lambda labels: labels.get("jobset.sigs.k8s.io/jobset-name") == name
    if kind == "LeaderWorkerSet":
        return lambda labels: labels.get(_LWS + "name") == name
    if kind == "RayCluster":
        return lambda labels: labels.get("ray.io/cluster") == name
    spec = obj.get("spec")
    sel = spec.get("selector") if isinstance(spec, dict) else None
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        return lambda labels: False
    try:
        selector = compile_selector(msgspec.convert(sel, LabelSelector))
    except (msgspec.ValidationError, ValueError):
        return lambda labels: False
    return selector.matches


def _suffix(*parts: str, length: int = 5) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


def _count(value, default: int, where: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _mapping(parent: dict, key: str, where: str) -> dict:
    """``parent[key]`` as a mapping ({} when absent), or a ValueError naming ``where``."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a mapping")
    return value


def _owner_ref(obj: dict, uid: str) -> dict:
    return {"apiVersion": obj.get("apiVersion", ""), "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": uid, "controller": True, "blockOwnerDeletion": True}


def _pod(template: dict, name: str, ns: str, owner: dict, labels: dict, annotations=None,
         where: str = "") -> dict:
    """A pod of ``template`` (the workload's ``spec.template``) named ``name``, owned by ``owner``."""
    if not isinstance(template, dict):
        raise ValueError(f"{where}: must be a mapping")
    tmeta = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    if not isinstance(tmeta, dict):
        raise ValueError(f"{where}.metadata: must be a mapping")
    for field in ("labels", "annotations"):
        if not isinstance(tmeta.get(field) or {}, dict):
            raise ValueError(f"{where}.metadata.{field}: must be a mapping")
    if not isinstance(spec, dict):
        raise ValueError(f"{where}.spec: must be a mapping")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {**(tmeta.get("labels") or {}), **labels},
                         "annotations": {**(tmeta.get("annotations") or {}), **(annotations or {})},
                         "ownerReferences": [owner]},
            "spec": spec}


def workload_pods(obj: dict, uid: str) -> tuple[list[dict], list[dict], list[str]]:
    """What the controller of workload ``obj`` (uid ``uid``) makes at creation: (documents:
    its pods, then a StatefulSet's claims; owners between it and its pods: a Deployment's
    ReplicaSet, a JobSet's Jobs, an MPIJob's launcher Job, a LeaderWorkerSet's StatefulSets;
    notes). Raises ValueError naming the field of a malformed spec."""
    kind = obj["kind"]
    meta = obj["metadata"]
    name, ns = meta["name"], meta.get("namespace") or "default"
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise ValueError("spec: must be a mapping")
    owner = _owner_ref(obj, uid)
    if kind == "Job":
        return _job(spec, name, ns, uid, owner), [], []
    if kind == "ReplicaSet":
        return _replicas(spec, name, ns, owner, {}), [], []
    if kind == "Deployment":
        return _deployment(spec, name, ns, owner)
    if kind == "StatefulSet":
        return _stateful_set(spec, name, ns, owner)
    if kind in KUBEFLOW:
        return _kubeflow(obj, spec, name, ns, owner), [], []
    if kind == "MPIJob":
        return _mpijob(spec, name, ns, owner)
    if kind == "JobSet":
        return _jobset(spec, name, ns, owner)
    if kind == "LeaderWorkerSet":
        return _lws(spec, name, ns, owner)
    if kind == "RayCluster":
        return _ray(spec, name, ns, owner), [], []
    raise ValueError(f"kind {kind}: kai simulate does not make its pods")


def _job(spec, name, ns, uid, owner) -> list[dict]:
    if spec.get("suspend"):
        return []
    parallelism = _count(spec.get("parallelism"), 1, "spec.parallelism")
    completions = spec.get("completions")
    active = parallelism if completions is None else min(parallelism, _count(completions, 1, "spec.completions"))
    indexed = spec.get("completionMode") == "Indexed"
    labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
              "controller-uid": uid, "job-name": name}
    out = []
    for i in range(active):
        extra, ann = dict(labels), {}
        if indexed:
            extra["batch.kubernetes.io/job-completion-index"] = str(i)
            ann["batch.kubernetes.io/job-completion-index"] = str(i)
            pod_name = f"{name}-{i}-{_suffix(ns, name, str(i))}"
        else:
            pod_name = f"{name}-{_suffix(ns, name, str(i))}"
        pod = _pod(spec.get("template") or {}, pod_name, ns, owner, extra, ann, "spec.template")
        if indexed:
            pod["spec"].setdefault("hostname", f"{name}-{i}")
        out.append(pod)
    return out


def _replicas(spec, name, ns, owner, labels) -> list[dict]:
    n = _count(spec.get("replicas"), 1, "spec.replicas")
    return [_pod(spec.get("template") or {}, f"{name}-{_suffix(ns, name, str(i))}", ns, owner, labels,
                 where="spec.template") for i in range(n)]


def _deployment(spec, name, ns, owner):
    if spec.get("paused"):
        return [], [], []
    template = _mapping(spec, "template", "spec.template")
    _mapping(template, "metadata", "spec.template.metadata")
    # the ReplicaSet's name carries a hash of the pod template (pod-template-hash)
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).hexdigest()
    h = _suffix(ns, name, digest, length=10)
    rs_name = f"{name}-{h}"
    rs_uid = f"uid-replicaset-{ns}-{rs_name}"
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": rs_name, "namespace": ns, "uid": rs_uid,
                       "labels": {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": h},
                       "ownerReferences": [owner]},
          "spec": {"replicas": spec.get("replicas", 1), "template": template}}
    pods = _replicas(rs["spec"], rs_name, ns, _owner_ref(rs, rs_uid), {"pod-template-hash": h})
    return pods, [rs], []


def _stateful_set(spec, name, ns, owner):
    n = _count(spec.get("replicas"), 1, "spec.replicas")
    start = _count(_mapping(spec, "ordinals", "spec.ordinals").get("start"), 0, "spec.ordinals.start")
    parallel = spec.get("podManagementPolicy") == "Parallel"
    made = n if parallel else min(n, 1)
    notes = []
    if made < n:
        notes.append(f"podManagementPolicy OrderedReady makes pod {name}-{start + 1} only once {name}-{start} "
                     f"is Running and Ready; only {name}-{start} is simulated (give the other pods as "
                     f"manifests, or set podManagementPolicy: Parallel)")
    revision = _suffix(ns, name, "revision", length=10)
    templates = spec.get("volumeClaimTemplates") or []
    if not isinstance(templates, list):
        raise ValueError("spec.volumeClaimTemplates: must be a list")
    out, claims = [], []
    for i in range(start, start + made):
        pod_name = f"{name}-{i}"
        labels = {"statefulset.kubernetes.io/pod-name": pod_name, "apps.kubernetes.io/pod-index": str(i),
                  "controller-revision-hash": f"{name}-{revision}"}
        pod = _pod(spec.get("template") or {}, pod_name, ns, owner, labels, where="spec.template")
        pod["spec"].setdefault("hostname", pod_name)
        if spec.get("serviceName"):
            pod["spec"].setdefault("subdomain", spec["serviceName"])
        volumes = pod["spec"].setdefault("volumes", [])
        for k, t in enumerate(templates):
            if not isinstance(t, dict):
                raise ValueError(f"spec.volumeClaimTemplates[{k}]: must be a mapping")
            tname = _mapping(t, "metadata", f"spec.volumeClaimTemplates[{k}].metadata").get("name")
            if not tname:
                raise ValueError(f"spec.volumeClaimTemplates[{k}].metadata.name: required")
            claim = f"{tname}-{name}-{i}"
            claims.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": claim, "namespace": ns,
                                        "labels": dict((t.get("metadata") or {}).get("labels") or {})},
                           "spec": copy.deepcopy(t.get("spec") or {})})
            volumes[:] = [v for v in volumes if v.get("name") != tname]
            volumes.append({"name": tname, "persistentVolumeClaim": {"claimName": claim}})
        out.append(pod)
    return out + claims, [], notes


def _kubeflow(obj, spec, name, ns, owner) -> list[dict]:
    field, operator = KUBEFLOW[obj["kind"]]
    if _mapping(spec, "runPolicy", "spec.runPolicy").get("suspend"):
        return []
    replica_specs = spec.get(field) or {}
    if not isinstance(replica_specs, dict):
        raise ValueError(f"spec.{field}: must be a mapping")
    out = []
    for rtype, rspec in replica_specs.items():
        rspec = rspec or {}
        where = f"spec.{field}.{rtype}"
        if not isinstance(rspec, dict):
            raise ValueError(f"{where}: must be a mapping")
        n = _count(rspec.get("replicas"), 1, f"{where}.replicas")
        low = str(rtype).lower()
        for i in range(n):
            labels = {"training.kubeflow.org/job-name": name, "training.kubeflow.org/operator-name": operator,
                      "training.kubeflow.org/replica-type": low, "training.kubeflow.org/replica-index": str(i)}
            if i == 0 and low in _MASTER_TYPES:
                labels["training.kubeflow.org/job-role"] = "master"
            out.append(_pod(rspec.get("template") or {}, f"{name}-{low}-{i}", ns, owner, labels,
                            where=f"{where}.template"))
    return out


def _mpijob(spec, name, ns, owner):
    if _mapping(spec, "runPolicy", "spec.runPolicy").get("suspend"):
        return [], [], []
    replica_specs = spec.get("mpiReplicaSpecs") or {}
    if not isinstance(replica_specs, dict):
        raise ValueError("spec.mpiReplicaSpecs: must be a mapping")
    base = {"training.kubeflow.org/job-name": name, "training.kubeflow.org/operator-name": "mpi-operator"}
    worker = replica_specs.get("Worker") or {}
    launcher = replica_specs.get("Launcher")
    for part, value in (("Worker", worker), ("Launcher", launcher)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"spec.mpiReplicaSpecs.{part}: must be a mapping")
    out = []
    for i in range(_count(worker.get("replicas"), 0, "spec.mpiReplicaSpecs.Worker.replicas")):
        labels = {**base, "training.kubeflow.org/job-role": "worker", "training.kubeflow.org/replica-index": str(i)}
        out.append(_pod(worker.get("template") or {}, f"{name}-worker-{i}", ns, owner, labels,
                        where="spec.mpiReplicaSpecs.Worker.template"))
    if launcher is None:
        return out, [], []
    if spec.get("launcherCreationPolicy") == "WaitForWorkersReady":
        return out, [], [f"launcherCreationPolicy WaitForWorkersReady makes the launcher once the workers are "
                         f"ready; only the workers are simulated"]
    job_name = f"{name}-launcher"
    job_uid = f"uid-job-{ns}-{job_name}"
    labels = {**base, "training.kubeflow.org/job-role": "launcher"}
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": job_name, "namespace": ns, "uid": job_uid, "labels": dict(labels),
                        "ownerReferences": [owner]},
           "spec": {"backoffLimit": 6, "template": launcher.get("template") or {}}}
    pods = _job(job["spec"], job_name, ns, job_uid, _owner_ref(job, job_uid))
    for p in pods:
        p["metadata"]["labels"].update(labels)
    return out + pods, [job], []


def _jobset(spec, name, ns, owner):
    if spec.get("suspend"):
        return [], [], []
    rjobs = spec.get("replicatedJobs") or []
    if not isinstance(rjobs, list):
        raise ValueError("spec.replicatedJobs: must be a list")
    notes = []
    if _mapping(spec, "startupPolicy", "spec.startupPolicy").get("startupPolicyOrder") == "InOrder" and len(rjobs) > 1:
        notes.append("startupPolicyOrder InOrder makes each replicated job once the one before is ready; only "
                     f"the first ({(rjobs[0] or {}).get('name')}) is simulated")
        rjobs = rjobs[:1]
    pods, jobs = [], []
    for k, rj in enumerate(rjobs):
        where = f"spec.replicatedJobs[{k}]"
        if not isinstance(rj, dict) or not rj.get("name"):
            raise ValueError(f"{where}.name: required")
        if rj.get("dependsOn"):
            notes.append(f"replicated job {rj['name']} dependsOn others reaching a status (Ready, Complete), "
                         f"which a simulation does not reach; its Jobs are not simulated")
            continue
        replicas = _count(rj.get("replicas"), 1, f"{where}.replicas")
        template = rj.get("template") or {}
        if not isinstance(template, dict):
            raise ValueError(f"{where}.template: must be a mapping")
        jspec = template.get("spec") or {}
        if not isinstance(jspec, dict):
            raise ValueError(f"{where}.template.spec: must be a mapping")
        for i in range(replicas):
            job_name = f"{name}-{rj['name']}-{i}"
            job_uid = f"uid-job-{ns}-{job_name}"
            labels = {"jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": rj["name"],
                      "jobset.sigs.k8s.io/replicatedjob-replicas": str(replicas),
                      "jobset.sigs.k8s.io/job-index": str(i)}
            job = {"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": job_name, "namespace": ns, "uid": job_uid,
                                "labels": {**((template.get("metadata") or {}).get("labels") or {}), **labels},
                                "ownerReferences": [owner]},
                   "spec": jspec}
            try:
                made = _job(jspec, job_name, ns, job_uid, _owner_ref(job, job_uid))
            except ValueError as exc:
                raise ValueError(f"{where}.template.{exc}") from None
            for p in made:
                p["metadata"]["labels"].update(labels)
            pods += made
            jobs.append(job)
    return pods, jobs, notes


def _lws(spec, name, ns, owner):
    replicas = _count(spec.get("replicas"), 1, "spec.replicas")
    lwt = spec.get("leaderWorkerTemplate") or {}
    if not isinstance(lwt, dict):
        raise ValueError("spec.leaderWorkerTemplate: must be a mapping")
    size = _count(lwt.get("size"), 1, "spec.leaderWorkerTemplate.size")
    if size < 1:
        raise ValueError("spec.leaderWorkerTemplate.size: must be at least 1")
    workers_t = lwt.get("workerTemplate") or {}
    leader_t = lwt.get("leaderTemplate") or workers_t
    leader_ready = spec.get("startupPolicy") == "LeaderReady"
    sts_uid = f"uid-statefulset-{ns}-{name}"
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": name, "namespace": ns, "uid": sts_uid, "labels": {_LWS + "name": name},
                        "ownerReferences": [owner]}}
    between, pods = [sts], []
    size_ann = {_LWS + "size": str(size)}
    for i in range(replicas):
        group = {_LWS + "name": name, _LWS + "group-index": str(i),
                 _LWS + "group-key": hashlib.sha1(f"{ns}/{name}-{i}".encode()).hexdigest()}
        leader_name = f"{name}-{i}"
        leader_uid = f"uid-pod-{ns}-{leader_name}"
        leader = _pod(leader_t, leader_name, ns, _owner_ref(sts, sts_uid), {**group, _LWS + "worker-index": "0"},
                      size_ann, where="spec.leaderWorkerTemplate.leaderTemplate")
        leader["metadata"]["uid"] = leader_uid
        pods.append(leader)
        if leader_ready or size == 1:
            continue
        wsts_uid = f"uid-statefulset-{ns}-{leader_name}"
        wsts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": leader_name, "namespace": ns, "uid": wsts_uid, "labels": dict(group),
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": leader_name,
                                                  "uid": leader_uid, "controller": True, "blockOwnerDeletion": True}]}}
        between.append(wsts)
        for j in range(1, size):
            pods.append(_pod(workers_t, f"{name}-{i}-{j}", ns, _owner_ref(wsts, wsts_uid),
                             {**group, _LWS + "worker-index": str(j)}, size_ann,
                             where="spec.leaderWorkerTemplate.workerTemplate"))
    notes = []
    if leader_ready and size > 1:
        notes.append("startupPolicy LeaderReady makes a group's workers once its leader is ready; only the "
                     "leaders are simulated")
    return pods, between, notes


def _ray(spec, name, ns, owner) -> list[dict]:
    if spec.get("suspend"):
        return []
    base = {"ray.io/cluster": name, "ray.io/is-ray-node": "yes", "app.kubernetes.io/created-by": "kuberay-operator"}
    head = spec.get("headGroupSpec") or {}
    if not isinstance(head, dict):
        raise ValueError("spec.headGroupSpec: must be a mapping")
    out = [_pod(head.get("template") or {}, f"{name}-head-{_suffix(ns, name, 'head')}", ns, owner,
                {**base, "ray.io/node-type": "head", "ray.io/group": "headgroup"}, where="spec.headGroupSpec.template")]
    groups = spec.get("workerGroupSpecs") or []
    if not isinstance(groups, list):
        raise ValueError("spec.workerGroupSpecs: must be a list")
    for k, g in enumerate(groups):
        where = f"spec.workerGroupSpecs[{k}]"
        if not isinstance(g, dict):
            raise ValueError(f"{where}: must be a mapping")
        if g.get("suspend"):
            continue
        group = g.get("groupName") or f"worker-group-{k}"
        low = _count(g.get("minReplicas"), 0, f"{where}.minReplicas")
        high = _count(g.get("maxReplicas"), 2**31 - 1, f"{where}.maxReplicas")
        n = min(max(_count(g.get("replicas"), low, f"{where}.replicas"), low), high)
        hosts = max(_count(g.get("numOfHosts"), 1, f"{where}.numOfHosts"), 1)
        for i in range(n * hosts):
            out.append(_pod(g.get("template") or {}, f"{name}-{group}-worker-{_suffix(ns, name, group, str(i))}",
                            ns, owner, {**base, "ray.io/node-type": "worker", "ray.io/group": group},
                            where=f"{where}.template"))
    return out
