"""Fuzzed objects through the live path (issue 16): informer decode and validation ->
controller (the single writer) -> ClusterState -> a scheduling cycle.

Malformed and extreme Pods, Nodes, Queues, PodGroups, PriorityClasses and Topologies, as the
watch would deliver them (JSON bytes): none raises anywhere; each is either decoded, validated
and applied, or reported INVALID (the controller keeps it in ``invalid``, emits an Event and
counts it); the good objects are always scheduled. The API server is not involved (its own
validation would hide most of these); writes go to a RecordingCache and the status writer has
no workers.

Examples: KAI_FUZZ_EXAMPLES (default 6,000; with tests/sim/test_fuzz_simulate.py 10,000 in CI). Derandomized unless KAI_FUZZ_RANDOM=1.
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings

from kai.cache.cluster_state import ClusterState
from kai.cache.decisions import RecordingCache
from kai.cache.kubeclient import Credentials, KubeClient
from kai.cache.watch import ADDED, RESOURCES, Informer
from kai.config import default_config
from kai.controller.main import Controller
from kai.testing.fuzzobjects import good_pod_keys, scenarios

EXAMPLES = int(os.environ.get("KAI_FUZZ_EXAMPLES", "6000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=os.environ.get("KAI_FUZZ_RANDOM") != "1",
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def ctl():
    client = KubeClient(Credentials("https://127.0.0.1:9"))      # never called: no leader cycle, no status workers
    c = Controller(client, default_config(), status_workers=0, group_pods=False, bind_workers=1)
    yield c
    c.binder.shutdown(wait=False)


def _in_state(st: ClusterState, kind: str, obj) -> bool:
    return {"Node": lambda: obj.metadata.name in st.nodes.by_name,
            "Pod": lambda: True,        # kept or not (another scheduler's pending pod), it was applied
            "PodGroup": lambda: f"{obj.metadata.namespace or 'default'}/{obj.metadata.name}" in st.podgroups,
            "Queue": lambda: obj.metadata.name in st.queues,
            "PriorityClass": lambda: obj.metadata.name in st.priority_classes,
            "Topology": lambda: obj.metadata.name in st.topologies}[kind]()


def _key_of(obj) -> str:
    m = obj.metadata
    return f"{m.namespace}/{m.name}" if m.namespace else m.name


@FUZZ
@given(scenarios())
def test_fuzzed_objects_through_informer_controller_and_cycle(ctl, sc):
    ctl.state = ClusterState(scheduler_name=ctl.scheduler_name)
    ctl.scheduler.state = ctl.state
    ctl.invalid.clear()
    ctl.guard_failures = 0
    informers = {k: Informer(ctl.client, r, ctl.events) for k, r in RESOURCES.items()}
    decoded = []
    for i, obj in enumerate(sc.objects):
        if isinstance(obj.get("metadata"), dict) and "uid" not in obj["metadata"]:
            obj["metadata"]["uid"] = f"uid-{i}"
        raw = json.dumps(obj).encode()           # NaN/Infinity become tokens msgspec rejects, as from a bad server
        got = informers[obj["kind"]]._decode(raw)
        if got is not None:
            ctl.events.put((obj["kind"], ADDED, got))
        decoded.append(got)
    ctl.drain()
    assert ctl.guard_failures == 0, sc.notes
    for i, (obj, got) in enumerate(zip(sc.objects, decoded)):
        if got is None:              # reported: named in `invalid` (the Event and metric come from there)
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            key = None
            if isinstance(meta.get("name"), str) and isinstance(meta.get("namespace", ""), str):
                key = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
            # a good version of the same object later in the scenario supersedes the bad one
            if key is not None and any(
                    later is not None and o["kind"] == obj["kind"] and _key_of(later) == key
                    for o, later in zip(sc.objects[i + 1:], decoded[i + 1:])):
                assert key not in ctl.invalid.get(obj["kind"], {}), (sc.notes, key, ctl.invalid)
                continue
            assert ctl.invalid.get(obj["kind"]), (sc.notes, obj["kind"])
            if key is not None:
                assert key in ctl.invalid[obj["kind"]], (sc.notes, key, ctl.invalid)
        else:
            assert _in_state(ctl.state, obj["kind"], got), (sc.notes, obj["kind"])
    result = ctl.scheduler.run_cycle(RecordingCache(ctl.state), now=1_704_067_200.0)
    assert set(good_pod_keys()) <= {d.pod for d in result.bindings}, (sc.notes, result.unschedulable)
