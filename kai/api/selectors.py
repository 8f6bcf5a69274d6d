"""Label selectors (metav1.LabelSelector) compiled once, matched against label dicts.

A ``Selector`` is an AND of requirements ``(key, operator, values)`` with Kubernetes'
semantics: ``In`` needs the label with one of the values, ``NotIn`` passes when the label is
absent or has another value, ``Exists`` / ``DoesNotExist`` test presence. A missing selector
(``None``) matches nothing, an empty one (``{}``) everything. ``key`` is a canonical, hashable
form: equal selectors share cache entries. Used by the affinity / spread model
(kai.api.affinity) and, vectorized over pods, by kai.cache.pod_table.
"""
from __future__ import annotations

from kai.api.k8s import LabelSelector

_OPS = {"In", "NotIn", "Exists", "DoesNotExist"}


class SelectorError(ValueError):
    """A label selector Kubernetes would refuse (unknown operator, In without values, ...)."""


class Selector:
    __slots__ = ("requirements", "nothing", "key")

    def __init__(self, requirements: tuple = (), nothing: bool = False) -> None:
        self.requirements: tuple[tuple[str, str, frozenset[str]], ...] = tuple(sorted(
            requirements, key=lambda r: (r[0], r[1], tuple(sorted(r[2])))))
        self.nothing = nothing
        self.key = ("nothing",) if nothing else tuple((k, op, tuple(sorted(v))) for k, op, v in self.requirements)

    @property
    def everything(self) -> bool:
        return not self.nothing and not self.requirements

    def matches(self, labels: dict[str, str]) -> bool:
        if self.nothing:
            return False
        for key, op, values in self.requirements:
            v = labels.get(key)
            if op == "In":
                if v is None or v not in values:
                    return False
            elif op == "NotIn":
                if v is not None and v in values:
                    return False
            elif op == "Exists":
                if v is None:
                    return False
            elif v is not None:            # DoesNotExist
                return False
        return True

    def with_requirements(self, extra: list[tuple[str, str, frozenset[str]]]) -> "Selector":
        if self.nothing:
            return self
        return Selector(self.requirements + tuple(extra))

    def __eq__(self, other) -> bool:
        return isinstance(other, Selector) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return "Selector(nothing)" if self.nothing else f"Selector({list(self.key)})"


NOTHING = Selector(nothing=True)
EVERYTHING = Selector()


def compile_selector(ls: LabelSelector | None) -> Selector:
    """The Selector of ``ls``; raises SelectorError for one Kubernetes would refuse."""
    if ls is None:
        return NOTHING
    reqs = [(k, "In", frozenset([v])) for k, v in ls.match_labels.items()]
    for e in ls.match_expressions:
        if e.operator not in _OPS:
            raise SelectorError(f"label selector operator {e.operator!r} on key {e.key!r} is not one of "
                                f"{sorted(_OPS)}")
        if e.operator in ("In", "NotIn") and not e.values:
            raise SelectorError(f"label selector {e.operator} on key {e.key!r} needs values")
        if e.operator in ("Exists", "DoesNotExist") and e.values:
            raise SelectorError(f"label selector {e.operator} on key {e.key!r} takes no values")
        if not e.key:
            raise SelectorError("label selector requirement without a key")
        reqs.append((e.key, e.operator, frozenset(e.values)))
    return Selector(tuple(reqs))
