"""--restrict-node-scheduling: worker-role node filter and the capacity proportion divides."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "actions"))

from scenario_builder import bindings, config, job, node, queue, simulate_docs, unschedulable  # noqa: E402

from kai.api import constants as C  # noqa: E402

GPU_W = {C.GPU_WORKER_LABEL: ""}
CPU_W = {C.CPU_WORKER_LABEL: "true"}


def _cfg(**kw):
    cfg = config(actions=["allocate"])
    cfg.restrict_node_scheduling = True
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


# (id, node labels {name: labels}, job kwargs, expected node or None)
CASES = [
    ("gpu-pod-goes-to-gpu-worker", {"cpu": CPU_W, "gpu": GPU_W}, {"gpu": 1}, "gpu"),
    ("cpu-pod-goes-to-cpu-worker", {"gpu": GPU_W, "cpu": CPU_W}, {"gpu": 0}, "cpu"),
    ("cpu-pod-never-on-gpu-only-worker", {"gpu": GPU_W, "none": {}}, {"gpu": 0}, None),
    ("gpu-pod-never-on-cpu-worker", {"cpu": CPU_W, "none": {}}, {"gpu": 1}, None),
    ("node-with-both-roles-takes-both", {"both": {**GPU_W, **CPU_W}}, {"gpu": 0}, "both"),
    ("fraction-is-a-gpu-pod", {"cpu": CPU_W, "gpu": GPU_W}, {"annotations": {"gpu-fraction": "0.5"}}, "gpu"),
]


@pytest.mark.parametrize("labels,kw,want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_restrict_node_scheduling_table(labels, kw, want):
    nodes = [node(n, gpu=4, labels=lab) for n, lab in labels.items()]
    report = simulate_docs([nodes, queue("q"), job("j", **kw)], _cfg())
    got = bindings(report)
    if want is None:
        assert got == {}
        why = unschedulable(report)["default/j"]
        assert "--restrict-node-scheduling" in why and "worker label" in why
    else:
        assert got == {"default/j-0": want}


def test_without_the_flag_labels_do_not_matter():
    report = simulate_docs([node("plain", gpu=4), queue("q"), job("j", gpu=1)], config(actions=["allocate"]))
    assert bindings(report) == {"default/j-0": "plain"}


def test_custom_label_keys():
    cfg = _cfg(gpu_worker_node_label_key="example.com/gpu", cpu_worker_node_label_key="example.com/cpu")
    nodes = [node("std", gpu=4, labels=GPU_W), node("custom", gpu=4, labels={"example.com/gpu": "x"})]
    report = simulate_docs([nodes, queue("q"), job("j", gpu=1)], cfg)
    assert bindings(report) == {"default/j-0": "custom"}
    report = simulate_docs([nodes, queue("q"), job("c", gpu=0)], cfg)
    assert "example.com/cpu" in unschedulable(report)["default/c"]


def test_capacity_counts_only_worker_nodes_and_gpus_of_gpu_workers():
    # 8 GPUs on a gpu worker, 8 on a cpu worker (not counted), 8 on an unlabelled node (not counted)
    nodes = [node("g", gpu=8, cpu="10", labels=GPU_W), node("c", gpu=8, cpu="10", labels=CPU_W),
             node("x", gpu=8, cpu="10")]
    docs = [nodes, queue("a", gpu=(0, -1), cpu=(0, -1)), queue("b", gpu=(0, -1), cpu=(0, -1)),
            job("ja", queue="a", pods=8, min_member=1, gpu=1, cpu="2"),
            job("jb", queue="b", pods=8, min_member=1, gpu=1, cpu="2")]      # 32 cpus requested
    report = simulate_docs(docs, _cfg())
    fair = {q["name"]: q["fairShare"] for q in report["queues"]}
    assert fair["a"]["gpu"] + fair["b"]["gpu"] == 8
    assert fair["a"]["cpu"] + fair["b"]["cpu"] == 20_000      # g and c count for cpu, x does not
    report = simulate_docs(docs, config(actions=["allocate"]))
    fair = {q["name"]: q["fairShare"] for q in report["queues"]}
    assert fair["a"]["gpu"] + fair["b"]["gpu"] == 16      # all 16 requested fit in 24 GPUs
