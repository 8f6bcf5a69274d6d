"""Build a ClusterState from manifests and run scheduler cycles over it.

Pods with ``nodeName`` are running; others are pending. Between cycles (``--cycles N``)
the results feed back: bound pods start running, evicted pods go away, pipelined pods
stay pending, and the clock advances by ``interval`` seconds.
"""
from __future__ import annotations

import msgspec

from kai.api import constants as C
from kai.api.dra import DRA_KINDS
from kai.api.k8s import ObjectMeta, PodStatus, Queue, QueueResource, QueueResources, QueueSpec
from kai.cache.cluster_state import ClusterState
from kai.cache.dra_store import DraStore
from kai.config import SchedulerConfig
from kai.podgrouper.offline import group_pods
from kai.plugins import unimplemented as unimplemented_plugins
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.loader import Manifests
from kai.cache.occupancy import node_occupancy
from kai.sim.dra import claim_bindings, claims_bound, claims_released

S = C.PodStatus


def _default_queue(name: str, parent: str = "") -> Queue:
    open_ = QueueResource(quota=0, over_quota_weight=1, limit=-1)
    return Queue(metadata=ObjectMeta(name=name, uid=f"uid-queue-{name}", creation_timestamp="2024-01-01T00:00:00Z"),
                 spec=QueueSpec(parent_queue=parent,
                                resources=QueueResources(gpu=open_, cpu=open_, memory=open_)))


def build_state(m: Manifests, grouper=None) -> ClusterState:
    """ClusterState with the manifests' objects, in dependency order; pods are grouped first
    (``kai.podgrouper.offline``, settings ``grouper``: a GrouperConfig)."""
    state = ClusterState()
    grouped = group_pods(m.objects["Pod"], m.owners, m.objects["PodGroup"],
                         [pc.metadata.name for pc in m.objects["PriorityClass"]], grouper)
    state.grouped = grouped
    for pc in m.objects["PriorityClass"]:
        state.upsert_priority_class(pc)
    queues = m.objects["Queue"]
    names = {q.metadata.name for q in queues}
    for q in queues:
        state.upsert_queue(q)
    for t in m.objects["Topology"]:
        state.upsert_topology(t)
    for ns in m.objects["Namespace"]:
        state.upsert_namespace(ns.metadata.name, ns.metadata.labels)
    for n in m.objects["Node"]:
        state.upsert_node(n)
    state.dra = DraStore()           # DeviceClasses, ResourceSlices, ResourceClaims(Templates)
    state.dra.generate = True        # kai makes the claims of templates (the controller-manager's job live)
    state.dra.load({k: m.objects.get(k, []) for k in DRA_KINDS})
    for pg in m.objects["PodGroup"]:
        state.upsert_podgroup(pg)
    for pg in grouped.podgroups.values():
        state.upsert_podgroup(pg)
    for p in grouped.pods:
        state.upsert_pod(p)
    for key, why in grouped.errors.items():
        state.pod_problems[key] = f"pod-grouper: {why}"
    # KAI's Helm chart creates default-parent-queue -> default-queue; do the same when used
    wants_default = not queues or any(j.queue == C.DEFAULT_QUEUE for j in state.jobs.values())
    if wants_default and C.DEFAULT_QUEUE not in names:
        if C.DEFAULT_PARENT_QUEUE not in names:
            state.upsert_queue(_default_queue(C.DEFAULT_PARENT_QUEUE))
        state.upsert_queue(_default_queue(C.DEFAULT_QUEUE, C.DEFAULT_PARENT_QUEUE))
    return state


def podgroups_report(grouped) -> list[dict]:
    """The PodGroups the pod-grouper made: name, queue, minMember, pods, subGroups."""
    out = []
    for key, pg in sorted(grouped.podgroups.items()):
        members = grouped.members.get(key, {})
        entry = {"name": key, "queue": pg.spec.queue, "minMember": pg.spec.min_member,
                 "priorityClassName": pg.spec.priority_class_name,
                 "pods": sorted(p for pods in members.values() for p in pods)}
        if pg.spec.sub_groups:
            entry["subGroups"] = [{"name": sg.name, "minMember": sg.min_member,
                                   **({"parent": sg.parent} if sg.parent else {}),
                                   "pods": sorted(members.get(sg.name, []))} for sg in pg.spec.sub_groups]
        out.append(entry)
    return out


class SimCache(RecordingCache):
    """The recording cache, plus the DRA allocation each pod was bound with (``claims``: pod key
    -> kai.dra.allocator.DraAllocation), as the binder receives it at commit."""

    def __init__(self, state: ClusterState) -> None:
        super().__init__(state)
        self.claims: dict = {}

    def bind(self, task, node_name: str) -> None:
        super().bind(task, node_name)
        if task.dra is not None:
            self.claims[task.key] = task.dra


def _advance(state: ClusterState, result, claims: dict | None = None) -> None:
    """Feed one cycle's results back: bound -> Running (its claims written, ``claims`` from
    :class:`SimCache`), evicted -> gone (its claims released)."""
    claims = claims or {}
    for d in result.bindings:
        p = _pod_by_key(state, d.pod)
        if p is None:
            continue
        pod = p.pod
        meta = pod.metadata
        if d.gpu_groups:        # as the binder labels fraction pods with their shared-GPU groups
            labels = dict(meta.labels or {})
            if len(d.gpu_groups) == 1:
                labels["runai-gpu-group"] = d.gpu_groups[0]
            else:
                labels.update({f"runai-gpu-group/{g}": g for g in d.gpu_groups})
            meta = msgspec.structs.replace(meta, labels=labels)
        got = claims.get(d.pod)
        if got is not None and state.dra is not None:     # the binder's claim writes
            pod = claims_bound(state.dra, pod, got)
        new = msgspec.structs.replace(pod, metadata=meta, spec=msgspec.structs.replace(pod.spec, node_name=d.node),
                                      status=PodStatus(phase="Running",
                                                       resource_claim_statuses=pod.status.resource_claim_statuses))
        state.upsert_pod(new)
    for d in result.evictions:
        p = _pod_by_key(state, d.pod)
        if p is not None:
            if state.dra is not None and p.pod.spec.resource_claims:
                claims_released(state.dra, p.pod)
            state.delete_pod(p.uid)


def _pod_by_key(state: ClusterState, key: str):
    for p in state.pods.values():
        if p.key == key:
            return p
    return None


def simulate(m: Manifests, config: SchedulerConfig, cycles: int = 1, interval: float = 1.0,
             start_time: float = 1_704_067_200.0 + 3600, gpu_map: bool = False) -> dict:
    """Run ``cycles`` cycles; return the report documented in docs/simulate.md.

    With ``gpu_map`` every cycle also carries ``nodes``: each GPU node's occupancy after the
    cycle's results were applied (``kai.cache.occupancy``), for ``--report``."""
    state = build_state(m, getattr(config, "grouper", None))
    sched = Scheduler(state, config)
    report = {"cycles": [], "queues": [], "podGroups": podgroups_report(state.grouped), "skipped": m.skipped,
              "notImplementedActions": sched.skipped_actions, "problems": [],
              "warnings": list(unimplemented_plugins(config))}
    now = start_time
    result = None
    for _ in range(max(cycles, 1)):
        cache = SimCache(state)
        result = sched.run_cycle(cache, now=now)
        claims = cache.claims
        report["cycles"].append({
            "bindings": [{"pod": d.pod, "node": d.node, "gpuGroups": d.gpu_groups,
                          **({"claims": claim_bindings(claims[d.pod])} if d.pod in claims else {})}
                         for d in result.bindings],
            "evictions": [{"pod": d.pod, "action": d.action, **({"preemptor": d.preemptor} if d.preemptor else {})}
                          for d in result.evictions],
            "pipelined": [d.pod for d in result.pipelined],
            "unschedulable": [{"podGroup": k, "reasons": v} for k, v in sorted(result.unschedulable.items())],
            "queues": result.queues,
        })
        _advance(state, result, claims)
        if gpu_map:
            report["cycles"][-1]["nodes"] = node_occupancy(state.nodes)
        now += interval
    report["queues"] = result.queues if result else []
    for key, why in sorted(state.pod_problems.items()):
        report["problems"].append({"object": f"Pod {key}", "reason": why})
    tree_problems = sched.open_session(RecordingCache(state), now).queues.problems
    for name, why in sorted(tree_problems.items()):
        report["problems"].append({"object": f"Queue {name}", "reason": why})
    return report


def format_table(report: dict) -> str:
    lines = []
    for i, cyc in enumerate(report["cycles"], 1):
        lines.append(f"== cycle {i}: {len(cyc['bindings'])} bound, {len(cyc['evictions'])} evicted, "
                     f"{len(cyc['pipelined'])} pipelined, {len(cyc['unschedulable'])} unschedulable")
        for b in cyc["bindings"]:
            groups = f"  gpu-groups={','.join(b['gpuGroups'])}" if b["gpuGroups"] else ""
            lines.append(f"  bind      {b['pod']:<40} -> {b['node']}{groups}")
            for c in b.get("claims", []):
                devices = ", ".join(f"{r['request']}={r['driver']}/{r['pool']}/{r['device']}" for r in c["results"])
                lines.append(f"    claim   {c['claim']:<40}    {devices}")
        for e in cyc["evictions"]:
            by = f" (for {e['preemptor']})" if e.get("preemptor") else ""
            lines.append(f"  evict     {e['pod']:<40} [{e['action']}]{by}")
        for p in cyc["pipelined"]:
            lines.append(f"  pipeline  {p}")
        for u in cyc["unschedulable"]:
            for r in u["reasons"]:
                lines.append(f"  pending   {u['podGroup']:<40} {r}")
    if report["queues"]:
        lines.append("== queues (gpu devices, cpu millicores, memory bytes)")
        lines.append(f"  {'queue':<28}{'fair gpu':>10}{'alloc gpu':>10}{'fair cpu':>12}{'alloc cpu':>12}"
                     f"{'fair mem':>16}{'alloc mem':>16}")
        for q in report["queues"]:
            f, a = q["fairShare"], q["allocated"]
            lines.append(f"  {q['name']:<28}{f['gpu']:>10}{a['gpu']:>10}{f['cpu']:>12}{a['cpu']:>12}"
                         f"{f['memory']:>16}{a['memory']:>16}")
    for p in report.get("problems", []):
        lines.append(f"  problem   {p['object']}: {p['reason']}")
    if report.get("notImplementedActions"):
        lines.append(f"  note      actions not available in this build: {', '.join(report['notImplementedActions'])}")
    if report.get("warnings"):
        lines.append("== warnings")
        lines.extend(f"  warning   {w}" for w in report["warnings"])
    if report.get("skipped"):
        lines.append(f"  note      ignored {len(report['skipped'])} object(s) kai does not schedule with")
    return "\n".join(lines)
