"""Unschedulable explanations, short (counts per reason) and --detailed-fit-errors (per node)."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "actions"))

from scenario_builder import config, job, node, queue, simulate_docs, unschedulable  # noqa: E402

from kai.framework import explain  # noqa: E402


def _docs():
    return [node("a-notready", gpu=8, ready=False),
            node("b-tainted", gpu=8, taints=[{"key": "dedicated", "value": "infer", "effect": "NoSchedule"}]),
            node("c-small", gpu=2),
            node("d-busy", gpu=4),
            job("hog", queue="q", gpu=3, running_on=["d-busy"]),
            queue("q"),
            job("want", queue="q", gpu=4, cpu="2")]


def _why(detailed: bool) -> str:
    cfg = config(actions=["allocate"])
    cfg.detailed_fit_errors = detailed
    return unschedulable(simulate_docs(_docs(), cfg))["default/want"]


def test_short_message_counts_nodes_per_reason():
    why = _why(False)
    assert "0/4 nodes fit" in why and "2 insufficient nvidia.com/gpu" in why
    assert "Per node" not in why and "c-small" not in why


def test_detailed_message_gives_every_node_its_reason():
    why = _why(True)
    short, _, per_node = why.partition(". Per node: ")
    assert short == _why(False)                       # the short message, then the nodes
    assert per_node.split("; ") == [
        "a-notready: not ready",
        "b-tainted: untolerated taint dedicated=infer",
        "c-small: insufficient nvidia.com/gpu (requested 4, free 2 of 2)",
        "d-busy: insufficient nvidia.com/gpu (requested 4, free 1 of 4)",
    ]


def test_detailed_message_is_capped(monkeypatch):
    monkeypatch.setattr(explain, "MAX_DETAILED_NODES", 2)
    why = _why(True)
    assert why.endswith("; and 2 more node(s)") and "c-small" not in why


def test_detailed_message_for_a_gpu_fraction():
    cfg = config(actions=["allocate"])
    cfg.detailed_fit_errors = True
    docs = [node("full", gpu=1), queue("q"), job("hog", queue="q", gpu=1, running_on=["full"]),
            job("frac", queue="q", gpu=0, annotations={"gpu-fraction": "0.5"})]
    why = unschedulable(simulate_docs(docs, cfg))["default/frac"]
    assert "Per node: full: without a GPU device with room for the share" in why
