"""DraStore: informer events in, inventory rebuilt only when slices or nodes change, claim
allocations tracked incrementally, sessions get independent allocators."""
from kai.cache.dra_store import DraStore
from kai.cache.watch import RESOURCES
from kai.testing import dra as B

DOM = B.DRIVER


def store():
    s = DraStore()
    s.load({"ResourceSlice": [B.gpu_slice("n0", 2), B.gpu_slice("n1", 2)],
            "DeviceClass": [B.device_class("gpu", f'device.driver == "{DOM}"')],
            "ResourceClaimTemplate": [B.template("t", B.request("g", "gpu", 1), namespace="ns")]})
    return s


def test_informers_registered_for_the_four_kinds():
    for kind, plural in (("ResourceSlice", "resourceslices"), ("DeviceClass", "deviceclasses"),
                         ("ResourceClaim", "resourceclaims"), ("ResourceClaimTemplate", "resourceclaimtemplates")):
        r = RESOURCES[kind]
        assert r.path == f"/apis/resource.k8s.io/v1/{plural}" and r.optional and r.type.__name__ == kind


def test_inventory_is_cached_until_slices_change():
    s = store()
    inv = s.inventory(["n0", "n1"])
    assert inv.n_devices == 4 and s.inventory(["n0", "n1"]) is inv
    s.apply("ResourceSlice", "DELETED", B.gpu_slice("n1", 2))
    inv2 = s.inventory(["n0", "n1"])
    assert inv2 is not inv and inv2.n_devices == 2
    assert s.inventory(["n0"]).n_nodes == 1                       # the node set is part of the key


def test_claim_events_update_device_use_and_sessions_are_forks():
    s = store()
    a1 = s.allocator(["n0", "n1"])
    assert a1.used.sum() == 0
    status = {"allocation": {"devices": {"results": [{"request": "g", "driver": DOM, "pool": "n1", "device": "gpu-1"}]}}}
    s.apply("ResourceClaim", "ADDED", B.claim("c", B.request("g", "gpu", 1), namespace="ns", status=status))
    a2 = s.allocator(["n0", "n1"])
    assert a2.used.tolist() == [0, 0, 0, 1] and a1.used.sum() == 0
    a2.used[0] = 1                                               # a session's changes stay in its fork
    assert s.allocator(["n0", "n1"]).used.tolist() == [0, 0, 0, 1]
    s.apply("ResourceClaim", "DELETED", B.claim("c", B.request("g", "gpu", 1), namespace="ns"))
    assert s.allocator(["n0", "n1"]).used.sum() == 0


def test_pod_claims_from_templates():
    s = store()
    pod = B.pod_with_claims("p", "ns", templates={"g": "t"})
    assert "to be created" in s.pod_claims(pod)[0].problem
    got = s.pod_claims(pod, generate=True)[0]
    al = s.allocator(["n0", "n1"])
    req = al.prepare([got])
    assert al.feasible(req).tolist() == [1, 1]
