"""kai.dra.quota: which DeviceClasses count as GPUs, and how many GPUs a claim counts for."""
from kai.dra.quota import DEFAULT_PATTERNS, GpuClasses, allocated_gpus, gpu_classes, requested_gpus
from kai.testing import dra as B


def test_default_is_kais_rule_name_contains_gpu():
    g = GpuClasses()
    assert g.source == DEFAULT_PATTERNS
    assert "gpu.nvidia.com" in g and "NVIDIA-GPU" in g and "amd.com/GPU" in g
    assert "nic.example.com" not in g and "compute-domain" not in g


def test_argument_lists_names_and_patterns():
    g = gpu_classes({"gpuDeviceClasses": "a100.example.com, *.gpu.vendor.io"})
    assert "a100.example.com" in g and "x.gpu.vendor.io" in g
    assert "gpu.example.com" not in g
    assert "x" not in gpu_classes({"gpuDeviceClasses": ""}) and "gpu" not in gpu_classes({"gpuDeviceClasses": ""})
    assert gpu_classes(None) == GpuClasses()


def test_requested_counts_exact_all_and_first_available():
    g = GpuClasses()
    c = B.claim("c", B.request("a", "gpu.x", 2), B.request("b", "nic.x", 4),
                B.request("all", "gpu.x", mode="All"), B.request("adm", "gpu.x", 3, admin=True))
    assert requested_gpus(c, g, lambda e: 8) == 2 + 8          # All: the most one node reaches; admin: none
    fa = B.claim("f", B.first_available("r", ("big", "gpu.x", 4), ("small", "gpu.x", 1)))
    assert requested_gpus(fa, g, lambda e: 0) == 4              # the first choice
    assert requested_gpus(B.claim("z", B.request("a", "gpu.x", mode="All")), g, lambda e: 0) == 1


def test_allocated_counts_results_of_gpu_requests():
    g = GpuClasses()
    c = B.claim("c", B.request("a", "gpu.x", 2), B.request("b", "nic.x", 1),
                B.first_available("r", ("big", "gpu.x", 4), ("small", "nic.x", 1)))
    results = [{"request": "a"}, {"request": "a"}, {"request": "b"}, {"request": "r/big"},
               {"request": "a", "adminAccess": True}]
    assert allocated_gpus(c, results, g) == 3
