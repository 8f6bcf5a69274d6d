"""What one ``kai scheduler`` process watches and owns: its scheduling shard and its monitoring scope.

Scheduling shards (KAI's SchedulingShard, ``--nodepool-label-key`` / ``--partition-label-value``):
the cluster is split by a node-pool label. A scheduler with partition value ``v`` sees the
Nodes, Queues and PodGroups labelled ``<key>=v``; with an empty value (the default shard) it
sees those *without* the key; with an empty key it sees everything. The selection is made by
the API server (``labelSelector`` on every list and watch), so other shards' objects never
reach this process. Pods are not filtered by partition: every pod bound to a node must be
charged to it, and a pending pod belongs to the shard of its PodGroup (the pod-grouper copies
the top owner's or the pod's node-pool label onto the PodGroup, as KAI's does). The shard's
pod-grouper only creates PodGroups of its own partition (:meth:`Scope.in_partition`), and
pods of other partitions get no Event or condition from this shard.

Selective monitoring (KAI's ``podLabelSelector`` / ``namespaceLabelSelector``,
``--pod-label-selector`` / ``--namespace-label-selector``): the pods this process may schedule
are narrowed by the API server (our ``schedulerName``, unbound, the pod label selector) and by
the namespace's labels (the informer drops pods and PodGroups of other namespaces before
storing them); pods bound to nodes are watched apart, all of them, because they use node
capacity whoever placed them. See :meth:`Scope.informer_params` and ``kai.controller.main``.

Built from the command line by ``kai.cli`` (``Scope.from_args``); read by ``kai.controller.main``
(informer parameters, the grouper's filter, the Lease name, the node pool of conditions).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kai.api import constants as C
from kai.api.selectors import EVERYTHING, Selector, SelectorError, parse_label_selector, selector_string

DEFAULT_NODE_POOL = "default"      # KAI's name of the unlabelled partition (conditions, metrics)


class ScopeError(ValueError):
    """A partition or selector flag that cannot be used; the message names the flag."""


@dataclass(frozen=True)
class Scope:
    node_pool_label_key: str = C.NODE_POOL_LABEL
    partition_label_value: str = ""
    pod_label_selector: str = ""
    namespace_label_selector: str = ""
    partition: Selector = field(init=False, repr=False, compare=False)
    pods: Selector = field(init=False, repr=False, compare=False)
    namespaces: Selector = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key, value = self.node_pool_label_key, self.partition_label_value
        try:
            if key:
                probe = f"{key}={value}" if value else f"!{key}"
                part = parse_label_selector(probe, "--nodepool-label-key / --partition-label-value")
            else:
                if value:
                    raise ScopeError("--partition-label-value needs a --nodepool-label-key")
                part = EVERYTHING
            pods = parse_label_selector(self.pod_label_selector, "--pod-label-selector")
            nss = parse_label_selector(self.namespace_label_selector, "--namespace-label-selector")
        except SelectorError as exc:
            raise ScopeError(str(exc)) from None
        object.__setattr__(self, "partition", part)
        object.__setattr__(self, "pods", pods)
        object.__setattr__(self, "namespaces", nss)

    @classmethod
    def from_args(cls, args) -> Scope:
        key = getattr(args, "nodepool_label_key", None)
        return cls(node_pool_label_key=C.NODE_POOL_LABEL if key is None else key,
                   partition_label_value=getattr(args, "partition_label_value", None) or "",
                   pod_label_selector=getattr(args, "pod_label_selector", None) or "",
                   namespace_label_selector=getattr(args, "namespace_label_selector", None) or "")

    # ------------------------------------------------------------------ partition
    @property
    def node_pool(self) -> str:
        """The partition's name in conditions and metrics: its value, or ``default``."""
        return self.partition_label_value or DEFAULT_NODE_POOL

    def in_partition(self, labels: dict[str, str] | None) -> bool:
        """Whether an object with ``labels`` (a Node, Queue or PodGroup) belongs to this shard."""
        return self.partition.matches(labels or {})

    def lease_name(self, scheduler_name: str) -> str:
        """Each shard elects its own leader: ``<scheduler-name>`` for the default shard,
        ``<scheduler-name>-<partition value>`` for the others."""
        return f"{scheduler_name}-{self.partition_label_value}" if self.partition_label_value else scheduler_name

    # ------------------------------------------------------------------ monitoring
    @property
    def selective(self) -> bool:
        """True when pods or namespaces are narrowed (selective monitoring is on)."""
        return not (self.pods.everything and self.namespaces.everything)

    def in_scope(self, pod_labels: dict[str, str] | None, namespace_labels: dict[str, str] | None) -> bool:
        """Whether a workload pod is monitored: its labels match ``--pod-label-selector`` and
        its namespace's labels ``--namespace-label-selector``."""
        return self.pods.matches(pod_labels or {}) and self.namespaces.matches(namespace_labels or {})

    def informer_params(self, scheduler_name: str = C.SCHEDULER_NAME) -> dict[str, dict[str, str]]:
        """``labelSelector`` / ``fieldSelector`` per informer kind (kai.cache.watch)."""
        out: dict[str, dict[str, str]] = {}
        part = selector_string(self.partition)
        if part:
            for kind in ("Node", "Queue", "PodGroup"):
                out[kind] = {"labelSelector": part}
        if self.selective:
            # our unbound pods, matching the pod selector (the namespace selector is applied by
            # the informer against the namespaces' labels: the server cannot select on them)
            out["Pod"] = {"labelSelector": selector_string(self.pods),
                          "fieldSelector": f"spec.schedulerName={scheduler_name},spec.nodeName="}
            # every pod on a node, whoever owns it: it uses node capacity
            out["NodePod"] = {"fieldSelector": "spec.nodeName!="}
        return out
