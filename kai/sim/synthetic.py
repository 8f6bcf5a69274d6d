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


def mixed_cluster(seed: int, n_nodes: int, n_jobs: int):
    """A small random cluster as ``kai.sim.loader.Manifests`` for property tests: nodes with
    taints and CPU-only ones, a two-level queue tree with GPU quotas and limits, mostly
    single-pod jobs plus small gangs of mixed priority classes (some non-preemptible), some
    with zone affinity or tolerations, a quarter already running, one job in a missing queue."""
    from kai.sim.loader import Manifests

    rng = random.Random(seed)
    m = Manifests()
    m.objects["Node"] = synthetic_nodes(n_nodes, seed=seed, gpus=rng.choice([2, 4, 8]), cpu_only_share=0.2,
                                        tainted_share=0.2)

    def q(name, parent, quota, limit):
        g = QueueResource(quota=quota, over_quota_weight=rng.choice([0, 1, 2]), limit=limit)
        r = QueueResource(quota=-1, over_quota_weight=1, limit=-1)
        return Queue(metadata=ObjectMeta(name=name, uid=f"uid-q-{name}",
                                         creation_timestamp=f"2024-01-01T00:00:0{rng.randrange(3)}Z"),
                     spec=QueueSpec(parent_queue=parent, resources=QueueResources(gpu=g, cpu=r, memory=r)))

    queues = [q("root", "", -1, -1), q("dept", "root", float(rng.choice([-1, 4, 8])), float(rng.choice([-1, 6])))]
    leaves = []
    for i in range(rng.randint(2, 5)):
        parent = rng.choice(["root", "dept"])
        quota = float(rng.choice([0, 1, 2, 4]))
        limit = float(rng.choice([-1, -1, quota, quota + 2]))
        queues.append(q(f"q{i}", parent, quota, limit))
        leaves.append(f"q{i}")
    m.objects["Queue"] = queues
    running = [n.metadata.name for n in m.objects["Node"]]
    for j in range(n_jobs):
        name = f"j{j:03d}"
        size = 1 if rng.random() < 0.8 else rng.randint(2, 3)
        prio = rng.choice(["train", "train", "build", "inference"])
        m.objects["PodGroup"].append(PodGroup(
            metadata=ObjectMeta(name=name, namespace="ns", uid=f"uid-{name}",
                                creation_timestamp=f"2024-01-01T00:00:{rng.randrange(20):02d}Z"),
            spec=PodGroupSpec(min_member=size, queue=rng.choice(leaves + ["missing"] * (j == 0)),
                              priority_class_name=prio)))
        gpus = rng.choice([0, 1, 1, 2])
        zone = f"zone-{rng.randrange(4)}" if rng.random() < 0.15 else None
        node = rng.choice(running) if rng.random() < 0.25 else ""
        for i in range(size):
            m.objects["Pod"].append(make_pod(f"{name}-{i}", "ns", name, gpus, cpu=rng.choice(["1", "2"]),
                                             mem="1Gi", node=node, affinity_zone=zone,
                                             tolerate=rng.random() < 0.3, created=j))
    return m


# ---------------------------------------------------------------------- openb-like trace
# A stand-in for the Alibaba GPU trace (openb, Weng et al., ATC'23) when its files are not
# available (kai.sim.traces.load_workload falls back to it and says so). The tables are
# rounded summaries written for kai: the trace's GPU node types with their share of the
# 1,213 GPU nodes, and per kind of pod (CPU-only, GPU fraction, 1/2/4/8 whole GPUs) its
# share and a few (CPU cores, memory GiB) shapes. No trace rows are reproduced.

#: (CPU cores, memory GiB, GPUs, model, nodes of that type among 1,213)
OPENB_NODE_TYPES = (
    (96, 384, 8, "G2", 549), (104, 512, 2, "T4", 387), (16, 120, 2, "P100", 107), (128, 768, 8, "G3", 39),
    (32, 128, 4, "V100M16", 28), (64, 256, 2, "P100", 22), (96, 768, 8, "V100M32", 21), (8, 32, 1, "V100M16", 19),
    (96, 384, 4, "T4", 17), (48, 368, 4, "V100M32", 9), (64, 256, 8, "V100M16", 7), (8, 60, 1, "P100", 3),
    (8, 60, 2, "P100", 2), (128, 1024, 1, "A10", 2), (82, 336, 8, "V100M16", 1),
)
#: share of the pods of each kind in the default pod list (fraction = one GPU, < 1000 milli)
OPENB_KINDS = {"cpu": 0.133, "frac": 0.378, "g1": 0.480, "g2": 0.002, "g4": 0.002, "g8": 0.005}
#: per kind: ((CPU cores, memory GiB, weight), ...)
OPENB_SHAPES = {
    "cpu": ((12, 56, 34), (32, 48, 26), (8, 30, 15), (15, 50, 11), (16, 50, 9), (8, 16, 2), (16, 32, 3)),
    "frac": ((3, 5, 37), (12, 46, 20), (8, 30, 16), (4, 22, 6), (4, 15, 6), (4, 10, 5), (4, 30, 4), (6, 6, 6)),
    "g1": ((11, 48, 22), (11, 47, 14), (3, 5, 12), (19, 63, 7), (10, 41, 5), (12, 46, 4), (12, 24, 4),
           (16, 57, 4), (8, 30, 14), (4, 16, 14)),
    "g2": ((16, 65, 7), (6, 64, 3), (30, 157, 3), (17, 42, 2), (14, 59, 1)),
    "g4": ((32, 129, 12), (60, 313, 3)),
    "g8": ((88, 320, 9), (64, 257, 10), (120, 720, 3), (120, 625, 2)),
}
#: GPU fraction (milli) of a fraction pod: (milli, weight)
OPENB_FRACTIONS = ((810, 350), (470, 244), (320, 107), (650, 82), (230, 45), (460, 42), (590, 24), (160, 24),
                   (550, 23), (220, 20), (100, 8), (250, 8), (400, 8), (500, 8), (700, 4), (900, 3))
#: model constraints a constrained GPU pod draws from: (allowed models, weight)
OPENB_SPECS = ((("T4",), 40), (("G2",), 10), (("P100",), 10), (("V100M16", "V100M32"), 5), (("G3",), 3),
               (("P100", "V100M16", "V100M32"), 3), (("G2", "P100", "T4", "V100M16", "V100M32"), 2),
               (("P100", "T4", "V100M16", "V100M32"), 1))
#: the named pod lists the real trace ships, as (fractions' share of the GPU demand, multi-GPU
#: pods' share of the GPU demand, share of GPU pods with a model constraint); None = as in the default list
_OPENB_VARIANTS = {"default": (None, None, 0.0)}


def _openb_variant(trace: str) -> tuple[float | None, float | None, float]:
    import re
    if trace in _OPENB_VARIANTS:
        return _OPENB_VARIANTS[trace]
    m = re.fullmatch(r"(gpushare|multigpu|gpuspec)(\d+)", trace)
    if not m:
        raise ValueError(f"no synthetic stand-in for the trace {trace!r}: known are default, gpushareNN, "
                         "multigpuNN, gpuspecNN (NN a percentage)")
    share = int(m.group(2)) / 100.0
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"trace {trace!r}: {m.group(2)}% is not a percentage")
    return {"gpushare": (share, None, 0.0), "multigpu": (None, share, 0.0), "gpuspec": (None, None, share)}[m.group(1)]


def _scaled_counts(weights: list[float], total: int) -> list[int]:
    """Largest-remainder rounding of ``total`` split by ``weights``."""
    w = [x / sum(weights) * total for x in weights]
    out = [int(x) for x in w]
    for i in sorted(range(len(w)), key=lambda i: out[i] - w[i])[:total - sum(out)]:
        out[i] += 1
    return out


def openb_like(trace: str = "default", n_nodes: int = 1213, n_pods: int | None = None, seed: int = 0):
    """A synthetic openb-like cluster and pod list: ``(TraceNodes, TracePods)``.

    Nodes: ``n_nodes`` GPU nodes split among :data:`OPENB_NODE_TYPES` by their shares.
    Pods: ``n_pods`` (default: 8,152 scaled by ``n_nodes / 1213``, the trace's ratio) drawn
    with a ``seed``-ed generator from :data:`OPENB_KINDS`, :data:`OPENB_SHAPES`,
    :data:`OPENB_FRACTIONS`; ``trace`` picks the variant as the real files do:
    ``gpushareNN`` (fractions carry NN% of the GPU demand), ``multigpuNN`` (multi-GPU pods carry
    NN% of the GPU demand), ``gpuspecNN`` (NN% of GPU pods name allowed GPU models).
    """
    import numpy as np

    from kai.sim.trace_model import TraceNodes, TracePods

    frac_share, multi_share, spec_share = _openb_variant(trace)
    rng = np.random.default_rng(seed)
    counts = _scaled_counts([t[4] for t in OPENB_NODE_TYPES], n_nodes)
    names, cpu, mem, gpu, model = [], [], [], [], []
    for (c, m, g, mod, _), k in zip(OPENB_NODE_TYPES, counts):
        for _ in range(k):
            names.append(f"synth-node-{len(names):04d}")
            cpu.append(c * 1000.0)
            mem.append(m * 1024.0)
            gpu.append(g)
            model.append(mod)
    nodes = TraceNodes(names, np.array(cpu), np.array(mem), np.array(gpu, dtype=np.int64), model)

    kinds = dict(OPENB_KINDS)
    mean_frac = sum(m * w for m, w in OPENB_FRACTIONS) / sum(w for _, w in OPENB_FRACTIONS) / 1000.0
    whole = ("g1", "g2", "g4", "g8")
    if frac_share is not None:          # fractions carry frac_share of the GPU demand
        gpu_pods = kinds["frac"] + sum(kinds[k] for k in whole)
        mix = sum(kinds[k] for k in whole)
        mean_whole = sum(int(k[1:]) * kinds[k] for k in whole) / mix
        x = frac_share * gpu_pods * mean_whole / (mean_frac * (1.0 - frac_share) + frac_share * mean_whole)
        for k in whole:
            kinds[k] *= (gpu_pods - x) / mix
        kinds["frac"] = x
    if multi_share is not None:         # multi-GPU pods carry multi_share of the GPU demand
        single_gpu = kinds["frac"] * mean_frac + kinds["g1"]
        multi_gpu = 2 * kinds["g2"] + 4 * kinds["g4"] + 8 * kinds["g8"]
        scale = multi_share / max(1.0 - multi_share, 1e-9) * single_gpu / multi_gpu
        for k in ("g2", "g4", "g8"):
            kinds[k] *= scale
    n_pods = n_pods if n_pods is not None else max(1, round(8152 * n_nodes / 1213))
    kind_names = list(kinds)
    p = np.array([kinds[k] for k in kind_names])
    drawn = rng.choice(len(kind_names), size=n_pods, p=p / p.sum())
    fr_m = np.array([m for m, _ in OPENB_FRACTIONS])
    fr_w = np.array([w for _, w in OPENB_FRACTIONS], dtype=np.float64)
    spec_w = np.array([w for _, w in OPENB_SPECS], dtype=np.float64)
    p_cpu, p_mem, p_num, p_milli, p_spec = [], [], [], [], []
    for k in drawn:
        kind = kind_names[k]
        shapes = OPENB_SHAPES[kind]
        w = np.array([s[2] for s in shapes], dtype=np.float64)
        c, m, _ = shapes[rng.choice(len(shapes), p=w / w.sum())]
        p_cpu.append(c * 1000.0)
        p_mem.append(m * 1024.0)
        if kind == "cpu":
            p_num.append(0)
            p_milli.append(0)
        elif kind == "frac":
            p_num.append(1)
            p_milli.append(int(fr_m[rng.choice(len(fr_m), p=fr_w / fr_w.sum())]))
        else:
            p_num.append(int(kind[1:]))
            p_milli.append(1000)
        if kind != "cpu" and spec_share and rng.random() < spec_share:
            p_spec.append(OPENB_SPECS[rng.choice(len(OPENB_SPECS), p=spec_w / spec_w.sum())][0])
        else:
            p_spec.append(())
    pods = TracePods([f"synth-pod-{i:05d}" for i in range(n_pods)], np.array(p_cpu), np.array(p_mem),
                     np.array(p_num, dtype=np.int64), np.array(p_milli, dtype=np.int64), p_spec)
    return nodes, pods


def api_pod(name: str, ns: str, group: str, gpus: int, cpu: str = "500m", mem: str = "2Gi", node: str = "",
            queue: str = "default-queue", created: int = 0, seq: int = 0) -> dict:
    """A pod of a batch Job as kube-apiserver returns it in a PodList (``items[]``), as a dict
    to encode: the fields a real running pod carries (the Job's labels and owner reference,
    managedFields, the service-account volume, default tolerations, a ``Running`` status with
    its conditions and container status), most of which kai does not model. ``seq`` makes the
    per-pod values (uid, resourceVersion, IPs, volume suffix) distinct."""
    job_uid = f"{seq // 8:08x}-4c1e-4f5a-9b7e-{group[-12:]:0>12}"
    uid = f"{seq:08x}-7d2a-4b6c-8e1f-{name[-12:]:0>12}"
    ts = f"2024-01-01T{created // 3600 % 24:02d}:{created // 60 % 60:02d}:{created % 60:02d}Z"
    running = bool(node)
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    requests = {"cpu": cpu, "memory": mem, **limits}
    suffix = f"{seq % 0xfffff:05x}"
    pod = {
        "metadata": {
            "name": name, "generateName": f"{group}-", "namespace": ns, "uid": uid,
            "resourceVersion": str(100_000 + seq), "creationTimestamp": ts,
            "labels": {"batch.kubernetes.io/controller-uid": job_uid, "batch.kubernetes.io/job-name": group,
                       "controller-uid": job_uid, "job-name": group, "kai.scheduler/queue": queue},
            "annotations": {"pod-group-name": group},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": group, "uid": job_uid,
                                 "controller": True, "blockOwnerDeletion": True}],
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": ts, "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:job-name": {}}},
                                            "f:spec": {"f:containers": {'k:{"name":"main"}': {".": {}}}}}}],
        },
        "spec": {
            "volumes": [{"name": f"kube-api-access-{suffix}", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                              "fieldPath": "metadata.namespace"}}]}}],
                "defaultMode": 420}}],
            "containers": [{"name": "main", "image": "nvcr.io/nvidia/pytorch:24.01-py3",
                            "command": ["torchrun", "--nproc-per-node=1", "train.py"],
                            "env": [{"name": "WORLD_SIZE", "value": "8"}, {"name": "RANK", "value": str(seq % 8)}],
                            "resources": {"limits": limits, "requests": requests} if limits else {"requests": requests},
                            "volumeMounts": [{"name": f"kube-api-access-{suffix}", "readOnly": True,
                                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                            "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
            "schedulerName": "kai-scheduler", "priorityClassName": "train", "priority": 50,
            "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }
    if running:
        pod["spec"]["nodeName"] = node
        ip = f"10.{seq >> 16 & 255}.{seq >> 8 & 255}.{seq & 255}"
        conds = [(t, ts) for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                   "PodScheduled")]
        pod["status"] = {
            "phase": "Running", "qosClass": "Burstable", "startTime": ts, "hostIP": "192.168.0.1",
            "hostIPs": [{"ip": "192.168.0.1"}], "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": at}
                           for t, at in conds],
            "containerStatuses": [{"name": "main", "state": {"running": {"startedAt": ts}}, "lastState": {},
                                   "ready": True, "restartCount": 0, "image": "nvcr.io/nvidia/pytorch:24.01-py3",
                                   "imageID": "", "containerID": f"containerd://{uid}", "started": True}],
        }
    return pod
