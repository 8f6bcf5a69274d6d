"""predicates: the filters KAI takes from kube-scheduler, and node-independent checks.

Resource fit, max pods (the ``pods`` column), readiness, cordon, nodeSelector, required
node affinity and taints are evaluated in bulk by the NodeTable's static mask and the
placement kernel. This plugin adds the per-task checks that are not node columns (invalid
KAI annotations and fields kai does not honour, a pod larger than any node, KAI's ConfigMap
predicate in kai.plugins.configmaps), registers the filters over other pods --
InterPodAffinity (kai.plugins.podaffinity), PodTopologySpread (kai.plugins.topologyspread),
NodePorts (kai.plugins.nodeports) -- KAI's legacy MIG rules (kai.plugins.legacymig),
kube-scheduler's volume filters (kai.plugins.volumebinding: VolumeBinding,
VolumeRestrictions, VolumeZone, NodeVolumeLimits), the preferred node affinity score (kai.plugins.nodeaffinity) and, with ``--restrict-node-scheduling``, the worker
role filter (kai.plugins.restrictnodes).
"""
from __future__ import annotations

import numpy as np

from kai.api.resources import format_resource
from kai.framework.plugin import Plugin, alike_stable, label_blind, register_plugin
from kai.plugins import legacymig, volumebinding
from kai.plugins.configmaps import ConfigMapPredicate
from kai.plugins.dynamicresources import unconfigured_guard
from kai.plugins.legacymig import legacy_mig_reason
from kai.plugins.nodeaffinity import preferred_node_affinity
from kai.plugins.nodeports import NodePorts
from kai.plugins.podaffinity import InterPodAffinity
from kai.plugins.restrictnodes import RestrictNodeScheduling
from kai.plugins.topologyspread import TopologySpread


@register_plugin
class Predicates(Plugin):
    name = "predicates"

    def on_session_open(self, ssn) -> None:
        alloc = ssn.allocatable
        largest = alloc.max(axis=1) if alloc.shape[1] else np.zeros(alloc.shape[0])
        names = ssn.registry.names

        fits_somewhere: set[bytes] = set()      # requests no larger than the largest node, per column

        @label_blind
        @alike_stable               # the pod's invalid reason and request against fixed node sizes
        def pre_predicate(task, job):
            if task._more is not None:          # (most pods have no extras)
                why = task.invalid_reason or legacy_mig_reason(task)
                if why:
                    return why
            req = task.req_vec(alloc.shape[0])
            key = req.tobytes()
            if key in fits_somewhere:
                return None
            too_big = np.flatnonzero(req > largest + 1e-9)
            if not too_big.size:
                fits_somewhere.add(key)
            if too_big.size:
                c = int(too_big[0])
                return (f"pod {task.key} requests {format_resource(names[c], req[c])} {names[c]}, "
                        f"more than any node has ({format_resource(names[c], largest[c])})")
            return None

        ssn.pre_predicate_fns.append(pre_predicate)
        ssn.pre_predicate_fns.append(ConfigMapPredicate(ssn.state.storage))
        if ssn.config is not None and ssn.config.plugin_args("dynamicresources") is None:
            ssn.pre_predicate_fns.append(unconfigured_guard)      # pods with claims wait (fail closed)
        ssn.node_predicates.extend([InterPodAffinity(ssn), TopologySpread(ssn), NodePorts(ssn)])
        if ssn.config is not None and ssn.config.restrict_node_scheduling:
            ssn.node_predicates.append(RestrictNodeScheduling(ssn))
        volumebinding.register(ssn)
        legacymig.register(ssn)
        ssn.node_order_fns.append(preferred_node_affinity(ssn))
