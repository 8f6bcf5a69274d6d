"""Structured allocation scenarios (one behaviour per test) and allocator-level properties."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai.dra.allocator import DraAllocator, PodClaim, resolve_pod_claims
from kai.dra.cel import compile_expression
from kai.dra.inventory import build_inventory
from kai.testing import dra as B

DOM = B.DRIVER
GPU = B.device_class("gpu", f'device.driver == "{DOM}"')
H100 = B.device_class("h100", f'device.driver == "{DOM}" && device.attributes["{DOM}"].model == "H100"')


def allocator(slices, nodes=("n0", "n1"), classes=(GPU, H100), claims=(), labels=None):
    inv = build_inventory(slices, list(nodes), labels)
    return DraAllocator(inv, {c.metadata.name: c for c in classes}, claims)


def pc(c):
    return PodClaim(c.metadata.name, f"{c.metadata.namespace}/{c.metadata.name}", c)


def devices_of(a):
    return [(r["pool"], r["device"]) for c in a.claims for r in c.results]


def test_identical_gpus_fill_nodes_then_explain():
    al = allocator([B.gpu_slice("n0", 4), B.gpu_slice("n1", 4)])
    c4 = lambda i: B.claim(f"c{i}", B.request("gpu", "gpu", 4))
    r = al.prepare([pc(c4(0))])
    assert r.exact_by_counts and al.feasible(r).tolist() == [1, 1]
    a = al.allocate(r, 0)
    assert a.bindings() == [{"claim": "default/c0", "results": [
        {"request": "gpu", "driver": DOM, "pool": "n0", "device": f"gpu-{i}"} for i in range(4)]}]
    r1 = al.prepare([pc(c4(1))])
    assert al.feasible(r1).tolist() == [0, 1]
    al.allocate(r1, 1)
    r2 = al.prepare([pc(c4(2))])
    assert al.feasible(r2).tolist() == [0, 0]
    assert "request gpu: needs 4 device(s) of class gpu on one node; 8 match, 8 in use, at most 0 free" \
        in al.explain(r2)


def test_class_and_request_selectors():
    al = allocator([B.gpu_slice("n0", 2, model="A100"), B.gpu_slice("n1", 2, model="H100")])
    r = al.prepare([pc(B.claim("c", B.request("g", "h100", 1)))])
    assert al.feasible(r).tolist() == [0, 1]
    r = al.prepare([pc(B.claim("c", B.request("g", "gpu", 1, f'device.attributes["{DOM}"].index == 1')))])
    a = al.allocate(r, 0)
    assert devices_of(a) == [("n0", "gpu-1")]


def test_first_available_takes_the_first_alternative_that_fits():
    al = allocator([B.gpu_slice("n0", 2)], nodes=("n0",))
    c = B.claim("c", B.first_available("gpu", ("eight", "gpu", 8), ("two", "gpu", 2)))
    r = al.prepare([pc(c)])
    a = al.allocate(r, 0)
    assert [x["request"] for x in a.claims[0].results] == ["gpu/two", "gpu/two"]


def test_all_mode_needs_every_matching_device_free():
    al = allocator([B.gpu_slice("n0", 3), B.gpu_slice("n1", 2)])
    al.allocate(al.prepare([pc(B.claim("x", B.request("g", "gpu", 1)))]), 1)
    r = al.prepare([pc(B.claim("c", {"name": "all", "exactly": B.exactly("gpu", mode="All")}))])
    assert al.feasible(r).tolist() == [1, 0]
    assert len(al.allocate(r, 0).claims[0].results) == 3


def test_all_mode_refuses_incomplete_pools():
    s = B.resource_slice("s", B.gpu_devices(2), node="n0", count=2)     # 1 of 2 slices published
    al = allocator([s], nodes=("n0",))
    assert al.feasible(al.prepare([pc(B.claim("c", {"name": "a", "exactly": B.exactly("gpu", mode="All")}))])
                       ).tolist() == [0]
    r = al.prepare([pc(B.claim("d", B.request("g", "gpu", 1)))])
    assert al.feasible(r).tolist() == [0]
    assert "incomplete" in al.explain(r)


def test_newest_generation_only():
    old = B.resource_slice("old", B.gpu_devices(4), node="n0", generation=1)
    new = B.resource_slice("new", B.gpu_devices(1), node="n0", generation=2)
    al = allocator([old, new], nodes=("n0",))
    assert al.inv.n_devices == 1
    assert al.feasible(al.prepare([pc(B.claim("c", B.request("g", "gpu", 2)))])).tolist() == [0]


def test_match_attribute_constraint():
    devs = [B.device(f"gpu-{i}", {"numa": i % 2}) for i in range(4)]        # numa 0,1,0,1
    al = allocator([B.resource_slice("s", devs, node="n0")], nodes=("n0",))
    c = B.claim("c", B.request("a", "gpu", 1), B.request("b", "gpu", 1),
                constraints=[{"matchAttribute": f"{DOM}/numa"}])
    r = al.prepare([pc(c)])
    assert not r.exact_by_counts
    a = al.allocate(r, 0)
    assert devices_of(a) == [("n0", "gpu-0"), ("n0", "gpu-2")]
    c3 = B.claim("d", B.request("a", "gpu", 2), B.request("b", "gpu", 1),
                 constraints=[{"requests": ["a", "b"], "matchAttribute": f"{DOM}/numa"}])  # 3 of numa 1: no
    assert al.feasible(al.prepare([pc(c3)])).tolist() == [0]


def test_admin_access_uses_devices_in_use():
    al = allocator([B.gpu_slice("n0", 1)], nodes=("n0",))
    al.allocate(al.prepare([pc(B.claim("x", B.request("g", "gpu", 1)))]), 0)
    r = al.prepare([pc(B.claim("adm", {"name": "g", "exactly": B.exactly("gpu", 1, admin=True)}))])
    a = al.allocate(r, 0)
    assert a.claims[0].results[0]["adminAccess"] is True
    assert al.used.sum() == 1                       # admin access does not take the device


def test_allocated_claim_sends_the_pod_to_its_devices():
    status = {"allocation": {"devices": {"results": [{"request": "g", "driver": DOM, "pool": "n1",
                                                      "device": "gpu-0"}]}},
              "reservedFor": [{"resource": "pods", "name": "other", "uid": "u-other"}]}
    shared = B.claim("shared", B.request("g", "gpu", 1), status=status)
    al = allocator([B.gpu_slice("n0", 1), B.gpu_slice("n1", 1)], claims=[shared])
    assert al.used.tolist() == [0, 1]
    r = al.prepare([pc(shared)])
    assert al.feasible(r).tolist() == [0, 1]
    a = al.allocate(r, 1)
    assert not a.claims[0].new and a.claims[0].results[0]["device"] == "gpu-0"


def test_claim_shared_within_a_session():
    al = allocator([B.gpu_slice("n0", 1), B.gpu_slice("n1", 1)])
    shared = B.claim("shared", B.request("g", "gpu", 1))
    al.allocate(al.prepare([pc(shared)]), 1)
    assert al.feasible(al.prepare([pc(shared)])).tolist() == [0, 1]


def test_reserved_for_full():
    status = {"allocation": {"devices": {"results": [{"request": "g", "driver": DOM, "pool": "n0", "device": "gpu-0"}]}},
              "reservedFor": [{"resource": "pods", "name": f"p{i}", "uid": f"u{i}"} for i in range(256)]}
    c = B.claim("c", B.request("g", "gpu", 1), status=status)
    al = allocator([B.gpu_slice("n0", 1)], nodes=("n0",), claims=[c])
    assert "reserved for 256 consumers" in al.explain(al.prepare([pc(c)], pod_uid="new"))
    assert al.feasible(al.prepare([pc(c)], pod_uid="u3")).tolist() == [1]


def test_network_attached_slices():
    sel = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r1"]}]}]}
    rack = B.resource_slice("rack", [B.device("nic-0")], driver="net.example.com", pool="rack1", node_selector=sel)
    every = B.resource_slice("all", [B.device("fabric-0")], driver="fab.example.com", pool="fab", all_nodes=True)
    nic = B.device_class("nic", 'device.driver == "net.example.com"')
    fab = B.device_class("fab", 'device.driver == "fab.example.com"')
    al = allocator([rack, every], nodes=("n0", "n1", "n2"), classes=(nic, fab),
                   labels=[{"rack": "r0"}, {"rack": "r1"}, {"rack": "r1"}])
    r = al.prepare([pc(B.claim("c", B.request("n", "nic", 1)))])
    assert al.feasible(r).tolist() == [0, 1, 1]
    a = al.allocate(r, 2)
    assert a.claims[0].node_selector.node_selector_terms[0].match_expressions[0].key == "rack"
    assert al.feasible(al.prepare([pc(B.claim("d", B.request("n", "nic", 1)))])).tolist() == [0, 0, 0]
    b = al.allocate(al.prepare([pc(B.claim("f", B.request("f", "fab", 1)))]), 0)
    assert b.claims[0].node_selector is None


@pytest.mark.parametrize("claim,reason", [
    (B.claim("c", B.request("g", "gpu", 1), constraints=[{"distinctAttribute": f"{DOM}/numa"}]), "distinctAttribute"),
    (B.claim("c", {"name": "g", "exactly": {**B.exactly("gpu", 1), "capacity": {"requests": {"memory": "1Gi"}}}}),
     "capacity.requests"),
    (B.claim("c", B.request("g", "nope", 1)), "device class 'nope' not found"),
    (B.claim("c", B.request("g", "gpu", 33)), "more than the 32 a claim may hold"),
    (B.claim("c", B.request("g", "gpu", 1, "device.driver ==")), "CEL compile error"),
])
def test_unsupported_or_invalid_fails_closed(claim, reason):
    al = allocator([B.gpu_slice("n0", 2)], nodes=("n0",))
    r = al.prepare([pc(claim)])
    assert al.feasible(r).tolist() == [0]
    assert reason in al.explain(r)


def test_devices_with_unsupported_fields_or_taints_are_not_picked():
    devs = [B.device("counters", consumesCounters=[{"counterSet": "s", "counters": {}}]),
            B.device("tainted", taints=[{"key": "broken", "effect": "NoSchedule"}])]
    al = allocator([B.resource_slice("s", devs, node="n0")], nodes=("n0",))
    r = al.prepare([pc(B.claim("c", B.request("g", "gpu", 1)))])
    a = al.allocate(al.prepare([pc(B.claim("c", {"name": "g", "exactly": B.exactly(
        "gpu", 1, tolerations=[{"key": "broken", "operator": "Exists"}])}))]), 0)
    assert devices_of(a) == [("n0", "tainted")]
    assert al.feasible(r).tolist() == [0]
    assert "consumesCounters" in al.explain(al.prepare([pc(B.claim("e", B.request("g", "gpu", 1,
                                                                                  'device.driver != "x"')))]))


def test_cel_runtime_error_is_named():
    al = allocator([B.gpu_slice("n0", 2)], nodes=("n0",))
    r = al.prepare([pc(B.claim("c", B.request("g", "gpu", 1, f'device.attributes["{DOM}"].nosuch == 1')))])
    assert al.feasible(r).tolist() == [0]
    assert "CEL runtime error" in al.explain(r) and "nosuch" in al.explain(r)


def test_config_in_results():
    cls = B.device_class("gpu", f'device.driver == "{DOM}"',
                         config=[{"opaque": {"driver": DOM, "parameters": {"mode": "fast"}}}])
    c = B.claim("c", B.request("g", "gpu", 1), config=[{"requests": ["g"], "opaque": {"driver": DOM,
                                                                                       "parameters": {"x": 1}}}])
    al = allocator([B.gpu_slice("n0", 1)], nodes=("n0",), classes=(cls,))
    cfg = al.allocate(al.prepare([pc(c)]), 0).claims[0].config
    assert [x["source"] for x in cfg] == ["FromClass", "FromClaim"]
    assert cfg[0]["opaque"]["parameters"] == {"mode": "fast"} and cfg[0]["requests"] == []


def test_undo_rollback_and_gang_all_or_nothing():
    al = allocator([B.gpu_slice("n0", 2), B.gpu_slice("n1", 2)])
    mark = al.checkpoint()
    a = al.allocate(al.prepare([pc(B.claim("a", B.request("g", "gpu", 2)))]), 0)
    al.undo(a)
    assert al.used.sum() == 0 and "default/a" not in al.allocated
    reqs = [al.prepare([pc(B.claim(f"w{i}", B.request("g", "gpu", 2)))]) for i in range(3)]
    assert al.allocate_gang([(reqs[0], 0), (reqs[1], 1), (reqs[2], 1)]) is None
    assert al.used.sum() == 0 and not al.allocated
    got = al.allocate_gang([(reqs[0], 0), (reqs[1], 1)])
    assert len(got) == 2 and al.used.sum() == 4
    al.rollback(mark)
    assert al.used.sum() == 0


def test_free_claim_and_fork():
    al = allocator([B.gpu_slice("n0", 1)], nodes=("n0",))
    al.allocate(al.prepare([pc(B.claim("a", B.request("g", "gpu", 1)))]), 0)
    s = al.fork()
    mark = s.free_claim("default/a")
    assert s.used.sum() == 0 and al.used.sum() == 1
    s.rollback(mark)
    assert s.used.sum() == 1


def test_resolve_pod_claims():
    t = B.template("gpu-t", B.request("g", "gpu", 1), namespace="ns")
    shared = B.claim("shared", B.request("g", "gpu", 1), namespace="ns")
    pod = B.pod_with_claims("p", "ns", claims={"s": "shared"}, templates={"g": "gpu-t"})
    got = resolve_pod_claims(pod, {"ns/shared": shared}, {"ns/gpu-t": t})
    assert got[0].claim is shared and "to be created" in got[1].problem
    gen = resolve_pod_claims(pod, {"ns/shared": shared}, {"ns/gpu-t": t}, generate=True)[1]
    assert gen.generated and gen.key == "ns/p-g" and gen.claim.spec.devices.requests[0].name == "g"
    missing = resolve_pod_claims(B.pod_with_claims("q", "ns", claims={"x": "nope"}), {}, {})
    assert missing[0].problem == "resource claim ns/nope not found"


# --- property: random clusters and pods ---------------------------------------------------

SELECTORS = ["", f'device.attributes["{DOM}"].model == "H100"', f'device.attributes["{DOM}"].index < 2',
             f'device.capacity["{DOM}"].memory.compareTo(quantity("40Gi")) >= 0',
             f'device.attributes["{DOM}"].model.startsWith("A")']


@st.composite
def clusters(draw):
    n_nodes = draw(st.integers(1, 4))
    slices = []
    for n in range(n_nodes):
        devs = [B.device(f"gpu-{i}", {"model": draw(st.sampled_from(["A100", "H100"])), "index": i,
                                      "numa": draw(st.integers(0, 1))},
                         {"memory": draw(st.sampled_from(["40Gi", "80Gi", "20Gi"]))})
                for i in range(draw(st.integers(0, 5)))]
        slices.append(B.resource_slice(f"s{n}", devs, node=f"n{n}"))
    pods = []
    for p in range(draw(st.integers(1, 6))):
        claims = []
        for c in range(draw(st.integers(1, 2))):
            reqs = []
            for q in range(draw(st.integers(1, 2))):
                sel = draw(st.sampled_from(SELECTORS))
                if draw(st.integers(0, 4)) == 0:
                    reqs.append(B.first_available(f"r{q}", ("many", "gpu", 3), ("one", "gpu", 1)))
                else:
                    reqs.append(B.request(f"r{q}", "gpu", draw(st.integers(1, 3)), *([sel] if sel else [])))
            cons = [{"matchAttribute": f"{DOM}/numa"}] if draw(st.booleans()) else []
            claims.append(B.claim(f"p{p}c{c}", *reqs, constraints=cons))
        pods.append(claims)
    return slices, [f"n{n}" for n in range(n_nodes)], pods


def selector_holds(expr, inv, row):
    if not expr:
        return True
    return compile_expression(expr).evaluate(inv.cel_device(row, compile_expression(expr).domains)) is True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=clusters(), gang=st.booleans())
def test_allocations_are_valid(case, gang):
    slices, nodes, pods = case
    al = allocator(slices, nodes=nodes)
    inv = al.inv
    owner = {}
    decisions = []
    for claims in pods:
        req = al.prepare([pc(c) for c in claims])
        mask = al.feasible(req)
        # the mask is exact: every feasible node can be allocated, no other node can
        for n in range(len(nodes)):
            mark = al.checkpoint()
            got = al.allocate(req, n)
            assert (got is not None) == bool(mask[n])
            al.rollback(mark)
        if not mask.any():
            assert al.explain(req)
            continue
        node = int(np.flatnonzero(mask)[-1])
        if gang:
            decisions.append((req, node))
            continue
        a = al.allocate(req, node)
        for c, spec in zip(a.claims, claims):
            for res in c.results:
                row = inv.row_of[(res["driver"], res["pool"], res["device"])]
                assert inv.dev_node[row] == node
                assert row not in owner, "device allocated twice"
                owner[row] = c.key
                name = res["request"].split("/")[0]
                rq = next(r for r in spec.spec.devices.requests if r.name == name)
                sels = [s.cel.expression for s in rq.exactly.selectors] if rq.exactly else []
                assert all(selector_holds(e, inv, row) for e in sels)
            if spec.spec.devices.constraints:
                vals = {inv.attrs[inv.row_of[(r["driver"], r["pool"], r["device"])]].get(f"{DOM}/numa")
                        for r in c.results}
                assert len(vals) == 1
    assert int(al.used.sum()) == len(owner) or gang
    if gang and decisions:
        before = al.used.copy()
        got = al.allocate_gang(decisions)
        if got is None:
            assert (al.used == before).all() and not any(k.startswith("default/p") for k in al.allocated)
        else:
            rows = [inv.row_of[(r["driver"], r["pool"], r["device"])] for a in got for c in a.claims for r in c.results]
            assert len(rows) == len(set(rows)) == int(al.used.sum())
