"""One pod's PodGroup from owner manifests held in memory (tests, benchmarks, tools).

``group_for_pod(pod, owners)`` is the PodGroup KAI's pod-grouper makes for ``pod`` given
``owners``, a mapping (kind, namespace, name) -> manifest of the objects it may read; None
when the pod is an orphan naming its PodGroup (KAI leaves those alone). A pod that cannot
be grouped raises :class:`kai.podgrouper.metadata.GroupingError`. The rules are in
``kai.podgrouper.hub`` and ``kai.podgrouper.plugins``; the live controller is
``kai.podgrouper.controller``, ``kai simulate`` uses ``kai.podgrouper.offline``.
"""
from __future__ import annotations

from typing import Any

from kai.api import constants as C
from kai.api.k8s import Pod, PodGroup
from kai.podgrouper.defaults import GrouperConfig
from kai.podgrouper.hub import podgroup_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata, to_podgroup
from kai.podgrouper.objects import ManifestReader

Owners = dict[tuple[str, str, str], dict[str, Any]]

__all__ = ["GroupingError", "Owners", "group_for_pod", "metadata_for_pod"]


def metadata_for_pod(pod: Pod, owners: Owners | None = None, config: GrouperConfig | None = None,
                     reader: ManifestReader | None = None) -> PodGroupMetadata:
    return podgroup_metadata(pod, reader or ManifestReader(owners or {}, [pod]), config)


def group_for_pod(pod: Pod, owners: Owners | None = None, config: GrouperConfig | None = None) -> PodGroup | None:
    if C.POD_GROUP_ANNOTATION in pod.metadata.annotations and not pod.metadata.owner_references:
        return None
    return to_podgroup(metadata_for_pod(pod, owners, config), creation_timestamp=pod.metadata.creation_timestamp)
