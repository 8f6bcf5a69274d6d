"""kai.api.podgroup_info.subgroup_tree_error: KAI's PodGroup webhook rule for spec.subGroups
(KAI's podgroup_webhook_test.go table, plus a property against a brute-force forest check)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from kai.api.podgroup_info import subgroup_tree_error


@pytest.mark.parametrize("pairs,error", [
    ([("A", None), ("B", "A"), ("C", "B")], ""),                                   # single root
    ([("A", None), ("B", None), ("C", "A"), ("D", "B")], ""),                      # two roots
    ([("A", None), ("B", "X")], "parent X of B was not found"),
    ([], ""),
    ([("A", None), ("A", None)], "duplicate subgroup name A"),
    # a duplicate is reported before the cycle it would close
    ([("A", None), ("B", "A"), ("C", "B"), ("A", "C")], "duplicate subgroup name A"),
    ([("A", "A")], "cycle detected in subgroups"),                                 # self-parent
    ([("A", "C"), ("B", "A"), ("C", "B")], "cycle detected in subgroups"),
    ([("A", "B"), ("B", "A"), ("C", "D"), ("D", "C")], "cycle detected in subgroups"),
    # a chain hanging off a cycle is still a cycle; a long valid chain is fine
    ([("r", None), ("x", "y"), ("y", "x"), ("t", "x")], "cycle detected in subgroups"),
    ([(f"n{i}", f"n{i - 1}" if i else None) for i in range(200)], ""),
    # an empty parent name is not a root (KAI: a pointer to "" is still a parent)
    ([("A", "")], "parent  of A was not found"),
])
def test_kai_table(pairs, error):
    assert subgroup_tree_error(pairs) == error


def _is_forest(pairs: list[tuple[str, str | None]]) -> bool:
    """Brute force: unique names, known parents, and every walk up reaches a root in n steps."""
    parent = dict(pairs)
    if len(parent) != len(pairs) or any(p is not None and p not in parent for p in parent.values()):
        return False
    for node in parent:
        for _ in range(len(parent) + 1):
            if node is None:
                break
            node = parent[node]
        if node is not None:
            return False
    return True


names = st.sampled_from("abcdef")


@given(st.lists(st.tuples(names, st.none() | names), max_size=7))
def test_forest_iff_no_error(pairs):
    assert (subgroup_tree_error(pairs) == "") == _is_forest(pairs)


def test_a_subgroup_without_a_name_never_becomes_a_node_of_the_tree():
    """Fuzzer find: a SubGroup named "" (the root's own name) with a parent made the root its
    own ancestor, and every later walk up the tree looped for ever."""
    import msgspec

    from kai.api.k8s import PodGroup
    from kai.api.podgroup_info import PodGroupInfo

    pg = msgspec.convert({"metadata": {"name": "g", "namespace": "ns"},
                          "spec": {"minMember": 1, "queue": "q",
                                   "subGroups": [{"name": "x", "minMember": 1},
                                                 {"name": "", "parent": "x", "minMember": 1}]}}, PodGroup)
    job = PodGroupInfo(pg, 50, True)
    assert job.root_subgroup.parent is None
    for leaf in job.leaf_nodes.values():
        seen, p = set(), leaf
        while p is not None:
            assert id(p) not in seen
            seen.add(id(p))
            p = p.parent


def test_each_podset_knows_its_leaf():
    """Every PodSet points at its leaf of the SubGroup tree (``subgroup_node``, ``leaf_nodes``),
    leaves share the empty tuple for children, and inner nodes list theirs."""
    import msgspec

    from kai.api.k8s import PodGroup
    from kai.api.podgroup_info import PodGroupInfo

    plain = PodGroupInfo(msgspec.convert({"metadata": {"name": "g", "namespace": "ns"},
                                          "spec": {"minMember": 2, "queue": "q"}}, PodGroup), 50, True)
    (ps,) = plain.podsets.values()
    assert plain.subgroup_node(ps) is ps.leaf and ps.leaf.podset is ps
    assert plain.root_subgroup.children == [ps.leaf] and ps.leaf.children == ()
    assert plain.leaf_nodes == {"": ps.leaf} and ps.leaf.parent is plain.root_subgroup
    tree = PodGroupInfo(msgspec.convert(
        {"metadata": {"name": "t", "namespace": "ns"},
         "spec": {"minMember": 1, "queue": "q",
                  "subGroups": [{"name": "a", "minMember": 1}, {"name": "b", "parent": "a", "minMember": 1},
                                {"name": "c", "parent": "a", "minMember": 1}, {"name": "d", "minMember": 1}]}},
        PodGroup), 50, True)
    assert set(tree.podsets) == {"b", "c", "d"}
    for name, ps in tree.podsets.items():
        assert tree.subgroup_node(ps) is ps.leaf is tree.leaf_nodes[name]
        assert ps.leaf.name == name and ps.leaf.children == () and ps.leaf.is_leaf
    a = tree.podsets["b"].leaf.parent
    assert a.name == "a" and [c.name for c in a.children] == ["b", "c"]
    assert [c.name for c in tree.root_subgroup.children] == ["a", "d"]


def test_add_tasks_is_add_task_for_each():
    """``add_tasks`` (a bulk load's run of one job's pods) leaves the members, PodSet members
    and their order that ``add_task`` one pod at a time leaves, with and without SubGroups."""
    import msgspec

    from kai.api.k8s import Pod, PodGroup
    from kai.api.pod_info import PodInfo
    from kai.api.podgroup_info import PodGroupInfo
    from kai.api.resources import ResourceRegistry

    reg = ResourceRegistry()

    def pod(i, sub):
        labels = {"kai.scheduler/subgroup-name": sub} if sub else {}
        return PodInfo(msgspec.convert({"metadata": {"name": f"p{i}", "namespace": "ns", "uid": f"u{i}", "labels": labels},
                                        "spec": {"containers": [{"name": "c"}]}}, Pod), reg)

    for spec in ({"minMember": 2}, {"minMember": 2, "subGroups": [{"name": "a", "minMember": 1},
                                                                    {"name": "b", "minMember": 1}]}):
        pg = msgspec.convert({"metadata": {"name": "j", "namespace": "ns"}, "spec": spec}, PodGroup)
        for subs in (["", "", ""], ["a", "b", "a", ""], ["b", "zz"]):
            bulk, one = PodGroupInfo(pg, 50, True), PodGroupInfo(pg, 50, True)
            tasks = [pod(i, s) for i, s in enumerate(subs)]
            bulk.lone_task()
            bulk.add_tasks(tasks)
            for t in tasks:
                one.add_task(t)
            assert list(bulk.tasks) == list(one.tasks) and all(t.job_key == "ns/j" for t in tasks)
            assert {n: [t.uid for t in ps.tasks] for n, ps in bulk.podsets.items()} == \
                   {n: [t.uid for t in ps.tasks] for n, ps in one.podsets.items()}
            assert bulk.lone_task() is one.lone_task()
