"""Session: the queue tree it opens with (``--full-hierarchy-fairness``)."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "actions"))

from scenario_builder import bindings, config, job, node, queue, simulate_docs, unschedulable  # noqa: E402


def _docs():
    # d1 may use 2 GPUs, its project p1 unlimited; d2 holds the rest of the quota
    return [node("n1", gpu=8),
            queue("d1", gpu=(2, 2)), queue("p1", parent="d1"),
            queue("d2", gpu=(6, -1)), queue("p2", parent="d2"),
            [job(f"j{i}", queue="p1", gpu=1, created=f"2024-01-01T00:00:0{i}Z") for i in range(6)]]


def test_full_hierarchy_keeps_department_limits():
    report = simulate_docs(_docs(), config(actions=["allocate"]))
    assert len(bindings(report)) == 2
    assert all(why.startswith("OverLimit: queue 'd1'") for why in unschedulable(report).values())


def test_project_level_fairness_drops_departments():
    cfg = config(actions=["allocate"])
    cfg.full_hierarchy_fairness = False
    report = simulate_docs(_docs(), cfg)
    assert len(bindings(report)) == 6             # d1's limit no longer binds p1
    tree = {q["name"]: q["parent"] for q in report["queues"]}
    assert tree == {"default": None, "p1": "default", "p2": "default"}


def test_project_level_fairness_job_in_a_department_queue_waits():
    cfg = config(actions=["allocate"])
    cfg.full_hierarchy_fairness = False
    report = simulate_docs([node("n1", gpu=8), queue("d1"), queue("p1", parent="d1"),
                            job("top", queue="d1", gpu=1)], cfg)
    assert bindings(report) == {}
    assert "queue 'd1'" in unschedulable(report)["default/top"]
