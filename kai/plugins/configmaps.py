"""configmaps: KAI's ConfigMap predicate -- a pod waits until the ConfigMaps it needs exist.

A ConfigMap is needed when it is not optional and it is referenced by a ``configMap`` or
``projected`` volume that some container mounts, or by ``envFrom[].configMapRef`` or
``env[].valueFrom.configMapKeyRef`` of any container, init container or ephemeral container.
Names starting with the pod's ``runai/shared-gpu-configmap`` annotation are exempt: kai's binder
creates those for GPU sharing when it binds the pod. The check is node-independent, so it is a
pre-predicate (``Session.pre_predicate_fns``; it adds no node mask, so such pods keep the lazy
node queues): the pod's reason is ``Missing required configmaps: [a b]`` (KAI's wording).

Registered by ``kai.plugins.predicates``; reads ConfigMap names from ``ClusterState.storage``.
"""
from __future__ import annotations

from kai.api.k8s import Container, Pod

SHARED_GPU_CONFIGMAP = "runai/shared-gpu-configmap"


def _env_refs(c: Container) -> list[tuple[str, bool]]:
    out = []
    for e in c.env:
        ref = e.value_from.config_map_key_ref if e.value_from is not None else None
        if ref is not None:
            out.append((ref.name, bool(ref.optional)))
    for ef in c.env_from:
        if ef.config_map_ref is not None:
            out.append((ef.config_map_ref.name, bool(ef.config_map_ref.optional)))
    return out


def required_config_maps(pod: Pod) -> list[str]:
    """Names of the ConfigMaps the pod cannot start without, in first-reference order."""
    spec = pod.spec
    if not spec.volumes:
        # the common pod: no volumes; without env references either, nothing is required
        for group in (spec.containers, spec.init_containers, spec.ephemeral_containers):
            for c in group:
                if c.env or c.env_from:
                    break
            else:
                continue
            break
        else:
            return []
    containers = [*spec.init_containers, *spec.containers, *spec.ephemeral_containers]
    mounted = {m.name for c in containers for m in c.volume_mounts}
    refs: list[tuple[str, bool]] = []
    for v in spec.volumes:
        if v.name not in mounted:
            continue
        if v.config_map is not None:
            refs.append((v.config_map.name, bool(v.config_map.optional)))
        if v.projected is not None:
            refs.extend((s.config_map.name, bool(s.config_map.optional))
                        for s in v.projected.sources if s.config_map is not None)
    for c in containers:
        refs.extend(_env_refs(c))
    prefix = pod.metadata.annotations.get(SHARED_GPU_CONFIGMAP)
    out = []
    for name, optional in refs:
        if optional or (prefix is not None and name.startswith(prefix)):
            continue
        out.append(name)
    return list(dict.fromkeys(out))


class ConfigMapPredicate:
    """KAI's ConfigMapPredicate: ``pred(task, job)`` is the pending reason, or None."""

    name = "ConfigMap"
    #: the pod's references and namespace, against ConfigMaps a session does not change
    alike_stable = True
    label_blind = True

    def __init__(self, store) -> None:
        self.store = store
        self._needs: dict[str, list[str]] = {}

    def _required(self, task) -> list[str]:
        got = self._needs.get(task.uid)
        if got is None:
            got = self._needs[task.uid] = required_config_maps(task.pod)
        return got

    def __call__(self, task, job) -> str | None:
        required = self._required(task)
        if not required:
            return None
        missing = [n for n in required if not self.store.has_configmap(task.namespace, n)]
        if not missing:
            return None
        return f"pod {task.key}: Missing required configmaps: [{' '.join(missing)}]"
