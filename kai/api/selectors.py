"""Label selectors (metav1.LabelSelector) compiled once, matched against label dicts.

A ``Selector`` is an AND of requirements ``(key, operator, values)`` with Kubernetes'
semantics: ``In`` needs the label with one of the values, ``NotIn`` passes when the label is
absent or has another value, ``Exists`` / ``DoesNotExist`` test presence. A missing selector
(``None``) matches nothing, an empty one (``{}``) everything. ``key`` is a canonical, hashable
form: equal selectors share cache entries. Used by the affinity / spread model
(kai.api.affinity) and, vectorized over pods, by kai.cache.pod_table.
"""
from __future__ import annotations

import re

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


def parse_label_selector(text: str, where: str = "label selector") -> Selector:
    """The Selector of a label selector string as ``kubectl -l`` and the API's ``labelSelector``
    parameter take it: comma-separated ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``,
    ``k in (a,b)``, ``k notin (a,b)``. Empty text selects everything. Raises SelectorError
    naming ``where`` for text Kubernetes would refuse."""
    reqs: list[tuple[str, str, frozenset[str]]] = []
    for term in _split_terms(text, where):
        t = term.strip()
        low = t.replace("\t", " ")
        if not t:
            raise SelectorError(f"{where}: empty term in {text!r}")
        for word, op in ((" notin ", "NotIn"), (" in ", "In")):
            if word in low:
                key, _, rest = low.partition(word)
                rest = rest.strip()
                if not (rest.startswith("(") and rest.endswith(")")):
                    raise SelectorError(f"{where}: {t!r}: expected {word.strip()} (v1,v2,...)")
                values = frozenset(v.strip() for v in rest[1:-1].split(",") if v.strip())
                if not values:
                    raise SelectorError(f"{where}: {t!r}: {word.strip()} needs values")
                reqs.append((_check_key(key.strip(), where), op, values))
                break
        else:
            if t.startswith("!"):
                reqs.append((_check_key(t[1:].strip(), where), "DoesNotExist", frozenset()))
            elif "!=" in t:
                k, _, v = t.partition("!=")
                reqs.append((_check_key(k.strip(), where), "NotIn", frozenset([_check_value(v.strip(), where)])))
            elif "=" in t:
                k, _, v = t.partition("==") if "==" in t else t.partition("=")
                reqs.append((_check_key(k.strip(), where), "In", frozenset([_check_value(v.strip(), where)])))
            else:
                reqs.append((_check_key(t, where), "Exists", frozenset()))
    return Selector(tuple(reqs))


def selector_string(sel: Selector) -> str:
    """The API's ``labelSelector`` text of ``sel`` (canonical order); "" for everything."""
    out = []
    for key, op, values in sel.requirements:
        if op == "In":
            out.append(f"{key}={next(iter(values))}" if len(values) == 1 else f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            out.append(f"{key}!={next(iter(values))}" if len(values) == 1
                       else f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            out.append(key)
        else:
            out.append(f"!{key}")
    return ",".join(out)


def _split_terms(text: str, where: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, cur = [], 0, []
    for ch in text.strip():
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"{where}: unbalanced ')' in {text!r}")
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise SelectorError(f"{where}: unbalanced '(' in {text!r}")
    if cur or terms:
        terms.append("".join(cur))
    return terms


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_key(key: str, where: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if not _LABEL_NAME.match(name) or (slash and (len(prefix) > 253 or not _PREFIX.match(prefix))):
        raise SelectorError(f"{where}: {key!r} is not a valid label key")
    return key


def _check_value(value: str, where: str) -> str:
    if value and not _LABEL_NAME.match(value):
        raise SelectorError(f"{where}: {value!r} is not a valid label value")
    return value
