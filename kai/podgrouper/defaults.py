"""KAI's default grouper: the PodGroup fields every kind starts from.

* name ``pg-<top owner>-<top owner UID>``, owner the top owner, minMember 1;
* labels: the top owner's (plus the pod's ``user`` label); annotations: the top owner's,
  the pod's ``user`` annotation and ``kai.scheduler/top-owner-metadata`` (YAML: name, uid,
  group, version, kind of the top owner);
* queue: the queue label (``--queue-label-key``, default ``kai.scheduler/queue``) on the top
  owner, then on the pod; else label ``project`` (top owner, then pod) with
  ``-<node pool>`` when the pod carries the node-pool label; else ``default-queue``;
* priority class: per owner, its ``priorityClassName`` label, else the pod's label, else
  ``pod.spec.priorityClassName`` -- the first that names an existing PriorityClass; else the
  per-kind default from the defaults ConfigMap (when it names an existing class); else the
  kind's fallback (``train``; ``inference`` for Deployments and Knative, ``build`` for Notebooks);
* preemptibility: the first owner carrying label ``kai.scheduler/preemptibility`` with a
  valid value, then the pod's label, then the ConfigMap's per-kind default, else empty;
* topology: the top owner's ``kai.scheduler/topology*`` annotations.

The defaults ConfigMap (``--default-priorities-configmap-name/-namespace``, as KAI's flags)
holds key ``types``: a JSON list of ``{typeName, group, priorityName, preemptibility}``;
an entry matches an owner by ``Kind.group`` first, then by ``Kind`` alone.

Called by every plugin in ``kai.podgrouper.plugins``; reads through a :class:`Context`.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import structlog
import yaml

from kai.api import constants as C
from kai.api.k8s import OwnerReference, Pod
from kai.podgrouper.metadata import PodGroupMetadata, Topology
from kai.podgrouper.objects import Forbidden, Obj, Reader

log = structlog.get_logger("kai.podgrouper")

TOP_OWNER_METADATA = "kai.scheduler/top-owner-metadata"
USER_KEY = "user"
TRAIN, BUILD, INFERENCE = "train", "build", "inference"
_PREEMPTIBILITY = {"", C.PREEMPTIBLE, C.NON_PREEMPTIBLE}


@dataclass
class GrouperConfig:
    """The pod-grouper's settings (KAI's podgrouper flags)."""
    queue_label_key: str = C.QUEUE_LABEL
    node_pool_label_key: str = C.NODE_POOL_LABEL
    defaults_configmap_name: str = ""
    defaults_configmap_namespace: str = ""
    knative_gang_schedule: bool = True
    search_legacy_podgroups: bool = True


@dataclass
class Context:
    """One grouping: the reader, the settings and what was read once for this pod."""
    reader: Reader
    config: GrouperConfig = field(default_factory=GrouperConfig)
    _defaults: Any = None
    _defaults_read: bool = False

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        return self.reader.get(api_version, kind, namespace, name)

    def priority_class_exists(self, name: str) -> bool:
        if not name:
            return False
        try:
            return self.reader.get("scheduling.k8s.io/v1", "PriorityClass", "", name) is not None
        except Forbidden:
            return False

    def defaults(self) -> dict[str, dict] | None:
        """The defaults ConfigMap as {groupKind: entry}; {} when not configured, None when it
        cannot be read or parsed (logged)."""
        if not self._defaults_read:
            self._defaults_read = True
            self._defaults = self._read_defaults()
        return self._defaults

    def _read_defaults(self) -> dict[str, dict] | None:
        cfg = self.config
        if not cfg.defaults_configmap_name or not cfg.defaults_configmap_namespace:
            return {}
        where = f"ConfigMap {cfg.defaults_configmap_namespace}/{cfg.defaults_configmap_name}"
        try:
            cm = self.reader.get("v1", "ConfigMap", cfg.defaults_configmap_namespace, cfg.defaults_configmap_name)
        except Forbidden:
            cm = None
        if cm is None:
            log.warning("default priorities ConfigMap not readable; using the built-in defaults", configmap=where)
            return None
        try:
            return parse_defaults(cm)
        except ValueError as exc:
            log.warning("default priorities ConfigMap unusable; using the built-in defaults",
                        configmap=where, error=str(exc))
            return None


def parse_defaults(cm: dict) -> dict[str, dict]:
    """``data.types`` of the defaults ConfigMap as {``Kind.group`` or ``Kind``: entry}."""
    data = cm.get("data")
    if not isinstance(data, dict) or not data:
        raise ValueError("the ConfigMap has no data")
    if "types" not in data:
        raise ValueError("data has no 'types' key")
    try:
        entries = json.loads(data["types"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data.types is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError("data.types must be a JSON list")
    out: dict[str, dict] = {}
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("data.types entries must be objects")
        kind, group = str(e.get("typeName") or ""), str(e.get("group") or "")
        out[f"{kind}.{group}" if group else kind] = e
    return out


def _defaults_for(defaults: dict[str, dict] | None, owner: Obj) -> dict | None:
    if not defaults or not owner.kind:
        return None
    gk = f"{owner.kind}.{owner.group}" if owner.group else owner.kind
    return defaults.get(gk) or defaults.get(owner.kind)


# ------------------------------------------------------------------------------ the fields
def podgroup_name(obj: Obj) -> str:
    return f"pg-{obj.name}-{obj.uid}"


def owner_ref(obj: Obj) -> OwnerReference:
    return OwnerReference(api_version=obj.api_version, kind=obj.kind, name=obj.name, uid=obj.uid)


def pod_owner_ref(pod: Pod) -> OwnerReference:
    return OwnerReference(api_version=pod.api_version or "v1", kind=pod.kind or "Pod", name=pod.metadata.name,
                          uid=pod.metadata.uid)


_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./-]*$")
# numbers YAML 1.2 (Go's yaml.v3) reads as such although YAML 1.1 (PyYAML) does not
_NUMBER_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_RESOLVER = yaml.resolver.Resolver()


def _yaml_scalar(v: str) -> str:
    """``v`` as a YAML scalar the way Go's yaml.v3 writes it: plain when that reads back as
    the same string, else double-quoted."""
    if v and _PLAIN.match(v) and not _NUMBER_12.match(v) and \
            _RESOLVER.resolve(yaml.ScalarNode, v, (True, False)) == "tag:yaml.org,2002:str":
        return v
    if _NUMBER_12.match(v):
        return json.dumps(v)
    return _yaml_scalar_slow(v)


@functools.lru_cache(maxsize=1024)
def _yaml_scalar_slow(v: str) -> str:
    dumped = yaml.safe_dump(v, default_flow_style=True).strip()
    if dumped.endswith("\n..."):
        dumped = dumped[:-4].strip()
    return json.dumps(v) if (not v or dumped[:1] in ("'", '"')) else v


def top_owner_metadata(top: Obj) -> str:
    """KAI's ``kai.scheduler/top-owner-metadata`` annotation value (YAML, fixed key order)."""
    fields = (("name", top.name), ("uid", top.uid), ("group", top.group), ("version", top.version),
              ("kind", top.kind))
    return "".join(f"{k}: {_yaml_scalar(v)}\n" for k, v in fields)


def podgroup_annotations(top: Obj, pod: Pod) -> dict[str, str]:
    out: dict[str, str] = {}
    if USER_KEY in pod.metadata.annotations:
        out[USER_KEY] = pod.metadata.annotations[USER_KEY]
    out[TOP_OWNER_METADATA] = top_owner_metadata(top)
    out.update(top.annotations)
    return out


def podgroup_labels(top: Obj, pod: Pod) -> dict[str, str]:
    out = dict(top.labels)
    if USER_KEY not in out and USER_KEY in pod.metadata.labels:
        out[USER_KEY] = pod.metadata.labels[USER_KEY]
    return out


def podgroup_queue(ctx: Context, top: Obj, pod: Pod) -> str:
    key = ctx.config.queue_label_key
    tl, pl = top.labels, pod.metadata.labels
    if key in tl:
        return tl[key]
    if key in pl:
        return pl[key]
    project = tl[C.LEGACY_QUEUE_LABEL] if C.LEGACY_QUEUE_LABEL in tl else pl.get(C.LEGACY_QUEUE_LABEL, "")
    if project:
        pool = pl.get(ctx.config.node_pool_label_key)
        return f"{project}-{pool}" if pool is not None else project
    return C.DEFAULT_QUEUE


def _labelled_priority(owner: Obj, pod: Pod) -> str:
    if C.PRIORITY_CLASS_LABEL in owner.labels:
        return owner.labels[C.PRIORITY_CLASS_LABEL]
    if C.PRIORITY_CLASS_LABEL in pod.metadata.labels:
        return pod.metadata.labels[C.PRIORITY_CLASS_LABEL]
    return pod.spec.priority_class_name or ""


def priority_with_defaults(ctx: Context, owners: list[Obj], pod: Pod, fallback: str
                           ) -> tuple[str, dict[str, dict] | None]:
    """(priority class, the defaults mapping read on the way) -- KAI's calcPriorityClassWithDefaults."""
    for owner in owners:
        name = _labelled_priority(owner, pod)
        if ctx.priority_class_exists(name):
            return name, None
        if name:
            log.debug("priority class from labels does not exist", priority_class=name, owner=repr(owner))
    defaults = ctx.defaults()
    if defaults is None:
        return fallback, None
    for owner in owners:
        entry = _defaults_for(defaults, owner)
        name = str((entry or {}).get("priorityName") or "")
        if ctx.priority_class_exists(name):
            return name, defaults
    return fallback, defaults


def owner_priority(ctx: Context, top: Obj, pod: Pod, fallback: str) -> str:
    """KAI's CalcPodGroupPriorityClass: the top owner alone, with the kind's fallback."""
    return priority_with_defaults(ctx, [top], pod, fallback)[0]


def preemptibility_with_defaults(ctx: Context, owners: list[Obj], pod: Pod,
                                 defaults: dict[str, dict] | None) -> str:
    for owner in owners:
        if C.PREEMPTIBILITY_LABEL in owner.labels:
            v = owner.labels[C.PREEMPTIBILITY_LABEL]
            if v in _PREEMPTIBILITY:
                return v
            log.warning("invalid preemptibility label on owner", owner=repr(owner), value=v)
    if C.PREEMPTIBILITY_LABEL in pod.metadata.labels:
        v = pod.metadata.labels[C.PREEMPTIBILITY_LABEL]
        if v in _PREEMPTIBILITY:
            return v
        log.warning("invalid preemptibility label on pod", pod=pod.metadata.name, value=v)
    if not defaults:
        defaults = ctx.defaults()
        if not defaults:
            return ""
    for owner in owners:
        entry = _defaults_for(defaults, owner)
        v = str((entry or {}).get("preemptibility") or "").lower()
        if v:
            if v in _PREEMPTIBILITY:
                return v
            log.warning("invalid preemptibility in the defaults ConfigMap", kind=owner.kind, value=v)
    return ""


def top_topology(top: Obj) -> Topology:
    ann = top.annotations
    return Topology(topology=ann.get(C.TOPOLOGY, ""), required=ann.get(C.TOPOLOGY_REQUIRED, ""),
                    preferred=ann.get(C.TOPOLOGY_PREFERRED, ""))


def default_metadata(ctx: Context, top: Obj, pod: Pod, owners: list[Obj] | None = None) -> PodGroupMetadata:
    """KAI's DefaultGrouper.GetPodGroupMetadata for ``top`` (owners: the whole chain when the
    hub calls it directly; the other groupers pass none, so only the top owner counts)."""
    owners = owners or [top]
    priority, defaults = priority_with_defaults(ctx, owners, pod, TRAIN)
    return PodGroupMetadata(
        name=podgroup_name(top), namespace=pod.metadata.namespace or "default", owner=owner_ref(top),
        queue=podgroup_queue(ctx, top, pod), priority_class_name=priority,
        preemptibility=preemptibility_with_defaults(ctx, owners, pod, defaults), min_available=1,
        labels=podgroup_labels(top, pod), annotations=podgroup_annotations(top, pod), topology=top_topology(top))


def grouper_config(args: Any, queue_label_key: str = C.QUEUE_LABEL) -> GrouperConfig:
    """GrouperConfig from ``kai scheduler`` / ``kai simulate`` flags (missing ones: defaults)."""
    return GrouperConfig(
        queue_label_key=getattr(args, "queue_label_key", None) or queue_label_key,
        node_pool_label_key=getattr(args, "nodepool_label_key", None) or C.NODE_POOL_LABEL,
        defaults_configmap_name=getattr(args, "default_priorities_configmap_name", "") or "",
        defaults_configmap_namespace=getattr(args, "default_priorities_configmap_namespace", "") or "",
        knative_gang_schedule=getattr(args, "knative_gang_schedule", True),
        search_legacy_podgroups=getattr(args, "search_legacy_pg", True))
