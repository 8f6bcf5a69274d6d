"""Run the KAI-Scheduler action test cases of ``tests/scenarios/kai/*.yaml`` through kai.

A case (format: ``tests/scenarios/README.md``) becomes plain Kubernetes manifests -- Nodes,
Queues, PriorityClasses, PodGroups and Pods, as the dicts a YAML file would hold -- which are
decoded with ``msgspec.convert(obj, kai.api.k8s.KINDS[kind])`` into a
``kai.sim.loader.Manifests`` and turned into a ClusterState by ``kai.sim.simulator.build_state``:
the same path ``kai simulate`` takes. One scheduler cycle then runs the case's actions and the
outcome is compared with ``expected`` (README section 7).

Command line::

    python tests/scenarios/runner.py CASE_NAME [--dump DIR]

prints the case's manifests (or writes ``DIR/CASE.yaml`` and ``DIR/CASE-config.yaml``) and
the ``kai simulate`` command that reproduces it.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob
import math
import os
import sys
from dataclasses import dataclass, field

import msgspec
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CASE_DIR = os.path.join(HERE, "kai")

# the simulated "now": kai simulate's default start time (2024-01-01T01:00:00Z)
NOW = 1_704_067_200.0 + 3600
NAMESPACE = "default"
SCHEDULER = "kai-scheduler"

# kai.api.constants names (repeated so that dumping a case needs no kai import)
POD_GROUP_ANNOTATION = "pod-group-name"
SUBGROUP_LABEL = "kai.scheduler/subgroup-name"
TASK_PRIORITY_LABEL = "kai.scheduler/task-priority"
LAST_START_TIMESTAMP = "kai.scheduler/last-start-timestamp"
STALE_TIMESTAMP = "kai.scheduler/stale-podgroup-timestamp"
GPU_FRACTION = "gpu-fraction"
GPU_MEMORY = "gpu-memory"
GPU_FRACTION_NUM_DEVICES = "gpu-fraction-num-devices"
NODE_TYPE_LABEL = "kai.scheduler/type"
GPU_GROUP_LABEL = "runai-gpu-group"
DEFAULT_GPU_MEMORY_MIB = 100           # KAI node_info.DefaultGpuMemory
DEFAULT_DEPARTMENT = "default"

# KAI pod_status flags (kai.api.constants.PodStatus values)
STATUS_NAMES = {1: "Pending", 2: "Gated", 4: "Allocated", 8: "Pipelined", 16: "Binding", 32: "Bound",
                64: "Running", 128: "Releasing", 256: "Succeeded", 512: "Failed", 1024: "Unknown",
                2048: "Deleted"}


def status_name(status) -> str:
    return STATUS_NAMES.get(int(status), f"status({int(status)})")


ALLOCATED_STATUSES = {"Allocated", "Binding", "Bound", "Running"}


# ---------------------------------------------------------------------------------- cases
def case_files() -> list[str]:
    return sorted(glob.glob(os.path.join(CASE_DIR, "*.yaml")))


def load_cases() -> list[tuple[str, dict]]:
    """(file stem, case) for every case of every file, in file order."""
    out = []
    for path in case_files():
        with open(path, encoding="utf-8") as f:
            cases = yaml.safe_load(f) or []
        stem = os.path.splitext(os.path.basename(path))[0]
        out.extend((stem, c) for c in cases)
    return out


def find_case(name: str) -> dict:
    for _stem, c in load_cases():
        if c["name"] == name:
            return c
    raise KeyError(f"no case named {name!r} in {CASE_DIR}")


def case_actions(case: dict) -> list[str]:
    raw = (case.get("schedulerConf") or {}).get("actions") or case["actions"]
    return [a.strip() for a in raw.split(",") if a.strip()]


# ---------------------------------------------------------------------------------- helpers
def _ts(seconds: float) -> str:
    d = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    if d.microsecond:
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _qty(x) -> str:
    """A number as Go's strconv.FormatFloat(x, 'f', -1, 64) would write it."""
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return repr(float(x))


def parse_duration(value) -> float:
    """Go duration string ('61s', '-1s', '5m', '1h30m') -> seconds."""
    import re
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        if s == "0":
            return 0.0
        raise ValueError(f"not a Go duration: {value!r}")
    return sign * sum(float(n) * units[u] for n, u in parts)


def _is_int(x) -> bool:
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


# ---------------------------------------------------------------------------------- manifests
def _node(name: str, spec: dict) -> dict:
    gpus = int(spec.get("gpus", 0) or 0)
    mig = spec.get("migStrategy")
    labels = {
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.memory": str(spec.get("gpuMemory") or DEFAULT_GPU_MEMORY_MIB),
        "node-role.kubernetes.io/mig-enabled": "true" if mig else "false",
        NODE_TYPE_LABEL: name,
    }
    if mig:
        labels["nvidia.com/mig.strategy"] = mig
    if spec.get("gpuName"):
        labels["nvidia.com/gpu.product"] = spec["gpuName"]
    labels.update({str(k): str(v) for k, v in (spec.get("labels") or {}).items()})
    cpu = spec.get("cpuMillis") or 0
    mem = spec.get("cpuMemory") or 0
    alloc = {
        "cpu": _qty(cpu) if cpu > 0 else "20000",
        "memory": _qty(mem) if mem > 0 else "20G",
        "nvidia.com/gpu": str(0 if mig == "mixed" else gpus),
        "pods": str(spec.get("maxTaskNum") or 110),
    }
    for res, n in (spec.get("migInstances") or {}).items():
        alloc[res] = str(n)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": name, "labels": labels},
            "status": {"allocatable": alloc, "capacity": dict(alloc)}}


def _res(quota, limit, weight) -> dict:
    return {"quota": quota, "limit": limit, "overQuotaWeight": weight}


def _given(q: dict, key: str) -> float:
    """A CPU/memory quota or limit: KAI's builder takes it when the Go pointer is set (0
    included), else -1."""
    v = q.get(key)
    return -1 if v is None else v


def _queue(q: dict, created: float, parent: str | None) -> dict:
    spec: dict = {}
    if parent:
        spec["parentQueue"] = parent
    if q.get("priority") is not None:
        spec["priority"] = q["priority"]
    if not q.get("v1"):
        spec["resources"] = {
            "gpu": _res(q.get("deservedGPUs", 0) or 0, q.get("maxAllowedGPUs") or -1,
                        q.get("gpuOverQuotaWeight", 0) or 0),
            "cpu": _res(_given(q, "deservedCPUs"), _given(q, "maxAllowedCPUs"), 1),
            "memory": _res(_given(q, "deservedMemory"), _given(q, "maxAllowedMemory"), 1),
        }
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
            "metadata": {"name": q["name"], "uid": q["name"], "creationTimestamp": _ts(created)},
            "spec": spec}


def _department(d: dict, created: float) -> dict:
    gpus = d.get("deservedGPUs", 0) or 0
    # KAI test_utils: GPU overQuotaWeight = deservedGPUs (so -1 for an unlimited department)
    spec = {"resources": {
        "gpu": _res(gpus, d.get("maxAllowedGPUs") or -1, gpus),
        "cpu": _res(-1, _given(d, "maxAllowedCPUs"), 1),
        "memory": _res(-1, _given(d, "maxAllowedMemory"), 1),
    }}
    if d.get("priority") is not None:
        spec["priority"] = d["priority"]
    if d.get("parentQueue"):
        spec["parentQueue"] = d["parentQueue"]
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
            "metadata": {"name": d["name"], "uid": d["name"], "creationTimestamp": _ts(created)},
            "spec": spec}


def _job_creation_times(jobs: list[dict], now: float) -> dict[str, float]:
    order = sorted(range(len(jobs)), key=lambda i: -(jobs[i].get("priority", 0) or 0))   # stable
    n = len(jobs)
    out = {}
    for rank, i in enumerate(order):
        j = jobs[i]
        minutes = j.get("jobAgeInMinutes") or (n - rank)
        out[j["name"]] = now - 60.0 * minutes
    return out


#: what ``isLegacyMigTask: true`` writes on the pod (README section 3.3)
LEGACY_MIG_ANNOTATION = "nvidia.com/mig-1g.10gb"


def _pod(job: dict, idx: int, task: dict, created: float) -> dict:
    name = f"{job['name']}-{idx}"
    ns = job.get("namespace") or NAMESPACE
    pc = f"prio-{job.get('priority', 0) or 0}"
    ann = {POD_GROUP_ANNOTATION: job["name"]}
    labels = {"job-name": name}
    requests: dict[str, str] = {}
    if not job.get("isBestEffortJob"):
        requests["cpu"] = _qty(job.get("requiredCPUsPerTask") or 1)
        requests["memory"] = _qty(job.get("requiredMemoryPerTask") or 1_000_000_000)
        gpus = task["requiredGPUs"] if task.get("requiredGPUs") is not None else job.get("requiredGPUsPerTask", 0) or 0
        if _is_int(gpus):
            if gpus:
                requests["nvidia.com/gpu"] = str(int(gpus))
        else:
            ann[GPU_FRACTION] = _qty(gpus)
        if job.get("requiredGpuMemory"):
            ann[GPU_MEMORY] = str(job["requiredGpuMemory"])
        if job.get("requiredMultiFractionDevicesPerTask"):
            ann[GPU_FRACTION_NUM_DEVICES] = str(job["requiredMultiFractionDevicesPerTask"])
        for res, n in (task.get("requiredMigInstances") or {}).items():
            requests[res] = str(n)
    if task.get("isLegacyMigTask"):
        # KAI's fake sets the flag; a real legacy MIG pod asks for its instance in an annotation
        ann[LEGACY_MIG_ANNOTATION] = "1"
    if task.get("priority") is not None:
        labels[TASK_PRIORITY_LABEL] = str(task["priority"])
    sub = task.get("subGroupName") or ("default" if job.get("subGroups") else "")
    if sub:
        labels[SUBGROUP_LABEL] = sub
    labels.update({str(k): str(v) for k, v in (task.get("podAffinityLabels") or {}).items()})
    ann.update({str(k): str(v) for k, v in (task.get("annotations") or {}).items()})
    spec: dict = {
        "schedulerName": SCHEDULER,
        "priorityClassName": pc,
        "containers": [{"name": "main", "image": "busybox", "resources": {"requests": requests}}],
    }
    if task.get("nodeAffinityNames"):
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": NODE_TYPE_LABEL, "operator": "In", "values": list(task["nodeAffinityNames"])}]}]}}}
    # KAI tasks_fake: the pod's affinity labels select the pods a required (anti-)affinity term
    # is about, with the given topology key
    sel = {str(k): str(v) for k, v in (task.get("podAffinityLabels") or {}).items()}
    if sel and task.get("podAffinityTopologyKey"):
        spec.setdefault("affinity", {})["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": task["podAffinityTopologyKey"], "labelSelector": {"matchLabels": dict(sel)}}]}
    if sel and task.get("podAntiAffinityTopologyKey"):
        spec.setdefault("affinity", {})["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": task["podAntiAffinityTopologyKey"], "labelSelector": {"matchLabels": dict(sel)}}]}
    meta = {"name": name, "namespace": ns, "uid": name, "creationTimestamp": _ts(created),
            "labels": labels, "annotations": ann}
    status: dict = {"phase": "Pending"}
    state = task.get("state", "Pending")
    node = task.get("nodeName") or ""
    if state in ("Running", "Bound", "Binding", "Allocated", "Pipelined"):
        # Running: nodeName + phase Running. Bound/Binding/Allocated: bound, not running yet.
        # Pipelined as input: KAI's status is virtual; the closest manifest is a bound pod.
        spec["nodeName"] = node
        status["phase"] = "Running" if state == "Running" else "Pending"
    elif state == "Releasing":
        spec["nodeName"] = node
        status["phase"] = "Running"
        meta["deletionTimestamp"] = _ts(NOW - 1)
    elif state in ("Succeeded", "Failed"):
        if node:
            spec["nodeName"] = node
        status["phase"] = state
    elif state == "Deleted":
        meta["deletionTimestamp"] = _ts(NOW - 1)
    elif state == "Gated":
        spec["schedulingGates"] = [{"name": "kai.scheduler/gate"}]
    if task.get("gpuGroups"):
        labels[GPU_GROUP_LABEL] = "_".join(str(g) for g in task["gpuGroups"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def _topology_constraint(tc: dict) -> dict:
    """README 4.1: {topology, requiredLevel, preferredLevel} -> the PodGroup field."""
    out = {"topology": tc.get("topology", "")}
    if tc.get("requiredLevel"):
        out["requiredTopologyLevel"] = tc["requiredLevel"]
    if tc.get("preferredLevel"):
        out["preferredTopologyLevel"] = tc["preferredLevel"]
    return out


def _podgroup(job: dict, created: float) -> dict:
    tasks = job.get("tasks") or []
    spec: dict = {"queue": job.get("queue", ""), "priorityClassName": f"prio-{job.get('priority', 0) or 0}"}
    if job.get("preemptibility"):
        spec["preemptibility"] = job["preemptibility"]
    if job.get("subGroups"):
        subs = []
        leaf_min = 0
        for sg in job["subGroups"]:
            d: dict = {"name": sg["name"]}
            if sg.get("parent"):
                d["parent"] = sg["parent"]
            if sg.get("topologyConstraint"):
                d["topologyConstraint"] = _topology_constraint(sg["topologyConstraint"])
            if "minAvailable" in sg:
                d["minMember"] = int(sg["minAvailable"])
                leaf_min += int(sg["minAvailable"])
            else:
                children = [c for c in job["subGroups"] if c.get("parent") == sg["name"]]
                d["minMember"] = len(children)
                if sg.get("minSubGroup") is not None:
                    d["minSubGroup"] = int(sg["minSubGroup"])
            subs.append(d)
        plain = sum(1 for t in tasks if not t.get("subGroupName"))
        if plain:
            subs.append({"name": "default", "minMember": plain})
            leaf_min += plain
        spec["subGroups"] = subs
        spec["minMember"] = max(leaf_min, 1)
    else:
        spec["minMember"] = int(job["minAvailable"]) if job.get("minAvailable") is not None else len(tasks)
    if job.get("topologyConstraint"):
        spec["topologyConstraint"] = _topology_constraint(job["topologyConstraint"])
    if job.get("perJobStalenessGracePeriod") is not None:
        spec["stalenessGracePeriod"] = str(job["perJobStalenessGracePeriod"])
    ann: dict = {}
    if any(t.get("state", "Pending") in ("Running", "Bound", "Binding", "Allocated", "Releasing", "Pipelined")
           for t in tasks):
        ann[LAST_START_TIMESTAMP] = _ts(NOW - 60)
    if job.get("staleDuration"):
        ann[STALE_TIMESTAMP] = _ts(NOW - parse_duration(job["staleDuration"]))
    meta = {"name": job["name"], "namespace": job.get("namespace") or NAMESPACE, "uid": job["name"],
            "creationTimestamp": _ts(created)}
    if ann:
        meta["annotations"] = ann
    return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": meta, "spec": spec}


def case_manifests(case: dict, now: float = NOW) -> list[dict]:
    """The case as a list of Kubernetes objects (plain dicts, as a YAML file would hold)."""
    objs: list[dict] = []
    jobs = case.get("jobs") or []
    for prio in sorted({j.get("priority", 0) or 0 for j in jobs}):
        objs.append({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                     "metadata": {"name": f"prio-{prio}", "uid": f"prio-{prio}"}, "value": prio})
    deps = case.get("departments") or []
    default_dep = not deps and not case.get("disableDefaultDepartment")
    if default_dep:
        # KAI test_utils (addDefaultDepartmentIfNeeded): a department "default" with GPU
        # quota -1 and limit -1, whose GPU overQuotaWeight is its quota: -1
        deps = [{"name": DEFAULT_DEPARTMENT, "deservedGPUs": -1, "maxAllowedGPUs": -1}]
    # KAI creates the i-th department and the i-th queue both at now + i minutes
    for i, d in enumerate(deps):
        objs.append(_department(d, now + 60 * i))
    for i, q in enumerate(case.get("queues") or []):
        parent = DEFAULT_DEPARTMENT if default_dep else q.get("parentQueue")
        objs.append(_queue(q, now + 60 * i, parent))
    for tp in case.get("topologies") or []:
        objs.append({"apiVersion": "kai.scheduler/v1alpha1", "kind": "Topology",
                     "metadata": {"name": tp["name"], "uid": tp["name"]},
                     "spec": {"levels": [{"nodeLabel": lv} for lv in tp["levels"]]}})
    nodes = case.get("nodes") or {}
    for name in nodes:
        objs.append(_node(name, nodes[name] or {}))
    created = _job_creation_times(jobs, now)
    pods = []
    for j in jobs:
        objs.append(_podgroup(j, created[j["name"]]))
        for i, t in enumerate(j.get("tasks") or []):
            pods.append(_pod(j, i, t, created[j["name"]]))
    # KAI adds tasks to their nodes in sorted pod-name order
    pods.sort(key=lambda p: p["metadata"]["name"])
    objs.extend(pods)
    return objs


def scheduler_config_doc(case: dict) -> dict:
    """The scheduler config file content for the case (KAI format)."""
    if case.get("schedulerConf"):
        return case["schedulerConf"]
    return {"actions": ", ".join(case_actions(case))}


def to_manifests(objs: list[dict]):
    """Decode the dicts as ``kai.sim.loader.load_manifests`` does, into a Manifests."""
    from kai.api.k8s import KINDS
    from kai.sim.loader import Manifests
    m = Manifests()
    for obj in objs:
        m.objects[obj["kind"]].append(msgspec.convert(obj, KINDS[obj["kind"]]))
    return m


def scheduler_config(case: dict):
    """The case's config with the flags KAI's test session runs with (``CreateFakeSession``):
    consolidation preemptees unlimited, consolidating reclaim on, and the scheduler-wide
    staleness grace period 0 (its zero value) -- except in stalegangeviction_test.go, which
    sets it to 60 s."""
    from kai.config import SchedulerConfig, parse_config
    if case.get("schedulerConf"):
        cfg = parse_config(case["schedulerConf"], f"{case['name']}: schedulerConf")
    else:
        cfg = SchedulerConfig(actions=case_actions(case), source=f"{case['name']}: default config")
    cfg.max_consolidation_preemptees = -1
    cfg.allow_consolidating_reclaim = True
    stale_table = case["source"].startswith("stalegangeviction_test.go") and not case.get("rounds")
    cfg.default_staleness_grace_period = 60.0 if stale_table else 0.0
    return cfg


# ---------------------------------------------------------------------------------- skips
# tags -> what kai must offer (checked at run time, so cases start running when it does)
_TAG_PLUGINS = {"topology": "topology", "pod-affinity": "podaffinity", "dra": "dynamicresources",
                "minruntime": "minruntime"}
_TAG_UNSUPPORTED = {
    "time-based-fairshare": "time-based fair share (usage DB) is not supported by kai yet",
    "scheduling-signatures": "scheduling-signature caching is not modelled by kai yet",
}


def _gpu_sharing_enabled() -> bool:
    from kai.cache.cluster_state import ClusterState
    from kai.config import SchedulerConfig
    from kai.scheduler import RecordingCache, Scheduler
    state = ClusterState()
    sched = Scheduler(state, SchedulerConfig(actions=[]))
    ssn = sched.open_session(RecordingCache(state), NOW)
    try:
        return ssn.shared_gpu_allocator is not None
    finally:
        ssn.close()


def skip_reason(case: dict) -> str | None:
    """Why kai cannot run this case yet (None: it must run and pass)."""
    import kai.actions  # noqa: F401  (registers actions)
    from kai.framework.action import ACTIONS
    from kai.framework.plugin import PLUGINS
    import kai.plugins  # noqa: F401  (registers plugins)
    missing = [a for a in case_actions(case) if a not in ACTIONS]
    if missing:
        return f"action(s) not implemented in kai yet: {', '.join(missing)} (registered: {', '.join(sorted(ACTIONS))})"
    tags = set(case.get("tags") or [])
    for tag, why in _TAG_UNSUPPORTED.items():
        if tag in tags:
            return f"tag {tag}: {why}"
    for tag, plugin in _TAG_PLUGINS.items():
        if tag in tags and plugin not in PLUGINS:
            return f"tag {tag}: kai has no {plugin!r} plugin yet"
    if tags & {"gpu-sharing", "gpu-memory"} and not _gpu_sharing_enabled():
        which = sorted(tags & {"gpu-sharing", "gpu-memory"})
        return f"tag {', '.join(which)}: GPU sharing is not enabled in kai yet (no shared-GPU allocator plugin)"
    return None


# ---------------------------------------------------------------------------------- run
@dataclass
class Outcome:
    status: dict[str, str] = field(default_factory=dict)       # pod name -> status name
    node: dict[str, str] = field(default_factory=dict)         # pod name -> node name
    gpus: dict[str, float] = field(default_factory=dict)       # pod name -> requested GPUs
    cpu: dict[str, float] = field(default_factory=dict)        # millicores
    memory: dict[str, float] = field(default_factory=dict)     # bytes
    job_tasks: dict[str, list[str]] = field(default_factory=dict)
    last_start: dict[str, float] = field(default_factory=dict)  # job name -> unix seconds (0: none)
    node_gpus: dict[str, tuple[float, float]] = field(default_factory=dict)   # idle, releasing
    groups: dict[str, list[str]] = field(default_factory=dict)  # pod name -> shared-GPU groups (placed)
    binds: int = 0
    evictions: int = 0
    pipelines: int = 0
    podgroup_evictions: int = 0
    unschedulable: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def run_case(case: dict, now: float = NOW, actions: list[str] | None = None) -> Outcome:
    """One cycle over the case's cluster; ``actions`` overrides the case's (``[]``: none, the
    session as built)."""
    from kai.api.resources import CPU, GPU, MEMORY
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.simulator import build_state

    m = to_manifests(case_manifests(case, now))
    state = build_state(m)
    config = scheduler_config(case)
    if actions is not None:
        config.actions = list(actions)
    sched = Scheduler(state, config)
    cache = RecordingCache(state)
    result = sched.run_cycle(cache, now=now)
    out = Outcome(unschedulable=dict(result.unschedulable))
    out.problems = [f"pod {k}: {v}" for k, v in sorted(state.pod_problems.items())]
    by_key = {p.key: p for p in state.pods.values()}
    status = {p.name: status_name(p.status) for p in state.pods.values()}
    node = {p.name: p.node_name for p in state.pods.values()}
    for p in state.pods.values():
        if p.node_name and getattr(p, "gpu_groups", None):
            out.groups[p.name] = list(p.gpu_groups)
    for d in result.bindings:
        status[by_key[d.pod].name] = "Binding"
        node[by_key[d.pod].name] = d.node
        if d.gpu_groups:
            out.groups[by_key[d.pod].name] = list(d.gpu_groups)
    evicted_jobs = set()
    for d in result.evictions:
        p = by_key[d.pod]
        status[p.name] = "Releasing"
        if d.action == "stalegangeviction":
            evicted_jobs.add(p.job_key)
    for d in result.pipelined:
        status[by_key[d.pod].name] = "Pipelined"
        node[by_key[d.pod].name] = d.node
    out.status, out.node = status, node
    for p in state.pods.values():
        out.gpus[p.name] = p.gpu_quota
        out.cpu[p.name] = float(p.req[CPU])
        out.memory[p.name] = float(p.req[MEMORY])
    for job in state.jobs.values():
        out.job_tasks[job.name] = sorted(t.name for t in job.tasks.values())
        out.last_start[job.name] = job.last_start
    t = state.nodes
    for info in t.nodes():
        out.node_gpus[info.name] = (float(t.idle[GPU, info.idx]), float(t.releasing[GPU, info.idx]))
    out.binds = len(result.bindings)
    out.evictions = len(result.evictions)
    out.pipelines = len(result.pipelined)
    out.podgroup_evictions = len(evicted_jobs)
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def compare(case: dict, out: Outcome, now: float = NOW) -> list[str]:
    """Differences between the outcome and ``expected`` (README 7.1/7.2); empty when it matches."""
    exp = case.get("expected") or {}
    errs: list[str] = []

    def check(label: str, names: list[str], e: dict, last_start_job: str | None) -> None:
        want = e.get("status", "")
        for n in names:
            got = out.status.get(n)
            if got != want:
                errs.append(f"{label}: task {n} status {got}, expected {want}")
            # a Pending pod has no node: KAI's fake pods keep the input's nodeName (README 7.1)
            if e.get("nodeName") and want != "Pending" and out.node.get(n) != e["nodeName"]:
                errs.append(f"{label}: task {n} on node {out.node.get(n)!r}, expected {e['nodeName']!r}")
        gpus = sum(out.gpus.get(n, 0.0) for n in names)
        if not _close(gpus, float(e.get("gpusRequired", 0) or 0)):
            errs.append(f"{label}: gpusRequired {gpus:g}, expected {e.get('gpusRequired', 0)}")
        if e.get("milliCpuRequired"):
            cpu = sum(out.cpu.get(n, 0.0) for n in names)
            if not _close(cpu, float(e["milliCpuRequired"])):
                errs.append(f"{label}: milliCpuRequired {cpu:g}, expected {e['milliCpuRequired']}")
        if e.get("memoryRequired"):
            mem = sum(out.memory.get(n, 0.0) for n in names)
            if not _close(mem, float(e["memoryRequired"])):
                errs.append(f"{label}: memoryRequired {mem:g}, expected {e['memoryRequired']}")
        if want in ALLOCATED_STATUSES and last_start_job is not None:
            ls = out.last_start.get(last_start_job, 0.0)
            if not ls:
                errs.append(f"{label}: job {last_start_job} has no LastStartTimestamp")
            elif e.get("lastStartTimestampOlderThan"):
                age = now - ls
                if age < parse_duration(e["lastStartTimestampOlderThan"]):
                    errs.append(f"{label}: job {last_start_job} last started {age:g}s ago, expected older "
                                f"than {e['lastStartTimestampOlderThan']}")

    task_job = {n: j for j, names in out.job_tasks.items() for n in names}
    for job, e in (exp.get("jobs") or {}).items():
        names = out.job_tasks.get(job)
        if names is None:
            errs.append(f"job {job}: not in the session")
            continue
        check(f"job {job}", names, e, job)
    for task, e in (exp.get("tasks") or {}).items():
        if task not in out.status:
            errs.append(f"task {task}: no such pod")
            continue
        check(f"task {task}", [task], e, task_job.get(task))
    for name, e in (exp.get("nodes") or {}).items():
        idle, rel = out.node_gpus.get(name, (None, None))
        if idle is None:
            errs.append(f"node {name}: not in the session")
            continue
        if not _close(idle, float(e.get("idleGPUs", 0) or 0)):
            errs.append(f"node {name}: idle GPUs {idle:g}, expected {e.get('idleGPUs', 0)}")
        if not _close(rel, float(e.get("releasingGPUs", 0) or 0)):
            errs.append(f"node {name}: releasing GPUs {rel:g}, expected {e.get('releasingGPUs', 0)}")
    counts = exp.get("counts") or {}
    checked = [("binds", out.binds), ("evictions", out.evictions), ("pipelines", out.pipelines)]
    # podGroupEvictionEvents is a newer KAI mock: cases read at revisions without it (which
    # therefore never state it) cannot constrain it, so it is only checked when given.
    if "podGroupEvictionEvents" in counts:
        checked.append(("podGroupEvictionEvents", out.podgroup_evictions))
    for key, got in checked:
        limit = int(counts.get(key, 0) or 0)
        if got > limit:
            errs.append(f"counts: {got} {key}, at most {limit} allowed")
    return errs


# ---------------------------------------------------------------------------------- rounds
INTEGRATION_ACTIONS = ["allocate", "consolidation", "reclaim", "preempt", "stalegangeviction"]


def feed_back(case: dict, out: Outcome) -> None:
    """KAI's integration round feedback (README section 6), in place on the case's tasks:
    Releasing -> Pending with no node (kept Releasing on its node for ``deleteJobInTest``),
    Pipelined -> Pending, Binding -> Running on its node, anything else kept."""
    for job in case.get("jobs") or []:
        for i, task in enumerate(job.get("tasks") or []):
            name = f"{job['name']}-{i}"
            st, node = out.status.get(name), out.node.get(name) or ""
            groups = out.groups.get(name)
            if st == "Releasing" and not job.get("deleteJobInTest"):
                task["state"] = "Pending"
                task.pop("nodeName", None)
                task.pop("gpuGroups", None)
            elif st == "Pipelined":
                task["state"] = "Pending"
                task.pop("nodeName", None)
                task.pop("gpuGroups", None)
            else:
                task["state"] = "Running" if st == "Binding" else st
                if node:
                    task["nodeName"] = node
                else:
                    task.pop("nodeName", None)
                if groups:
                    task["gpuGroups"] = groups


def run_rounds(case: dict, now: float = NOW) -> tuple[list[str], Outcome]:
    """KAI's integration ``RunTest``: ``untilMatch`` rounds of every action with the results
    fed back, a comparison on the freshly built session, then ``afterMatch`` rounds compared
    after each (no allocate/evict oscillation). Returns (differences, last outcome)."""
    import copy
    topo = copy.deepcopy(case)
    rounds = case.get("rounds") or {}
    errs: list[str] = []
    out = Outcome()
    for _ in range(int(rounds.get("untilMatch") or 2)):
        out = run_case(topo, now, INTEGRATION_ACTIONS)
        feed_back(topo, out)
    out = run_case(topo, now, [])
    errs += [f"after round {int(rounds.get('untilMatch') or 2)}: {e}" for e in compare(case, out, now)]
    for r in range(int(rounds.get("afterMatch") or 5)):
        out = run_case(topo, now, INTEGRATION_ACTIONS)
        errs += [f"after-match round {r + 1}: {e}" for e in compare(case, out, now)]
        feed_back(topo, out)
        if errs:
            break
    return errs, out


def describe(out: Outcome) -> str:
    lines = []
    for job, names in sorted(out.job_tasks.items()):
        for n in names:
            lines.append(f"  {n:<28} {out.status.get(n):<10} {out.node.get(n) or '-'}")
    lines.append(f"  binds={out.binds} evictions={out.evictions} pipelines={out.pipelines}")
    for k, v in sorted(out.unschedulable.items()):
        lines.append(f"  unschedulable {k}: {'; '.join(v)}")
    for p in out.problems:
        lines.append(f"  problem {p}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- CLI
def dump(case: dict, directory: str) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    manifests = os.path.join(directory, f"{case['name']}.yaml")
    config = os.path.join(directory, f"{case['name']}-config.yaml")
    with open(manifests, "w", encoding="utf-8") as f:
        f.write(f"# {case['name']}: {case['source']}\n")
        yaml.safe_dump_all(case_manifests(case), f, sort_keys=False)
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(scheduler_config_doc(case), f, sort_keys=False)
    return manifests, config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a KAI scenario case as manifests for `kai simulate`.")
    ap.add_argument("case", help="case name (see tests/scenarios/kai/*.yaml)")
    ap.add_argument("--dump", metavar="DIR", help="write DIR/CASE.yaml and DIR/CASE-config.yaml")
    ap.add_argument("--run", action="store_true", help="also run the case here and compare with expected")
    args = ap.parse_args(argv)
    try:
        case = find_case(args.case)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if args.dump:
        manifests, config = dump(case, args.dump)
        print(f"wrote {manifests} and {config}", file=sys.stderr)
        print(f"python -m kai simulate {manifests} --config {config} --output table")
    else:
        yaml.safe_dump_all(case_manifests(case), sys.stdout, sort_keys=False)
        print("---\n# scheduler config (pass with --config):", file=sys.stdout)
        for line in yaml.safe_dump(scheduler_config_doc(case), sort_keys=False).splitlines():
            print(f"# {line}")
    if args.run:
        sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
        why = skip_reason(case)
        if why:
            print(f"SKIP: {why}", file=sys.stderr)
        out = run_case(case)
        print(describe(out), file=sys.stderr)
        errs = compare(case, out)
        print("PASS" if not errs else "FAIL:\n  " + "\n  ".join(errs), file=sys.stderr)
        return 1 if errs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
