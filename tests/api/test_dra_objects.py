"""resource.k8s.io/v1 models: decoding API JSON, builtin-named fields, validation messages."""
import msgspec
import pytest

from kai.api.dra import DRA_KINDS, DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice, \
    attribute_value, validate
from kai.api.k8s import Pod
from kai.testing import dra as B

SLICE_JSON = b"""{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
 "metadata": {"name": "node-1-gpu", "resourceVersion": "7"},
 "spec": {"driver": "gpu.example.com", "nodeName": "node-1",
          "pool": {"name": "node-1", "generation": 3, "resourceSliceCount": 1},
          "devices": [{"name": "gpu-0",
                       "attributes": {"model": {"string": "A100"}, "index": {"int": 0}, "mig": {"bool": false},
                                      "driverVersion": {"version": "1.2.3"}},
                       "capacity": {"memory": {"value": "80Gi"}},
                       "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}],
                       "futureField": 1}]}}"""


def test_slice_decodes_from_api_json():
    s = msgspec.json.decode(SLICE_JSON, type=ResourceSlice)
    assert s.spec.node_name == "node-1" and s.spec.pool.generation == 3
    d = s.spec.devices[0]
    assert attribute_value(d.attributes["model"]) == ("string", "A100")
    assert attribute_value(d.attributes["index"]) == ("int", 0)
    assert attribute_value(d.attributes["mig"]) == ("bool", False)
    assert attribute_value(d.attributes["driverVersion"]) == ("version", "1.2.3")
    assert d.capacity["memory"].value == "80Gi"
    assert d.taints[0].effect == "NoSchedule"
    # builtin-named fields keep their JSON names when encoded back
    assert b'"int":0' in msgspec.json.encode(d.attributes["index"])


def test_claim_with_first_available_and_status():
    c = msgspec.convert({"metadata": {"name": "c", "namespace": "ns"}, "spec": {"devices": {
        "requests": [{"name": "gpu", "firstAvailable": [{"name": "big", "deviceClassName": "gpu", "count": 2},
                                                        {"name": "small", "deviceClassName": "gpu"}]}],
        "constraints": [{"requests": ["gpu"], "matchAttribute": "gpu.example.com/numa"}]}},
        "status": {"allocation": {"devices": {"results": [{"request": "gpu/small", "driver": "d", "pool": "p",
                                                          "device": "x", "shareID": "abc"}]}},
                   "reservedFor": [{"resource": "pods", "name": "p", "uid": "u"}]}}, ResourceClaim)
    assert c.spec.devices.requests[0].first_available[1].count == 1
    assert c.status.allocation.devices.results[0].share_id == "abc"
    assert c.status.reserved_for[0].uid == "u"
    assert validate(c) == []


def test_pod_claim_fields():
    p = B.pod_with_claims("p", claims={"shared": "c1"}, templates={"gpu": "t1"})
    assert [e.name for e in p.spec.resource_claims] == ["shared", "gpu"]
    assert p.spec.resource_claims[1].resource_claim_template_name == "t1"
    assert p.spec.containers[0].resources.claims[0].name == "shared"
    raw = {"metadata": {"name": "p"}, "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p-gpu-x"}]}}
    assert msgspec.convert(raw, Pod).status.resource_claim_statuses[0].resource_claim_name == "p-gpu-x"


def test_kinds_table():
    assert set(DRA_KINDS) == {"ResourceSlice", "DeviceClass", "ResourceClaim", "ResourceClaimTemplate"}
    assert DRA_KINDS["DeviceClass"] is DeviceClass and DRA_KINDS["ResourceClaimTemplate"] is ResourceClaimTemplate


@pytest.mark.parametrize("spec,message", [
    ({"requests": [{"name": "a"}]}, "spec.devices.requests[0]: exactly one of exactly and firstAvailable"),
    ({"requests": [{"name": "a", "exactly": {"deviceClassName": "g", "count": 0}}]},
     "spec.devices.requests[0].exactly.count: must be at least 1"),
    ({"requests": [{"name": "a", "exactly": {"deviceClassName": "g", "allocationMode": "Some"}}]},
     "spec.devices.requests[0].exactly.allocationMode: must be one of ExactCount, All"),
    ({"requests": [{"name": "a", "exactly": {}}]}, "spec.devices.requests[0].exactly.deviceClassName: required"),
    ({"requests": [{"name": "a", "exactly": {"deviceClassName": "g"}}, {"name": "a", "exactly": {"deviceClassName": "g"}}]},
     "spec.devices.requests[1].name: duplicate request name 'a'"),
    ({"requests": [{"name": "a", "exactly": {"deviceClassName": "g", "selectors": [{"cel": {"expression": " "}}]}}]},
     "spec.devices.requests[0].exactly.selectors[0].cel.expression: required"),
    ({"requests": [{"name": "a", "exactly": {"deviceClassName": "g"}}], "constraints": [{"requests": ["b"],
                                                                                          "matchAttribute": "x/y"}]},
     "spec.devices.constraints[0].requests: unknown request 'b'"),
])
def test_claim_validation_names_the_field(spec, message):
    c = msgspec.convert({"metadata": {"name": "c"}, "spec": {"devices": spec}}, ResourceClaim)
    errs = validate(c)
    assert any(e.startswith(message) for e in errs), errs


def test_template_validation_prefix():
    t = msgspec.convert({"metadata": {"name": "t"}, "spec": {"spec": {"devices": {"requests": [{"name": "a"}]}}}},
                        ResourceClaimTemplate)
    assert validate(t)[0].startswith("spec.spec.devices.requests[0]")


def test_slice_validation():
    s = B.resource_slice("s", [B.device("a", capacity={"memory": "lots"}), B.device("a")], node="n1")
    errs = validate(s)
    assert "spec.devices[0].capacity.memory.value: invalid quantity 'lots'" in errs
    assert "spec.devices[1].name: duplicate device name 'a'" in errs
    both = msgspec.convert({"metadata": {"name": "s"}, "spec": {"driver": "d", "nodeName": "n", "allNodes": True,
                                                               "pool": {"name": "p", "resourceSliceCount": 1}}},
                           ResourceSlice)
    assert any("exactly one of nodeName" in e for e in validate(both))
    empty_attr = msgspec.convert({"metadata": {"name": "s"}, "spec": {"driver": "d", "nodeName": "n",
                                  "pool": {"name": "p", "resourceSliceCount": 1},
                                  "devices": [{"name": "x", "attributes": {"a": {}}}]}}, ResourceSlice)
    assert validate(empty_attr) == ["spec.devices[0].attributes.a: exactly one of int, bool, string and version "
                                    "must be set"]


def test_wrong_type_names_the_path():
    with pytest.raises(msgspec.ValidationError, match=r"\$\.spec\.pool\.generation"):
        msgspec.convert({"spec": {"pool": {"generation": "x"}}}, ResourceSlice)
