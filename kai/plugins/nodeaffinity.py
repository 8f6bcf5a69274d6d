"""Preferred node affinity in the score (kube-scheduler's NodeAffinity Score; KAI only filters).

Per node, the summed weights of the pod's matching preferred terms (NodeTable), normalized as
kube-scheduler does (``score * 100 / max``, integer, over the nodes the pod may use), then
scaled into KAI's K8sPlugins band: 100 = one K8sPlugins unit (10^5), above GPU sharing (10^3)
and topology (10^4) preferences, below pod-affinity counts. Registered by ``predicates`` as a
NodeOrder function; pods without preferred terms are not touched (their fast paths stay).
"""
from __future__ import annotations

import numpy as np

from kai.framework.plugin import alike_stable, label_blind
from kai.plugins.podaffinity import K8S_PLUGINS_SCORE


def preferred_node_affinity(ssn):
    table = ssn.state.nodes
    n = ssn.allocatable.shape[1]

    @label_blind
    @alike_stable               # the pod's terms over fixed node labels, within the mask given
    def score(task, job, mask: np.ndarray) -> np.ndarray | None:
        aff = task.pod.spec.affinity
        if aff is None or aff.node_affinity is None:
            return None                      # no preferred terms (the table would say None)
        raw = table.preferred_affinity_weights(task.pod)
        if raw is None:
            return None
        raw = raw[:n]
        top = float(raw[mask.astype(bool)].max(initial=0.0))
        if top <= 0:
            return None
        return np.floor(raw * 100.0 / top) * (K8S_PLUGINS_SCORE / 100.0)

    return score
