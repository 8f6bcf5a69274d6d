"""kai.api.pod_fields: every scheduling field a pod sets is honoured or named in its pending
reason (fail closed)."""
import msgspec

from kai.api.k8s import Pod
from kai.api.pod_fields import HONOURED, NOT_HONOURED, set_fields, unhonoured
from kai.api.pod_info import PodInfo
from kai.api.resources import ResourceRegistry


def pod(spec):
    return msgspec.convert({"metadata": {"name": "p", "namespace": "ns"},
                            "spec": {"containers": [{"name": "c"}], **spec}}, Pod)


def test_honoured_fields_pass():
    p = pod({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {}, "topologyKey": "kubernetes.io/hostname"}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}],
        "containers": [{"name": "c", "ports": [{"containerPort": 1, "hostPort": 80}]}]})
    assert set_fields(p) and unhonoured(p) == []
    assert PodInfo(p, ResourceRegistry()).invalid_reason == ""


def test_unhonoured_fields_make_the_pod_wait_naming_them():
    p = pod({"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}],
             "volumes": [{"name": "disk", "gcePersistentDisk": {"pdName": "x"}}]})
    got = unhonoured(p)
    assert any("spec.volumes[disk].gcePersistentDisk (in-tree disk)" in g for g in got)
    assert not any("resourceClaims" in g for g in got)             # DRA is honoured (dynamicresources)
    info = PodInfo(p, ResourceRegistry())
    assert "sets fields kai does not honour yet" in info.invalid_reason and "gcePersistentDisk" in info.invalid_reason


def test_resource_claims_are_honoured():
    p = pod({"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}],
             "containers": [{"name": "c", "resources": {"claims": [{"name": "gpu"}]}}]})
    assert set_fields(p) and unhonoured(p) == []
    assert PodInfo(p, ResourceRegistry()).invalid_reason == ""


def test_bound_pods_are_not_refused():
    p = pod({"nodeName": "n0", "resourceClaims": [{"name": "gpu"}]})
    assert PodInfo(p, ResourceRegistry()).invalid_reason == ""


def test_tables_do_not_overlap():
    assert not set(HONOURED) & set(NOT_HONOURED)
