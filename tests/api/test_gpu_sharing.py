"""kai.api.gpu_sharing: one validator for the GPU-sharing annotations, the same answer from the
scheduler's model (PodInfo) and from the admission webhook for every case."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kai.admission.webhook import AdmissionConfig, validate_pod
from kai.api.gpu_sharing import parse_gpu_sharing_annotations
from kai.api.k8s import Pod
from kai.api.pod_info import PodInfo
from kai.api.resources import ResourceRegistry

CASES = [
    # annotations, whole GPU request, (portion, memory, devices) or the error
    ({"gpu-fraction": "0.5"}, False, (0.5, 0, 1)),
    ({"gpu-fraction": "0.25", "gpu-fraction-num-devices": "4"}, False, (0.25, 0, 4)),
    ({"gpu-memory": "2000"}, False, (0.0, 2000, 1)),
    ({"gpu-memory": " 2000 "}, False, (0.0, 2000, 1)),
    ({}, False, None),
    ({"gpu-fraction": ""}, False, None),                 # empty = absent, as KAI's webhook
    ({"gpu-fraction": "", "gpu-memory": ""}, True, None),
    ({"gpu-fraction-num-devices": ""}, False, None),
    ({"mps": "false"}, False, None),
    ({"gpu-fraction": "1"}, False, "gpu-fraction annotation value must be a positive number smaller than 1.0"),
    ({"gpu-fraction": "nan"}, False, "gpu-fraction annotation value must be a positive number smaller than 1.0"),
    ({"gpu-fraction": "inf"}, False, "gpu-fraction annotation value must be a positive number smaller than 1.0"),
    ({"gpu-memory": "1.5"}, False, "gpu-memory annotation value must be a positive integer greater than 0"),
    ({"gpu-memory": "2Gi"}, False, "gpu-memory annotation value must be a positive integer greater than 0"),
    ({"gpu-fraction": "0.5", "gpu-fraction-num-devices": "0"}, False,
     "fraction count annotation value must be a positive integer greater than 0"),
    ({"gpu-fraction-num-devices": "2"}, False,
     "cannot request multiple fractional devices without specifying fraction details (portion or memory)"),
    ({"gpu-fraction": "0.5", "gpu-memory": "100"}, False, "cannot request both gpu-fraction and GPU memory request"),
    ({"gpu-fraction": "0.5"}, True, "cannot have both GPU fraction request and whole GPU resource request/limit"),
    ({"mps": "true"}, False, "annotation mps=true is only valid with gpu-fraction or gpu-memory"),
]


def pod_doc(annotations: dict, whole: bool) -> dict:
    res = {"limits": {"nvidia.com/gpu": "1"}} if whole else {"requests": {"cpu": "1"}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "annotations": annotations},
            "spec": {"schedulerName": "kai-scheduler", "containers": [{"name": "c", "image": "x", "resources": res}]}}


@pytest.mark.parametrize("ann,whole,want", CASES, ids=lambda v: str(v) if not isinstance(v, bool) else "")
def test_validator_table(ann, whole, want):
    got, err = parse_gpu_sharing_annotations(ann, whole)
    if isinstance(want, str):
        assert got is None and err == want
    elif want is None:
        assert got is None and err == ""
    else:
        assert err == "" and (got.portion, got.memory_mib, got.num_devices) == want


@pytest.mark.parametrize("ann,whole,want", CASES, ids=lambda v: str(v) if not isinstance(v, bool) else "")
def test_webhook_and_model_agree(ann, whole, want):
    doc = pod_doc(ann, whole)
    webhook = validate_pod(doc, AdmissionConfig())
    info = PodInfo(msgspec.convert(doc, Pod), ResourceRegistry())
    model = info.invalid_reason.removeprefix("pod ns/p: ")
    assert webhook == model == (want if isinstance(want, str) else "")
    assert (info.gpu_sharing is not None) == (isinstance(want, tuple))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["gpu-fraction", "gpu-memory", "gpu-fraction-num-devices", "mps"]),
                       st.one_of(st.text(max_size=6), st.sampled_from(["0.5", "1", "100", "2", "true", ""]))),
       st.booleans())
def test_webhook_and_model_agree_on_any_annotations(ann, whole):
    doc = pod_doc(ann, whole)
    info = PodInfo(msgspec.convert(doc, Pod), ResourceRegistry())
    assert validate_pod(doc, AdmissionConfig()) == info.invalid_reason.removeprefix("pod ns/p: ")
