"""kai.api.queue_info: queue validation, units, and the queue tree (orphans, cycles)."""
import msgspec
import pytest

from kai.api.k8s import Queue
from kai.api.queue_info import (PROJECT_LEVEL_ROOT, QueueInfo, QueueTree, parse_duration, project_level_queues,
                                 queue_warnings, validate_queue)


def queue(name, parent="", gpu=None, cpu=None, memory=None, resources=True, ts=None, **spec):
    res = {}
    for k, v in (("gpu", gpu), ("cpu", cpu), ("memory", memory)):
        if v is not None:
            res[k] = v
    body = {"metadata": {"name": name}, "spec": {"parentQueue": parent, **spec}}
    if resources:
        body["spec"]["resources"] = res or {"gpu": {"quota": 1, "limit": -1}}
    if ts:
        body["metadata"]["creationTimestamp"] = ts
    return msgspec.convert(body, Queue)


def test_units_memory_mb_and_unset_limit_is_zero():
    q = QueueInfo(queue("q", gpu={"quota": 2, "overQuotaWeight": 3},
                        cpu={"quota": 4000, "limit": -1}, memory={"quota": 1024, "limit": 2048}))
    assert q.deserved == [2.0, 4000.0, 1024e6]
    assert q.limit == [0.0, -1.0, 2048e6]          # gpu limit unset -> 0 (KAI's CRD has no default)
    assert q.weight == [3.0, 0.0, 0.0]
    assert q.priority == 100 and q.is_leaf


def test_unlimited_quota_kept_as_minus_one():
    q = QueueInfo(queue("q", memory={"quota": -1, "limit": -1}))
    assert q.deserved[2] == -1.0 and q.limit[2] == -1.0


def test_missing_resource_block_is_all_zero():
    q = QueueInfo(queue("q", gpu={"quota": 1, "limit": 1}))
    assert q.deserved[1:] == [0.0, 0.0] and q.limit[1:] == [0.0, 0.0]


@pytest.mark.parametrize("kw, text", [
    ({"preemptMinRuntime": "ten minutes"}, "spec.preemptMinRuntime 'ten minutes' is not a duration"),
    ({"reclaimMinRuntime": "5x"}, "spec.reclaimMinRuntime '5x' is not a duration"),
    ({"gpu": {"quota": 1, "limit": -1, "overQuotaWeight": float("nan")}}, "overQuotaWeight is nan"),
    ({"cpu": {"quota": float("inf"), "limit": -1}}, "spec.resources.cpu.quota is inf"),
    ({"memory": {"quota": 0, "limit": 1e300}}, "spec.resources.memory.limit is 1e+300"),
    ({"gpu": {"quota": 1, "limit": -1, "overQuotaWeight": 1e12}}, "overQuotaWeight is 1e+12"),
    ({"priority": 2**31}, "spec.priority 2147483648 is out of range"),
])
def test_invalid_queues(kw, text):
    errs = validate_queue(queue("bad", **kw))
    assert any(text in e for e in errs), errs
    tree = QueueTree([queue("bad", **kw)])
    assert "bad" not in tree and text in tree.problems["bad"]


@pytest.mark.parametrize("kw, text", [
    ({"gpu": {"quota": -2, "limit": -1}}, "spec.resources.gpu.quota is -2"),
    ({"cpu": {"quota": 0, "limit": -5}}, "spec.resources.cpu.limit is -5"),
    ({"gpu": {"quota": 4, "limit": 2}}, "spec.resources.gpu.limit 2 is below quota 4"),
    ({"gpu": {"quota": 1, "limit": 1, "overQuotaWeight": -1}}, "overQuotaWeight is -1"),
    ({"resources": False}, "spec.resources is missing"),
])
def test_odd_values_are_kept_with_a_warning(kw, text):
    """KAI's CRD accepts these numbers and its scheduler uses them: so does kai, and says so."""
    q = queue("odd", **kw)
    assert validate_queue(q) == []
    assert any(text in w for w in queue_warnings(q)), queue_warnings(q)
    tree = QueueTree([q])
    assert "odd" in tree and not tree.problems


def test_kai_value_semantics():
    """Numbers mean what KAI's proportion plugin makes of them."""
    q = QueueInfo(queue("q", gpu={"quota": -2, "limit": -3, "overQuotaWeight": -1},
                        cpu={"quota": -7, "limit": -1}, memory={"quota": -5, "limit": -0.5e-6}))
    assert q.deserved == [-2.0, -7.0, -1.0]       # memory: max(-1, MB x 1e6)
    assert q.limit == [-3.0, -1.0, -0.5]
    assert q.weight[0] == -1.0
    v1 = QueueInfo(queue("v1", resources=False))
    assert v1.deserved == [0.0] * 3 and v1.limit == [0.0] * 3 and v1.weight == [0.0] * 3


def test_valid_queue_has_no_errors():
    ok = queue("ok", gpu={"quota": -1, "limit": -1}, cpu={"quota": -1, "limit": -1},
               memory={"quota": -1, "limit": -1}, preemptMinRuntime="1h30m")
    assert validate_queue(ok) == [] and queue_warnings(ok) == []


def test_limit_unlimited_with_quota_ok():
    assert validate_queue(queue("ok", gpu={"quota": 5, "limit": -1})) == []


@pytest.mark.parametrize("text, secs", [("90s", 90.0), ("1h30m", 5400.0), ("500ms", 0.5), ("2m", 120.0),
                                        ("1.5h", 5400.0), (None, None), ("", None), ("abc", None),
                                        ("5", None), ("1h x", None)])
def test_parse_duration(text, secs):
    assert parse_duration(text) == secs


def test_tree_parent_child_and_order():
    tree = QueueTree([queue("root", ts="2024-01-01T00:00:00Z"),
                      queue("b", "root", ts="2024-01-01T00:00:02Z"),
                      queue("a", "root", ts="2024-01-01T00:00:03Z"),
                      queue("other-root", ts="2024-01-01T00:00:01Z")])
    assert not tree.problems
    assert [q.name for q in tree.roots()] == ["root", "other-root"]
    assert tree.get("root").children == ["a", "b"] and not tree.get("root").is_leaf
    assert [q.name for q in tree.ancestors("a")] == ["a", "root"]
    assert [q.name for q in tree.topological()] == ["root", "b", "a", "other-root"]


def test_leveled_gives_the_siblings_where_two_paths_part():
    tree = QueueTree([queue("r1"), queue("d1", "r1"), queue("a", "d1"), queue("b", "d1"), queue("d2", "r1"),
                      queue("c", "d2"), queue("r2")])
    assert tree.leveled("a", "b") == ("a", "b")
    assert tree.leveled("a", "c") == ("d1", "d2")
    assert tree.leveled("c", "r2") == ("r1", "r2")
    assert tree.leveled("a", "d1") is None and tree.leveled("a", "missing") is None


def test_orphans_dropped_with_subtrees():
    tree = QueueTree([queue("child", "missing"), queue("grandchild", "child"), queue("fine")])
    assert "child" not in tree and "grandchild" not in tree and "fine" in tree
    assert tree.problems["child"] == "parent queue 'missing' does not exist"
    assert "missing" in tree.problems["grandchild"] and "ancestor" in tree.problems["grandchild"]


def test_child_of_invalid_queue_gets_reason():
    tree = QueueTree([queue("p", preemptMinRuntime="soon"), queue("c", "p")])
    assert "c" not in tree
    assert "parent queue 'p' is invalid" in tree.problems["c"]


def test_parent_cycle_reported_clearly():
    tree = QueueTree([queue("a", "b"), queue("b", "c"), queue("c", "a"), queue("tail", "a"),
                      queue("ok")])
    assert set(tree.queues) == {"ok"}
    for n in ("a", "b", "c"):
        assert tree.problems[n].startswith("queue parent cycle: ")
        assert n in tree.problems[n]
    cyc = tree.problems["a"].split(": ", 1)[1].split(" -> ")
    assert cyc[0] == cyc[-1] and set(cyc) == {"a", "b", "c"}
    assert "cycle" in tree.problems["tail"] and "ancestor" in tree.problems["tail"]


def test_self_parent_cycle():
    tree = QueueTree([queue("me", "me")])
    assert "me" not in tree and tree.problems["me"] == "queue parent cycle: me -> me"


def test_tail_entering_cycle_found_before_cycle():
    # the walk starts at the tail queue; the tail still must not be reported as part of the cycle
    tree = QueueTree([queue("tail", "a"), queue("a", "b"), queue("b", "a")])
    assert tree.problems["a"].startswith("queue parent cycle")
    assert tree.problems["b"].startswith("queue parent cycle")
    assert not tree.problems["tail"].startswith("queue parent cycle")
    assert "tail" not in tree


def test_unnamed_queue_invalid():
    assert "metadata.name is empty" in validate_queue(queue(""))


def _q(name, parent=""):
    return msgspec.convert({"metadata": {"name": name}, "spec": {"parentQueue": parent}}, Queue)


def test_project_level_queues_reparent_under_an_unlimited_root():
    queues, problems = project_level_queues([_q("dept"), _q("team", "dept"), _q("leaf", "team"),
                                             _q("orphan", "gone")])
    tree = QueueTree(queues)
    assert problems == {} and not tree.problems
    assert {q.name: q.parent for q in tree.queues.values()} == {
        PROJECT_LEVEL_ROOT: "", "team": PROJECT_LEVEL_ROOT, "leaf": PROJECT_LEVEL_ROOT, "orphan": PROJECT_LEVEL_ROOT}
    root = tree.get(PROJECT_LEVEL_ROOT)
    assert root.deserved == [-1.0, -1.0, -1.0] and root.limit == [-1.0, -1.0, -1.0] and root.weight == [1.0] * 3
    assert tree.get("team").is_leaf          # a former middle queue is a project like the others


def test_project_level_queues_report_a_queue_named_like_the_root():
    queues, problems = project_level_queues([_q("dept"), _q(PROJECT_LEVEL_ROOT, "dept")])
    assert [q.metadata.name for q in queues] == [PROJECT_LEVEL_ROOT]
    assert "taken by the synthetic root" in problems[PROJECT_LEVEL_ROOT]
