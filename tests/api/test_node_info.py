"""kai.api.node_info: node validation (quantities, GFD labels) and the tolerant label readers."""
import msgspec
import pytest

from kai.api.k8s import Node
from kai.api.node_info import NodeInfo, gpu_memory_mib, validate_node


def node(allocatable=None, labels=None, capacity=None, name="n0"):
    return msgspec.convert({"metadata": {"name": name, "labels": labels or {}},
                            "status": {"allocatable": allocatable or {"cpu": "8", "nvidia.com/gpu": "4"},
                                       "capacity": capacity or {}}}, Node)


def test_valid_node_has_no_problems():
    assert validate_node(node(labels={"nvidia.com/gpu.memory": "81920", "nvidia.com/gpu.count": "8"})) == []


@pytest.mark.parametrize("kw, text", [
    ({"allocatable": {"cpu": "-4"}}, "status.allocatable.cpu: negative quantity '-4'"),
    ({"allocatable": {"memory": "12XB"}}, "status.allocatable.memory: invalid quantity '12XB'"),
    ({"allocatable": {"cpu": "1e400"}}, "status.allocatable.cpu: quantity '1e400' is too large"),
    ({"allocatable": {"cpu": "9e18"}}, "status.allocatable.cpu: quantity '9e18' is too large"),
    ({"allocatable": {"nvidia.com/gpu": "100000"}}, "'100000' GPUs is more than 1024 per node"),
    ({"capacity": {"pods": "-1"}}, "status.capacity.pods: negative quantity"),
    ({"labels": {"nvidia.com/gpu.memory": "1e309"}}, "metadata.labels[nvidia.com/gpu.memory]: '1e309'"),
    ({"labels": {"nvidia.com/gpu.memory": "nan"}}, "metadata.labels[nvidia.com/gpu.memory]: 'nan'"),
    ({"labels": {"nvidia.com/gpu.count": "-8"}}, "metadata.labels[nvidia.com/gpu.count]: '-8'"),
    ({"labels": {"nvidia.com/gpu.count": "99999999"}}, "metadata.labels[nvidia.com/gpu.count]"),
    ({"name": ""}, "metadata.name is empty"),
])
def test_bad_nodes_named_by_field(kw, text):
    errs = validate_node(node(**kw))
    assert any(text in e for e in errs), errs


def test_label_readers_never_raise():
    for raw in ("1e309", "-1e309", "nan", "inf", "x", "", "1" * 400):
        n = node(labels={"nvidia.com/gpu.memory": raw, "nvidia.com/gpu.count": raw})
        assert gpu_memory_mib(n) == (100, False)
        info = NodeInfo(n, 0)
        assert info.gpu_count_label == 0 and info.gpu_memory_mib == 100


def test_gpu_memory_bytes_converted_to_mib():
    assert gpu_memory_mib(node(labels={"nvidia.com/gpu.memory": str(80 * 2**30)})) == (81900, True)
