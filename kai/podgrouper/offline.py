"""The pod-grouper over a fixed set of pods, for ``kai simulate``.

:func:`group_pods` does for every pod what the live pod-grouper does through the API: pods
scheduled by kai, except orphans that name their PodGroup themselves, get the PodGroup
KAI's groupers make (created, or updated as KAI's handler updates it: the queue, the
node-pool label and ``markUnschedulable`` / ``schedulingBackoff`` of an existing PodGroup are
kept), the ``pod-group-name`` annotation and, when a SubGroup lists them, the
``kai.scheduler/subgroup-name`` label. Pods that cannot be grouped are reported with the
reason and left ungrouped (they are not scheduled).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from kai.api import constants as C
from kai.api.k8s import Pod, PodGroup
from kai.podgrouper.defaults import GrouperConfig
from kai.podgrouper.hub import podgroup_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata, subgroup_of, to_podgroup
from kai.podgrouper.objects import ManifestReader


@dataclass
class Grouped:
    pods: list[Pod] = field(default_factory=list)                 # every pod, grouped ones annotated
    podgroups: dict[str, PodGroup] = field(default_factory=dict)  # "ns/name" -> PodGroup made or updated
    members: dict[str, dict[str, list[str]]] = field(default_factory=dict)   # "ns/name" -> subgroup -> pods
    errors: dict[str, str] = field(default_factory=dict)          # "ns/pod" -> why it was not grouped


def needs_group(pod: Pod, scheduler_name: str = C.SCHEDULER_NAME) -> bool:
    """KAI's filter: our pods, except orphans that name their PodGroup."""
    if pod.spec.scheduler_name != scheduler_name:
        return False
    return not (C.POD_GROUP_ANNOTATION in pod.metadata.annotations and not pod.metadata.owner_references)


def keep_fields(old: PodGroup, new: PodGroup, node_pool_label_key: str, queue_label_key: str) -> PodGroup:
    """``new`` with the fields the grouper never overwrites taken from ``old`` (KAI's ignoreFields)."""
    labels = dict(new.metadata.labels)
    if node_pool_label_key in old.metadata.labels:
        labels[node_pool_label_key] = old.metadata.labels[node_pool_label_key]
    else:
        labels.pop(node_pool_label_key, None)
    if queue_label_key in old.metadata.labels:
        labels[queue_label_key] = old.metadata.labels[queue_label_key]
    spec = msgspec.structs.replace(new.spec, queue=old.spec.queue, mark_unschedulable=old.spec.mark_unschedulable,
                                   scheduling_backoff=old.spec.scheduling_backoff)
    meta = msgspec.structs.replace(old.metadata, labels={**old.metadata.labels, **labels},
                                   annotations={**old.metadata.annotations, **new.metadata.annotations},
                                   owner_references=new.metadata.owner_references)
    return msgspec.structs.replace(old, metadata=meta, spec=spec)


def assign(pod: Pod, meta: PodGroupMetadata) -> Pod:
    """``pod`` with the ``pod-group-name`` annotation and, if listed, its SubGroup label."""
    ann = {**pod.metadata.annotations, C.POD_GROUP_ANNOTATION: meta.name}
    labels = dict(pod.metadata.labels)
    sg = subgroup_of(meta, pod.metadata.namespace or "default", pod.metadata.name)
    if sg:
        labels[C.SUBGROUP_LABEL] = sg
    return msgspec.structs.replace(pod, metadata=msgspec.structs.replace(pod.metadata, annotations=ann, labels=labels))


def group_pods(pods: list[Pod], objects: dict, existing: list[PodGroup] = (), priority_classes=(),
               config: GrouperConfig | None = None, scheduler_name: str = C.SCHEDULER_NAME) -> Grouped:
    """Group ``pods`` (in order) against ``objects`` ((kind, ns, name) -> manifest) and the
    PodGroups that already exist."""
    config = config or GrouperConfig()
    reader = ManifestReader(objects, pods, existing, priority_classes)
    have: dict[str, PodGroup] = {f"{pg.metadata.namespace or 'default'}/{pg.metadata.name}": pg for pg in existing}
    out = Grouped()
    for i, pod in enumerate(pods):
        if not needs_group(pod, scheduler_name):
            out.pods.append(pod)
            continue
        key = f"{pod.metadata.namespace or 'default'}/{pod.metadata.name}"
        try:
            meta = podgroup_metadata(pod, reader, config)
        except GroupingError as exc:
            out.errors[key] = str(exc)
            out.pods.append(pod)
            continue
        pool = pod.metadata.labels.get(config.node_pool_label_key)
        if pool is not None and config.node_pool_label_key not in meta.labels:
            meta.labels[config.node_pool_label_key] = pool
        pg_key = f"{meta.namespace}/{meta.name}"
        new = to_podgroup(meta, creation_timestamp=pod.metadata.creation_timestamp)
        old = have.get(pg_key)
        pg = keep_fields(old, new, config.node_pool_label_key, config.queue_label_key) if old is not None else new
        have[pg_key] = out.podgroups[pg_key] = pg
        reader.put_podgroup(msgspec.to_builtins(pg))
        grouped = assign(pod, meta)
        out.pods.append(grouped)
        reader.replace_pod(i, grouped)
        sg = grouped.metadata.labels.get(C.SUBGROUP_LABEL, "")
        out.members.setdefault(pg_key, {}).setdefault(sg, []).append(pod.metadata.name)
    return out
