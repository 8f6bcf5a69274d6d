"""Alibaba GPU cluster traces (``openb``, Weng et al., USENIX ATC'23) as kai objects.

The trace is not part of kai (it is licensed for research and study use): point
``KAI_TRACE_DIR`` (or a caller's ``--trace-dir`` flag) at the folder holding its CSV files,
e.g. ``csv/`` of github.com/alibaba/clusterdata ``cluster-trace-gpu-v2023``. They are a node
list (``sn, cpu_milli, memory_mib, gpu, model``) and pod lists (``name, cpu_milli, memory_mib, num_gpu, gpu_milli,
gpu_spec, ..., creation_time, ...``). This module reads them into

* :class:`TraceNodes` / :class:`TracePods`: plain numpy columns, for kernels and benchmarks;
* kai ``Node`` / ``Pod`` structs (:func:`to_nodes`, :func:`to_pods`) that the scheduler takes
  like any manifest: nodes carry ``nvidia.com/gpu.product`` (the GPU model),
  ``nvidia.com/gpu.count`` and ``nvidia.com/gpu.memory``; a pod asking for a fraction of one
  GPU gets KAI's ``gpu-fraction`` annotation, whole GPUs are an ``nvidia.com/gpu`` limit, and
  ``gpu_spec`` (allowed models, ``|``-separated) becomes required node affinity on the model
  label. Creation timestamps follow the arrival order, so one allocate cycle over a single
  queue places pods exactly in arrival order.

:func:`arrivals` builds the arrival sequence: the trace in creation order, or, with
``inflate``, pods drawn at random with replacement from the trace (seeded) until the GPU
demand reaches ``inflate`` times the cluster's GPUs (the paper's workload inflation).
Where no trace folder is set, :func:`load_workload` returns a synthetic openb-like trace
(:func:`kai.sim.synthetic.openb_like`: the same GPU node types and request distributions,
generated) and says so in :attr:`Workload.origin`; a folder that is set but lacks the files
is an error, never a silent fallback.
Callers: ``bench/bench_traces.py``, tests.
"""
from __future__ import annotations

import csv
import datetime as _dt
import os
from dataclasses import dataclass

import numpy as np

from kai.api.k8s import (Affinity, Container, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
                         NodeSelectorTerm, NodeSpec, NodeStatus, ObjectMeta, Pod, PodSpec, PodStatus,
                         ResourceRequirements)

#: the environment variable naming the folder with the openb CSV files
from kai.sim.trace_model import TraceNodes, TracePods  # noqa: E402  (re-exported)

TRACE_ENV = "KAI_TRACE_DIR"
NODE_FILE = "openb_node_list_gpu_node.csv"
MODEL_LABEL = "nvidia.com/gpu.product"
COUNT_LABEL = "nvidia.com/gpu.count"
MEMORY_LABEL = "nvidia.com/gpu.memory"
#: per-device memory (MiB) by model; G1-G3 are undisclosed in the trace, their values are guesses
GPU_MEMORY_MIB = {"P100": 16384, "T4": 15360, "V100M16": 16384, "V100M32": 32768, "A10": 23028,
                  "G1": 32768, "G2": 32768, "G3": 40960}
_EPOCH = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)


def find_trace_dir(explicit: str | None = None) -> str | None:
    """The folder with the openb CSV files: ``explicit`` (a ``--trace-dir`` flag), else
    ``$KAI_TRACE_DIR``; None when neither is set. A folder that is named but has no
    ``openb_node_list_gpu_node.csv`` raises FileNotFoundError (a typo must not turn into a
    synthetic run)."""
    d = explicit or os.environ.get(TRACE_ENV, "")
    if not d:
        return None
    if not os.path.isfile(os.path.join(d, NODE_FILE)):
        src = "--trace-dir" if explicit else f"${TRACE_ENV}"
        raise FileNotFoundError(f"{src}={d}: no {NODE_FILE} there (the folder of the openb trace's CSV files)")
    return d


def _require_dir(d: str | None) -> str:
    got = find_trace_dir(d)
    if got is None:
        raise FileNotFoundError(f"the openb trace folder is not set: set ${TRACE_ENV} (or pass a path); "
                                "load_workload() falls back to a synthetic trace")
    return got


def trace_path(name: str, trace_dir: str | None = None) -> str:
    """Path of a pod list: ``default`` -> openb_pod_list_default.csv; a path is returned as is."""
    if name.endswith(".csv") or os.sep in name:
        return name
    return os.path.join(trace_dir or _require_dir(None), f"openb_pod_list_{name}.csv")


def load_nodes(path: str | None = None, gpu_only: bool = True, trace_dir: str | None = None) -> TraceNodes:
    """The node list (GPU nodes only unless ``gpu_only`` is False) from ``path`` or the trace folder."""
    path = path or os.path.join(trace_dir or _require_dir(None),
                                NODE_FILE if gpu_only else "openb_node_list_all_node.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if gpu_only:
        rows = [r for r in rows if int(r["gpu"]) > 0]
    return TraceNodes([r["sn"] for r in rows],
                      np.array([float(r["cpu_milli"]) for r in rows]),
                      np.array([float(r["memory_mib"]) for r in rows]),
                      np.array([int(r["gpu"]) for r in rows], dtype=np.int64),
                      [(r.get("model") or "").strip() for r in rows])


def load_pods(name_or_path: str = "default", trace_dir: str | None = None) -> TracePods:
    """A pod list in creation order (ties keep file order)."""
    with open(trace_path(name_or_path, trace_dir), newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: float(r.get("creation_time") or 0))
    spec = []
    for r in rows:
        s = (r.get("gpu_spec") or "").strip()
        spec.append(tuple(m for m in s.split("|") if m) if s and s.lower() != "nan" else ())
    return TracePods([r["name"] for r in rows],
                     np.array([float(r["cpu_milli"]) for r in rows]),
                     np.array([float(r["memory_mib"]) for r in rows]),
                     np.array([int(r["num_gpu"]) for r in rows], dtype=np.int64),
                     np.array([int(r["gpu_milli"]) for r in rows], dtype=np.int64), spec)


@dataclass
class Workload:
    """A cluster and a pod list, and where they come from (say it beside every figure)."""
    nodes: TraceNodes
    pods: TracePods
    origin: str
    synthetic: bool


def load_workload(name: str = "default", trace_dir: str | None = None, seed: int = 0) -> Workload:
    """The openb GPU nodes and pod list ``name`` from the trace folder (:func:`find_trace_dir`), or,
    when no folder is set, the synthetic stand-in :func:`kai.sim.synthetic.openb_like`
    (``seed`` picks its draw; full trace size, 1,213 nodes)."""
    d = find_trace_dir(trace_dir)
    if d is not None:
        return Workload(load_nodes(trace_dir=d), load_pods(name, d), f"openb trace {name!r} from {d}", False)
    from kai.sim.synthetic import openb_like
    nodes, pods = openb_like(name, seed=seed)
    return Workload(nodes, pods, f"SYNTHETIC openb-like trace {name!r} (kai.sim.synthetic.openb_like, seed {seed}; "
                                 f"${TRACE_ENV} not set, so not the Alibaba trace)", True)


def arrivals(pods: TracePods, capacity_gpu: float, inflate: float | None = None, seed: int = 0) -> TracePods:
    """The arrival sequence. Without ``inflate``: the trace as is. With it: pods drawn
    uniformly with replacement (``numpy`` generator seeded with ``seed``) until the summed
    GPU demand reaches ``inflate * capacity_gpu``; copies get unique names ``<name>-r<k>``."""
    if inflate is None:
        return pods
    rng = np.random.default_rng(seed)
    demand = pods.gpu
    if demand.sum() <= 0:
        raise ValueError("the trace asks for no GPU; it cannot be inflated to a GPU capacity")
    target = inflate * capacity_gpu
    picks: list[int] = []
    total = 0.0
    while total < target - 1e-9:
        batch = rng.integers(0, len(pods), size=4096)
        for i in batch:
            picks.append(int(i))
            total += demand[i]
            if total >= target - 1e-9:
                break
    names = [f"{pods.name[i]}-r{k}" for k, i in enumerate(picks)]
    return pods.take(picks, names)


def _fmt_gpu_fraction(milli: int) -> str:
    return f"{milli / 1000:.3f}".rstrip("0").rstrip(".")


def to_nodes(nodes: TraceNodes) -> list[Node]:
    out = []
    for i in range(len(nodes)):
        name = nodes.name[i]
        labels = {"kubernetes.io/hostname": name}
        alloc = {"cpu": f"{int(nodes.cpu[i])}m", "memory": f"{int(nodes.mem[i])}Mi", "pods": "1000"}
        if nodes.gpu[i] > 0:
            model = nodes.model[i]
            labels[MODEL_LABEL] = model
            labels[COUNT_LABEL] = str(int(nodes.gpu[i]))
            labels[MEMORY_LABEL] = str(GPU_MEMORY_MIB.get(model, 16384))
            alloc["nvidia.com/gpu"] = str(int(nodes.gpu[i]))
        out.append(Node(metadata=ObjectMeta(name=name, uid=f"uid-{name}", labels=labels),
                        spec=NodeSpec(), status=NodeStatus(allocatable=alloc)))
    return out


def to_pods(pods: TracePods, namespace: str = "trace", queue: str = "default-queue") -> list[Pod]:
    """Pending pods for ``kai-scheduler``; creation time = arrival index (seconds)."""
    out = []
    for i in range(len(pods)):
        name = pods.name[i]
        requests = {"cpu": f"{int(pods.cpu[i])}m", "memory": f"{int(pods.mem[i])}Mi"}
        limits = {}
        annotations = {}
        ng, milli = int(pods.num_gpu[i]), int(pods.gpu_milli[i])
        if ng == 1 and 0 < milli < 1000:
            annotations["gpu-fraction"] = _fmt_gpu_fraction(milli)
        elif ng > 0:
            limits["nvidia.com/gpu"] = str(ng)
        spec = PodSpec(scheduler_name="kai-scheduler", containers=[
            Container(name="main", resources=ResourceRequirements(requests=requests, limits=limits))])
        if pods.spec[i] and ng > 0:
            spec.affinity = Affinity(node_affinity=NodeAffinity(
                required_during_scheduling_ignored_during_execution=NodeSelector(node_selector_terms=[
                    NodeSelectorTerm(match_expressions=[NodeSelectorRequirement(
                        key=MODEL_LABEL, operator="In", values=list(pods.spec[i]))])])))
        ts = (_EPOCH + _dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(Pod(metadata=ObjectMeta(name=name, namespace=namespace, uid=f"uid-{namespace}-{name}",
                                           creation_timestamp=ts, labels={"kai.scheduler/queue": queue},
                                           annotations=annotations),
                       spec=spec, status=PodStatus(phase="Pending")))
    return out
