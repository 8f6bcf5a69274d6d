"""PodInfo: one pod as the scheduler sees it (a "task" of a job).

Built once per pod add/update from a :class:`kai.api.k8s.Pod`. Holds the effective
resource request (as Kubernetes computes it), the GPU-sharing request from KAI's
annotations, the scheduling-constraint signature used to cache node masks, and the
session status flag. Invalid annotations do not raise: they set ``invalid_reason`` and
the scheduler reports it on the pod's group instead of scheduling it.
"""
from __future__ import annotations

import datetime as _dt
from operator import attrgetter

import numpy as np

from kai.api import constants as C
from kai.api.gpu_sharing import GPUSharing, parse_gpu_sharing_annotations
from kai.api.k8s import BoundPod, Container, Pod
from kai.api.affinity import PodConstraints, declares_ports
from kai.api.pod_fields import unhonoured
from kai.api.selectors import SelectorError
from kai.api.resources import CPU, GPU, MIG_PREFIX, PODS, QuantityError, ResourceRegistry


_TIME_CACHE: dict[str, float] = {}


def parse_time(value: str | None) -> float:
    """RFC 3339 timestamp -> unix seconds (0.0 when absent or malformed)."""
    if not value:
        return 0.0
    got = _TIME_CACHE.get(value)
    if got is None:
        try:
            got = _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            got = 0.0
        if len(_TIME_CACHE) > 100_000:
            _TIME_CACHE.clear()
        _TIME_CACHE[value] = got
    return got


def _container_requests(c: Container) -> dict[str, object]:
    return _container_requests_of(c.resources)


def _container_requests_of(resources) -> dict[str, object]:
    # The API server defaults a missing request to the limit; manifests read from files
    # have not been through it, so apply the same rule here.
    req = dict(resources.limits)
    req.update(resources.requests)
    return req


#: resources a pod may state at pod level (``spec.resources``; kube's IsSupportedPodLevelResource)
_POD_LEVEL = ("cpu", "memory")


def _pod_level_requests(pod: Pod) -> dict[str, object]:
    """``spec.resources`` requests, limits standing in for missing requests as for a container;
    anything but cpu, memory and hugepages is refused (the API server refuses it too)."""
    res = pod.spec.resources
    if res is None:
        return {}
    req = _container_requests_of(res)
    bad = sorted(k for k in req if k not in _POD_LEVEL and not k.startswith("hugepages-"))
    if bad:
        raise QuantityError(f"pod-level resources (spec.resources) support cpu, memory and hugepages only, "
                            f"not {', '.join(bad)}")
    return req


def _req_key(pod: Pod) -> tuple:
    spec = pod.spec
    if len(spec.containers) == 1 and not spec.init_containers and not spec.overhead and spec.resources is None:
        r = spec.containers[0].resources
        return (tuple(r.requests.items()), tuple(r.limits.items()))
    level = spec.resources
    return (tuple((tuple(c.resources.requests.items()), tuple(c.resources.limits.items()))
                  for c in spec.containers),
            tuple((tuple(c.resources.requests.items()), tuple(c.resources.limits.items()), c.restart_policy)
                  for c in spec.init_containers),
            tuple(spec.overhead.items()),
            None if level is None else (tuple(level.requests.items()), tuple(level.limits.items())))


def pod_requests(pod: Pod, registry: ResourceRegistry) -> np.ndarray:
    """Effective request of a pod (memoized on its resource fields; see ``_pod_requests``).

    The returned array is shared between pods with equal requests: treat it as read-only.
    """
    cache = registry.request_cache
    spec = pod.spec
    shared = None
    if (type(pod) is BoundPod and len(spec.containers) == 1 and not spec.init_containers and not spec.overhead
            and spec.resources is None):
        # a compact pod's resources object is shared by every pod with equal resources
        # (kai.api.k8s.share_bound_pod): look it up by identity, the entry keeps it alive
        shared = spec.containers[0].resources
        hit = cache.get(id(shared))
        if hit is not None and hit[0] is shared:
            return hit[1]
    try:
        key = _req_key(pod)
        got = cache.get(key)
    except TypeError:       # unhashable quantity values; compute directly
        return _pod_requests(pod, registry)
    if got is None:
        got = _pod_requests(pod, registry)
        if len(cache) > 50_000:
            cache.clear()
        cache[key] = got
        got.flags.writeable = False
    if shared is not None:
        cache[id(shared)] = (shared, got)
    return got


def _pod_requests(pod: Pod, registry: ResourceRegistry) -> np.ndarray:
    """Effective request of a pod, as the kube-scheduler computes it.

    sum(containers) + sum(restartable init "sidecar" containers), raised to the largest
    regular init container (plus the sidecars started before it); then each resource stated at
    pod level (``spec.resources``, PodLevelResources) replaces that figure; plus pod overhead.
    The pods column is 1. Raises QuantityError for malformed or negative quantities.
    """
    def vec(reqs: dict[str, object]) -> dict[int, float]:
        out: dict[int, float] = {}
        for name, q in reqs.items():
            v = registry.quantity_to_float(name, q)
            if v < 0:
                raise QuantityError(f"negative quantity {q!r} for {name}")
            if v:
                col = registry.column(name)
                out[col] = out.get(col, 0.0) + v
        return out

    total: dict[int, float] = {}
    for c in pod.spec.containers:
        for k, v in vec(_container_requests(c)).items():
            total[k] = total.get(k, 0.0) + v
    sidecars: dict[int, float] = {}
    init_peak: dict[int, float] = {}
    for c in pod.spec.init_containers:
        r = vec(_container_requests(c))
        if c.restart_policy == "Always":
            for k, v in r.items():
                sidecars[k] = sidecars.get(k, 0.0) + v
        else:
            for k in set(r) | set(sidecars):
                init_peak[k] = max(init_peak.get(k, 0.0), r.get(k, 0.0) + sidecars.get(k, 0.0))
    for k, v in sidecars.items():
        total[k] = total.get(k, 0.0) + v
    for k, v in init_peak.items():
        total[k] = max(total.get(k, 0.0), v)
    level = _pod_level_requests(pod)
    if level:
        for name in level:                      # stated at pod level, even as 0: it wins
            total.pop(registry.column(name), None)
        for k, v in vec(level).items():
            total[k] = v
    for k, v in vec(pod.spec.overhead).items():
        total[k] = total.get(k, 0.0) + v
    out = np.zeros(len(registry), dtype=np.float64)
    for k, v in total.items():
        out[k] = v
    out[PODS] = 1.0
    return out


def parse_gpu_sharing(pod: Pod, whole_gpus: float) -> tuple[GPUSharing | None, str]:
    """The pod's GPU-sharing request (``kai.api.gpu_sharing``): (request, error)."""
    return parse_gpu_sharing_annotations(pod.metadata.annotations, bool(whole_gpus))


def fraction_configmap_suffix(pod: Pod | None) -> str:
    """KAI's per-container suffix of a GPU-sharing pod's ConfigMap: ``<index>`` of the container
    named by ``gpu-fraction-container-name`` (default container 0), ``i<index>`` for an init
    container. The admission webhook points the container's env at ``<prefix>-<suffix>``."""
    if pod is None:
        return "0"
    name = pod.metadata.annotations.get(C.GPU_FRACTION_CONTAINER)
    if name is None:
        return "0"
    for i, c in enumerate(pod.spec.containers):
        if c.name == name:
            return str(i)
    for i, c in enumerate(pod.spec.init_containers):
        if c.name == name:
            return f"i{i}"
    return "0"


def constraint_signature(pod: Pod) -> tuple:
    """Hashable key of everything that decides which nodes a pod may use, apart from resources.

    Pods with equal signatures see the same static node mask (labels, affinity, taints).
    """
    spec = pod.spec
    aff = None
    na = spec.affinity.node_affinity if spec.affinity else None
    if na and na.required_during_scheduling_ignored_during_execution:
        aff = tuple(
            (tuple((e.key, e.operator, tuple(e.values)) for e in t.match_expressions),
             tuple((e.key, e.operator, tuple(e.values)) for e in t.match_fields))
            for t in na.required_during_scheduling_ignored_during_execution.node_selector_terms)
    tol = tuple(sorted((t.key, t.operator, t.value, t.effect) for t in spec.tolerations))
    return (tuple(sorted(spec.node_selector.items())), aff, tol)


def _initial_status(phase: str, spec, deleting: bool) -> int:
    """A pod's status from its phase, node and deletion (KAI's pod_status rules)."""
    if phase == "Succeeded":
        return C.PodStatus.SUCCEEDED
    if phase == "Failed":
        return C.PodStatus.FAILED
    if spec.node_name:
        if deleting:
            return C.PodStatus.RELEASING
        return C.PodStatus.RUNNING if phase == "Running" else C.PodStatus.BOUND
    if deleting:
        return C.PodStatus.DELETED
    if spec.scheduling_gates:
        return C.PodStatus.GATED
    return C.PodStatus.PENDING


#: annotations that make a pod a GPU-sharing one (kai.api.gpu_sharing)
_SHARING_KEYS = frozenset((C.GPU_FRACTION, C.GPU_MEMORY, C.GPU_FRACTION_NUM_DEVICES, C.MPS))
_PG_ANNOTATION = C.POD_GROUP_ANNOTATION
_DIGITS = frozenset("0123456789")


def legacy_mig_annotations(annotations: dict[str, str]) -> tuple[tuple[str, int], ...]:
    """The MIG instances a *legacy MIG pod* asks for in annotations: each annotation named
    like a MIG resource (``nvidia.com/mig-1g.10gb: "1"``) whose value is a base-10 integer
    (KAI's updateLegacyMigResourceRequestFromAnnotations; another value is not one, as in
    KAI). () for every other pod."""
    got = []
    for key, value in annotations.items():
        if key.startswith(MIG_PREFIX) and isinstance(value, str):
            digits = value[1:] if value[:1] in ("+", "-") else value
            if digits and _DIGITS.issuperset(digits):
                got.append((key, int(value)))
    return tuple(got)


def _with_legacy_mig(req: np.ndarray, legacy, registry: ResourceRegistry) -> np.ndarray:
    """``req`` with a legacy MIG pod's annotated instances in their columns (at least the
    annotated count: KAI takes the annotation for the pod's GPU request). The whole GPUs its
    containers ask for are kept (KAI drops them): charging a node more is the safe side."""
    cols = [(registry.column(name), max(n, 0)) for name, n in legacy]
    out = np.zeros(max(len(registry), req.shape[0]))
    out[: req.shape[0]] = req
    for col, n in cols:
        out[col] = max(out[col], float(n))
    out.flags.writeable = False
    return out


_TASK_PRIORITY_LABEL, _SUBGROUP_LABEL = C.TASK_PRIORITY_LABEL, C.SUBGROUP_LABEL
_RUNNING = C.PodStatus.RUNNING


class _PodExtras:
    """The fields of a PodInfo that most pods leave at their default (see PodInfo)."""

    __slots__ = ("invalid_reason", "task_priority", "subgroup", "dra", "volume_plan", "legacy_mig")

    def __init__(self) -> None:
        self.legacy_mig: tuple = ()
        self.invalid_reason = ""
        self.task_priority = 0
        self.subgroup = ""
        self.dra = None
        self.volume_plan: tuple = ()


def _extra(name: str, default, doc: str) -> property:
    """A PodInfo field kept in its ``_PodExtras``: reads ``default`` while the pod has none;
    writing the default (None, or any falsy value for a falsy default) to a pod without
    extras keeps it without."""
    get = attrgetter(name)

    def fget(self):
        more = self._more
        return default if more is None else get(more)

    def fset(self, value) -> None:
        if self._more is None and (value is None if default is None else not value):
            return
        setattr(self._extras(), name, value)

    return property(fget, fset, doc=doc)


class PodInfo:
    """A pod inside the scheduler: identity, request vector, constraints, session status."""

    # Fields every pod sets, or that hot loops read, are slots. Those most pods leave at their
    # default live in ``_more`` (a _PodExtras, None until one is set; the properties below):
    # at 10^6 running pods a slot is 8 MB to fault in (issue 13's state-build figure).
    __slots__ = ("pod", "uid", "name", "namespace", "_key", "job_key", "status", "node_name",
                 "req", "gpu_sharing", "gpu_groups", "creation", "is_virtual", "deleting",
                 "constraints", "alike_key", "alike_blind", "_signature", "dra_gpus", "_more")

    def __init__(self, pod: Pod, registry: ResourceRegistry) -> None:
        # called for every listed pod (10^6 at start-up): module-level names, the shared
        # request looked up inline, the common cases first
        meta = pod.metadata
        spec = pod.spec
        self.pod = pod
        self.name = name = meta.name
        self.namespace = ns = meta.namespace or "default"
        # "namespace/name": a pending pod's is asked when it is bound or reported, a running
        # pod's rarely (made when first asked)
        self._key = None if spec.node_name else f"{ns}/{name}"
        self._more = None
        # same fallback key as ClusterState.upsert_pod, so an update finds the old entry
        self.uid = meta.uid or f"{ns}/{name}"
        self.job_key = ""
        self.node_name = node_name = spec.node_name
        ts = meta.creation_timestamp
        got = _TIME_CACHE.get(ts) if ts else 0.0
        self.creation = got if got is not None else parse_time(ts)
        invalid = ""
        self.deleting = deleting = meta.deletion_timestamp is not None
        containers = spec.containers
        req = None
        if len(containers) == 1 and type(pod) is BoundPod:
            # pod_requests' first look-up: a compact pod's shared resources object
            shared = containers[0].resources
            hit = registry.request_cache.get(id(shared))
            if (hit is not None and hit[0] is shared and not spec.init_containers and not spec.overhead
                    and spec.resources is None):
                req = hit[1]
        if req is None:
            try:
                req = pod_requests(pod, registry)
            except QuantityError as exc:
                req = np.zeros(len(registry))
                req[PODS] = 1.0
                invalid = f"pod {ns}/{name}: {exc}"
        ann = meta.annotations
        # a legacy MIG pod (MIG instances in annotations): most pods carry only their group's
        # annotation, so most skip the scan
        legacy = legacy_mig_annotations(ann) if ann and (len(ann) > 1 or _PG_ANNOTATION not in ann) else ()
        if legacy:
            req = _with_legacy_mig(req, legacy, registry)
        self.req = req
        if ann and not _SHARING_KEYS.isdisjoint(ann):
            self.gpu_sharing, err = parse_gpu_sharing(pod, float(req[GPU]))
            if err and not invalid:
                invalid = f"pod {ns}/{name}: {err}"
        else:
            self.gpu_sharing = None
        # inter-pod affinity, topology spread, host ports (kai.api.affinity): None for most pods
        if (spec.affinity is None and not spec.topology_spread_constraints
                and not (containers[0].ports if len(containers) == 1 and not spec.init_containers
                         else declares_ports(spec))):
            self.constraints = None
        else:
            try:
                self.constraints = PodConstraints.of(pod)
            except SelectorError as exc:
                self.constraints = None
                if not invalid:
                    invalid = f"pod {ns}/{name}: {exc}"
        if not node_name and not invalid:
            missing = unhonoured(pod)
            if missing:
                invalid = f"pod {ns}/{name} sets fields kai does not honour yet, so it waits: " + "; ".join(missing)
        #: shared-GPU group ids (assigned whole, never appended to: the empty one is shared)
        self.gpu_groups: list[str] = ()          # type: ignore[assignment]
        labels = meta.labels
        priority, sub = 0, ""
        if labels:
            if _TASK_PRIORITY_LABEL in labels:
                try:
                    priority = int(labels[_TASK_PRIORITY_LABEL])
                except ValueError:
                    pass
            sub = labels.get(_SUBGROUP_LABEL) or ""
        if invalid or priority or sub or legacy:
            more = self._more = _PodExtras()
            more.invalid_reason, more.task_priority, more.subgroup = invalid, priority, sub
            more.legacy_mig = legacy
        self.is_virtual = False
        #: what a look-alike pod shares with this one (kai.actions.common.lookalike): False
        #: until first asked; its label-blind part, made with it
        self.alike_key: bytes | tuple | None | bool = False
        self.alike_blind: bytes | None = None
        self._signature = None
        #: DRA (kai.cache.dra_store): GPUs the pod's resource claims count for in queue quota
        #: (set when a session opens; read for every task, so a slot)
        self.dra_gpus = 0.0
        # _initial_status, inline
        phase = pod.status.phase
        if phase == "Running" and node_name and not deleting:
            self.status = _RUNNING
        else:
            self.status = _initial_status(phase, spec, deleting)

    @property
    def key(self) -> str:
        """``namespace/name``: the pod's name in results, events and logs (made on first use:
        most running pods are never asked)."""
        key = self._key
        if key is None:
            key = self._key = f"{self.namespace}/{self.name}"
        return key

    @key.setter
    def key(self, value: str) -> None:
        self._key = value

    def _extras(self) -> "_PodExtras":
        more = self._more
        if more is None:
            more = self._more = _PodExtras()
        return more

    invalid_reason = _extra("invalid_reason", "", """Why the pod cannot be scheduled as it is (bad
        annotation or request, a field kai does not honour yet); "" when nothing is wrong.""")
    task_priority = _extra("task_priority", 0,
                           "The ``kai.scheduler/task-priority`` label (0 when absent or not an integer).")
    subgroup = _extra("subgroup", "", 'The ``kai.scheduler/subgroup`` label ("" when absent).')
    legacy_mig = _extra("legacy_mig", (), """A legacy MIG pod's annotated MIG instances, ((resource,
        count), ...) (:func:`legacy_mig_annotations`); () for every other pod. As in KAI, such a
        pod is never scheduled, and a node it is charged to takes no new MIG pods
        (kai.plugins.legacymig).""")
    dra = _extra("dra", None, """The session's device allocation for the binder
        (kai.dra.allocator.DraAllocation) once placed (kai.plugins.dynamicresources); None otherwise.""")
    volume_plan = _extra("volume_plan", (), """What placing the pod decided for its unbound claims
        (kai.api.storage.ClaimPlan), for the binder; () when nothing.""")

    @property
    def signature(self) -> tuple:
        """Constraint signature (computed on first use; running pods never need it)."""
        sig = self._signature
        if sig is None:
            sig = self._signature = constraint_signature(self.pod)
        return sig

    def req_vec(self, width: int) -> np.ndarray:
        """The request padded to ``width`` columns (extended resources may have been added)."""
        if self.req.shape[0] < width:
            self.req = np.concatenate([self.req, np.zeros(width - self.req.shape[0])])
            self.req.flags.writeable = False
        return self.req

    @property
    def is_cpu_only(self) -> bool:
        return self.req[GPU] == 0 and self.gpu_sharing is None

    @property
    def gpu_quota(self) -> float:
        """GPUs this pod counts for in queue quota (whole + fraction x devices)."""
        if self.gpu_sharing is not None and self.gpu_sharing.portion:
            return self.gpu_sharing.portion * self.gpu_sharing.num_devices
        return float(self.req[GPU])

    def __repr__(self) -> str:
        return f"PodInfo({self.key}, {C.status_name(self.status)}, node={self.node_name!r})"


__all__ = ["PodInfo", "GPUSharing", "pod_requests", "parse_gpu_sharing", "constraint_signature",
           "parse_time", "legacy_mig_annotations", "CPU"]
