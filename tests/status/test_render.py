"""The terminal view: bars, tree guides, widths, colour only when asked, glyphs that read without it."""
from __future__ import annotations

import re

import pytest

from kai.status.render import _Paint, fmt_amount, occupancy_bar, queue_bar, render

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def q(name, parent=None, depth=0, alloc=0, fair=0, pend=0, quota=-1, conds=(), problem=None):
    v = lambda g: {"gpu": g, "cpu": g * 1000, "memory": g * 2**30}   # noqa: E731
    if problem:
        return {"name": name, "parent": parent, "depth": depth, "allocated": None, "fairShare": None,
                "pending": None, "quota": None, "conditions": [], "problem": problem}
    return {"name": name, "parent": parent, "depth": depth, "allocated": v(alloc), "fairShare": v(fair),
            "pending": v(pend), "quota": {"gpu": quota, "cpu": -1, "memory": -1}, "conditions": list(conds),
            "problem": None}


@pytest.fixture
def doc():
    return {
        "server": "https://k:6443", "schedulerConfig": "default",
        "counts": {"nodes": 3, "pods": 10, "kaiPods": 8, "podGroups": 4, "queues": 4},
        "capacity": {"gpu": 20, "cpu": 20000, "memory": 20 * 2**30},
        "missingKinds": [],
        "queues": [q("org", depth=0, alloc=12, fair=20, pend=6),
                   q("a", "org", 1, alloc=10, fair=8, pend=0, quota=6, conds=["OverQuota"]),
                   q("b", "org", 1, alloc=2, fair=12, pend=6, quota=4),
                   q("lost", problem="parent queue 'x' does not exist")],
        "pending": {"podGroups": 2, "pods": 6, "byCause": [{"cause": "insufficient nvidia.com/gpu", "count": 2}],
                    "top": [{"podGroup": "t/big", "queue": "b", "priority": 50, "pendingPods": 4, "pods": 4,
                             "minMember": 4, "ageSeconds": 7200, "cause": "insufficient nvidia.com/gpu",
                             "reasons": ["pod t/big-0: 0/3 nodes fit: 3 insufficient nvidia.com/gpu"],
                             "source": "PodGroup"}]},
        "gpu": {"pools": [{"name": "a100", "nodes": 2, "gpus": 16, "whole": 8, "fractional": 1.5,
                           "fragmented": 0.5, "free": 6, "largestFree": 4},
                          {"name": "l40s", "nodes": 1, "gpus": 4, "whole": 4, "fractional": 0, "fragmented": 0,
                           "free": 0, "largestFree": 0}],
                "total": {"name": "all", "nodes": 3, "gpus": 20, "whole": 12, "fractional": 1.5,
                          "fragmented": 0.5, "free": 6, "largestFree": 4}},
        "problems": [],
        "timing": {"totalSeconds": 0.25},
    }


def test_queue_bar_cells():
    plain = _Paint(False)
    # 20 GPUs over 20 cells: 2 allocated within fair, pending 6, fair marker at 12, quota at 4
    bar = queue_bar(q("b", alloc=2, fair=12, pend=6, quota=4), "gpu", 20.0, 20, plain)
    assert bar == "██░░┊░░░    │       "
    # above the fair share: ▓ from the fair share on
    assert queue_bar(q("a", alloc=10, fair=8), "gpu", 20.0, 20, plain) == "████████│▓          "
    # more than the cluster: clipped with ▸
    assert queue_bar(q("x", alloc=4, fair=4, pend=40), "gpu", 20.0, 10, plain).endswith("▸")
    assert len(queue_bar(q("x", alloc=4, fair=4, pend=40), "gpu", 20.0, 10, plain)) == 10


def test_occupancy_bar_parts_add_up():
    bar = occupancy_bar({"gpus": 16, "whole": 8, "fractional": 1.5, "fragmented": 0.5, "free": 6}, 32, _Paint(False))
    assert len(bar) == 32
    assert bar.count("█") == 16 and bar.count("▓") == 3 and bar.count("▒") == 1 and bar.count("░") == 12


def test_render_plain(doc):
    out = render(doc, width=140, color=False)
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert all(len(line) <= 140 for line in lines), max(lines, key=len)
    assert lines[0].startswith("kai status · https://k:6443 · 3 nodes · 10 pods (8 kai)")
    assert any(line.startswith("├─ a ") and "OverQuota" in line for line in lines)
    assert any(line.startswith("└─ b ") for line in lines)
    assert any("lost" in line and "not scheduled: parent queue 'x' does not exist" in line for line in lines)
    assert "GPU" in out and "CPU" in out and "MEMORY" in out        # wide: all three resources
    assert "t/big" in out and "2h" in out and "insufficient nvidia.com/gpu" in out
    pool = next(line for line in lines if line.strip().startswith("a100"))
    assert pool.split()[-7:] == ["2", "16", "8", "1.5", "0.5", "6", "4"]
    assert any(line.strip().startswith("all") for line in lines)


def test_render_narrow_shows_gpu_with_quota(doc):
    out = render(doc, width=90, color=False)
    assert "MEMORY" not in out and "quota" in out
    assert all(len(line) <= 90 for line in out.splitlines())


def test_render_color_only_adds_escapes(doc):
    colored = render(doc, width=140, color=True)
    assert "\x1b[32m" in colored
    assert ANSI.sub("", colored) == render(doc, width=140, color=False)


def test_nothing_pending_and_no_gpus(doc):
    doc["pending"] = {"podGroups": 0, "pods": 0, "byCause": [], "top": []}
    doc["gpu"] = {"pools": [], "total": {}}
    out = render(doc, width=100)
    assert "nothing pending" in out and "no GPU nodes" in out


@pytest.mark.parametrize("res,v,text", [("gpu", 0.5, "0.5"), ("gpu", 8, "8"), ("gpu", -1, "∞"), ("cpu", 1500, "1.5"),
                                        ("cpu", 320000, "320"), ("memory", 2 * 2**30, "2.0Gi"),
                                        ("memory", 3 * 2**40, "3.0Ti"), ("memory", 0, "0"), ("cpu", None, "-")])
def test_amounts(res, v, text):
    assert fmt_amount(res, v) == text
