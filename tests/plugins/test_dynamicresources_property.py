"""Invariants of DRA scheduling over random clusters and several cycles (hypothesis):

- no device is allocated to two claims, within a cycle or across cycles;
- every allocation holds: the devices are on the pod's node, match the request's selector, the
  request's count, and the claim's matchAttribute constraint;
- a gang is bound all or nothing (a cycle that binds pods of a job leaves at least minMember of
  them on nodes);
- the session allocator's device use is exactly the union of the claims it holds when the
  session closes (no device leaked or double counted by evictions, moves and rollbacks).

Clusters mix queues with GPU quotas, priorities (so reclaim, preempt and consolidation run),
claim templates (with and without selectors and constraints) and shared claims.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from hypothesis import HealthCheck, event, given, settings, strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import config, flatten, job, node, queue  # noqa: E402
from test_dynamicresources import DRIVER, claim, claims_spec, device_class, slice_, template  # noqa: E402

MODELS = ("A100", "H100")


@st.composite
def clusters(draw):
    docs = [device_class()]
    n_nodes = draw(st.integers(1, 4))
    for i in range(n_nodes):
        docs.append(node(f"n{i}", gpu=0, cpu="16"))
        n_dev = draw(st.integers(0, 4))
        if n_dev:
            s = slice_(f"n{i}", n_dev)
            for d in s["spec"]["devices"]:
                d["attributes"]["model"] = {"string": draw(st.sampled_from(MODELS))}
                d["attributes"]["numa"] = {"int": draw(st.integers(0, 1))}
            docs.append(s)
    queues = ["q0", "q1"]
    docs.append(queue("q0", gpu=(draw(st.integers(1, 4)), -1)))
    docs.append(queue("q1", gpu=(0, -1)))
    specs = {}
    for t in range(draw(st.integers(1, 3))):
        count = draw(st.integers(1, 2))
        model = draw(st.sampled_from((None,) + MODELS))
        numa = draw(st.booleans()) and count > 1
        sels = [f'device.attributes["{DRIVER}"].model == "{model}"'] if model else []
        cons = [{"matchAttribute": f"{DRIVER}/numa"}] if numa else []
        docs.append(template(f"t{t}", count=count, selectors=sels, constraints=cons))
        specs[f"t{t}"] = (count, model, numa)
    shared = draw(st.booleans())
    if shared:
        docs.append(claim("shared"))
        specs["shared"] = (1, None, False)
    waves = ([], [])
    for j in range(draw(st.integers(1, 7))):
        pods = draw(st.integers(1, 3))
        min_member = draw(st.integers(1, pods))
        use = draw(st.sampled_from(sorted(specs)))
        wave = draw(st.integers(0, 1))
        # the second wave outranks the first (preempt) or comes from the queue with quota (reclaim)
        prio = "train" if wave == 0 else draw(st.sampled_from(["train", "build"]))
        q = "q1" if wave == 0 else draw(st.sampled_from(queues))
        ref = claims_spec(claim_name="shared") if use == "shared" else claims_spec(template_name=use)
        jd = job(f"j{j}", queue=q, pods=pods, min_member=min_member, priority_class=prio, cpu="1", extra_spec=ref)
        for d in jd:
            if d["kind"] == "Pod":
                d["metadata"]["uid"] = f"uid-{d['metadata']['name']}"
        waves[wave].append(jd)
    return flatten(docs + waves[0]), flatten(waves[1]), specs


def _load(docs):
    import tempfile

    import yaml

    from kai.sim.loader import load_manifests
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump_all(docs, f)
        f.flush()
        return load_manifests([f.name])


def _state(docs):
    from kai.sim.simulator import build_state
    return build_state(_load(docs))


def _devices_of(inv, results):
    return [inv.row_of[(r["driver"], r["pool"], r["device"])] for r in results]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_dra_invariants_over_cycles(cluster):
    from kai.plugins import dynamicresources as D
    from kai.scheduler import Scheduler
    from kai.sim.simulator import SimCache, _advance

    docs, later, specs = cluster
    state = _state(docs)
    specs_by_pod = {f"default/{d['metadata']['name']}": d["spec"]["resourceClaims"][0].get("resourceClaimTemplateName")
                    for d in docs + later if d["kind"] == "Pod"}
    sched = Scheduler(state, config())
    preds = []
    orig = D.DynamicResources.on_session_open

    def spy(self, ssn):
        orig(self, ssn)
        preds.extend(p for p in ssn.node_predicates if isinstance(p, D.ClaimsPredicate))

    D.DynamicResources.on_session_open = spy
    try:
        for cycle in range(4):
            if cycle == 1 and later:                       # the second wave arrives
                m = _load(later)
                for pg in m.objects["PodGroup"]:
                    state.upsert_podgroup(pg)
                for p in m.objects["Pod"]:
                    state.upsert_pod(p)
            preds.clear()
            cache = SimCache(state)
            result = sched.run_cycle(cache, now=1_700_000_000.0 + cycle)
            for pred in preds:                             # the session allocator is consistent
                al = pred.al
                used = np.zeros_like(al.used)
                for c in al.allocated.values():
                    for row, adm in zip(c.rows, c.admin):
                        if row >= 0 and not adm:
                            assert used[row] == 0, "a device held by two claims in the session"
                            used[row] = 1
                assert (used == al.used).all()
            bound = {d.pod: d.node for d in result.bindings}
            event(f"cycle {cycle}: {'bindings' if bound else 'no bindings'}, "
                  f"{'evictions' if result.evictions else 'no evictions'}")
            for key in {d.pod.rsplit("-", 1)[0] for d in result.bindings}:   # gangs: all or nothing
                on_nodes = sum(1 for t in state.jobs[key].tasks.values() if t.node_name)
                assert on_nodes >= state.podgroups[key].spec.min_member, (key, on_nodes)
            _advance(state, result, cache.claims)
            store = state.dra
            inv = store.base_allocator(state.nodes).inv
            taken: dict[int, str] = {}
            for key, c in store.claims.items():            # no device twice, across cycles
                alloc = c.status.allocation
                if alloc is None:
                    continue
                for row in _devices_of(inv, [msgspec_result(r) for r in alloc.devices.results]):
                    assert row not in taken, f"device row {row} allocated to {taken[row]} and {key}"
                    taken[row] = key
            for pod_key, node_name in bound.items():       # every new allocation holds
                got = cache.claims.get(pod_key)
                if got is None:
                    continue
                for c in got.claims:
                    name = c.key.split("/", 1)[1]
                    spec_name = "shared" if name == "shared" else specs_by_pod[pod_key]
                    count, model, numa = specs[spec_name]
                    rows = _devices_of(inv, c.results)
                    assert len(rows) == count
                    for row in rows:
                        assert inv.dev_node[row] == state.nodes.by_name[node_name].idx
                        if model:
                            assert inv.attrs[row][f"{DRIVER}/model"][1] == model
                    if numa:
                        assert len({inv.attrs[r][f"{DRIVER}/numa"][1] for r in rows}) == 1
    finally:
        D.DynamicResources.on_session_open = orig


def msgspec_result(r):
    return {"driver": r.driver, "pool": r.pool, "device": r.device}
