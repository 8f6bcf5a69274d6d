"""PodCounts: pods per topology domain, for one session, kept current with its placements.

Inter-pod affinity, topology spread and host ports all ask "how many pods of some kind are in
this node's domain?". An *entry* answers that for one kind of pod (a ``matcher`` deciding
whether a pod counts, optionally a node filter) and one topology key: ``counts`` is
float64[D] over the key's domains (NodeTable label value ids; for ports, node columns).

An entry is built on first use from the PodTable (every pod on a node) and then kept current:
the session's allocate / deallocate handlers (fired by the Statement on allocate, pipeline,
evict and every undo) move a pod in or out of its node's domain in every entry it matches.
Moves that happened before an entry was built are replayed into it, so an entry built late is
the same as one built at session open. Nothing here survives the session.

Owned by the Session (``ssn.pod_counts``, created by the first plugin that needs it, see
``PodCounts.of``); read by kai.plugins.podaffinity, topologyspread and nodeports.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from kai.api import constants as C
from kai.api.affinity import HOSTNAME
from kai.cache.pod_table import (PREFERRED_AFFINITY, PREFERRED_ANTI, REQUIRED_AFFINITY, REQUIRED_ANTI,
                                  CarriedTerm)

S = C.PodStatus


class Entry:
    __slots__ = ("key", "counts", "releasing", "arriving", "dom", "matcher", "node_ok", "cache")

    def __init__(self, key, counts, dom, matcher, node_ok) -> None:
        self.key = key
        self.counts = counts          # float64[D]
        #: float64[D]: pods this session evicted from the domain, still there until they are gone
        self.releasing = np.zeros_like(counts)
        #: float64[D]: pods counted in ``counts`` that this session only pipelined there: they
        #: are not there yet (a pod needing them for its affinity must wait for them too)
        self.arriving = np.zeros_like(counts)
        self.dom = dom                # int32[N]: domain of each node column (-1: none)
        self.matcher = matcher        # fn(PodInfo) -> bool
        self.node_ok = node_ok        # uint8[N] or None: only pods on these nodes count
        self.cache: dict[str, bool] = {}

    def matches(self, task) -> bool:
        got = self.cache.get(task.uid)
        if got is None:
            got = self.cache[task.uid] = bool(self.matcher(task))
        return got


class PodCounts:
    def __init__(self, ssn) -> None:
        self.ssn = ssn
        self.table = ssn.state.pod_table
        self.nodes = ssn.state.nodes
        self.n_nodes = ssn.allocatable.shape[1]
        self.entries: dict[tuple, Entry] = {}
        self._dom: dict[str, tuple[np.ndarray, int]] = {}
        self._moves: dict[str, tuple[object, int]] = {}     # uid -> (task, node column or -1)
        self._identity: np.ndarray | None = None
        #: terms carried by pods this session placed, beyond the PodTable's (kind, weight, key) -> CarriedTerm
        self._session_terms: dict[tuple, CarriedTerm] = {}
        self._by_hint: dict[tuple, list[Entry]] = {}
        self._unhinted: list[Entry] = []
        self.terms_version = 0
        ssn.allocate_handlers.append(self._allocated)
        ssn.deallocate_handlers.append(self._deallocated)
        ssn.pipeline_handlers.append(self._pipelined)

    @staticmethod
    def of(ssn) -> "PodCounts":
        if ssn.pod_counts is None:
            ssn.pod_counts = PodCounts(ssn)
        return ssn.pod_counts

    # ------------------------------------------------------------------ domains
    def domains(self, key: str) -> tuple[np.ndarray, int]:
        """int32[N] domain id of every node for topology key ``key`` (-1: node lacks the label),
        and the number of domains. ``key=None`` is the node itself (host ports)."""
        got = self._dom.get(key)
        if got is None:
            if key is None:
                got = (self.identity(), self.n_nodes)
            else:
                col, values = self.nodes.label_column(key)
                col = np.ascontiguousarray(col[: self.n_nodes], dtype=np.int32)
                if not self.nodes.in_use[: self.n_nodes].all():
                    col = np.where(self.nodes.in_use[: self.n_nodes].astype(bool), col, -1).astype(np.int32)
                got = (col, max(len(values), 1))
            self._dom[key] = got
        return got

    def identity(self) -> np.ndarray:
        if self._identity is None:
            self._identity = np.arange(self.n_nodes, dtype=np.int32)
        return self._identity

    # ------------------------------------------------------------------ entries
    def entry(self, key: tuple, topology_key: str | None, matcher: Callable[[object], bool],
              rows: Callable[[], np.ndarray] | None = None, per_node: dict[int, int] | None = None,
              node_ok: np.ndarray | None = None, hint: tuple | None = None) -> Entry:
        """The entry ``key``, built on first use from either ``rows()`` (bool[table.n], the table
        rows that count) or ``per_node`` (node column -> pods that count, e.g. a PodTable index);
        ``matcher(task)`` tells whether a pod placed or evicted in the session counts (and, with
        ``per_node``, whether a table pod did); ``node_ok`` (uint8[N]) limits all of it to pods
        on those nodes. ``hint``: a necessary condition for ``matcher``, so placements only
        consult the entries they may change: ``("label", key, value)`` (the pod carries that
        label), ``("carry", kind, weight, term key)`` or ``("port", protocol, port)``."""
        e = self.entries.get(key)
        if e is not None:
            return e
        dom, n_dom = self.domains(topology_key)
        t = self.table
        node = t.node[: t.n]
        if rows is not None:
            m = rows() & (node >= 0) & (node < self.n_nodes)
            if node_ok is not None:
                m &= node_ok[np.clip(node, 0, max(self.n_nodes - 1, 0))].astype(bool)
            d = dom[node[m]] if self.n_nodes else np.zeros(0, dtype=np.int32)
            counts = np.bincount(d[d >= 0], minlength=n_dom).astype(np.float64)
        else:
            m = None
            counts = np.zeros(n_dom)
            for n, c in (per_node or {}).items():
                if 0 <= n < self.n_nodes and dom[n] >= 0 and (node_ok is None or node_ok[n]):
                    counts[dom[n]] += c
        e = Entry(key, counts, dom, matcher, node_ok)
        for uid, (task, n) in self._moves.items():          # replay this session's moves
            r = t.row_of.get(uid)
            at = int(node[r]) if r is not None else -1
            if at == n:
                continue                                     # the table already has it there
            if r is not None:
                counted = m[r] if m is not None else (
                    0 <= at < self.n_nodes and (node_ok is None or node_ok[at]) and e.matches(t.pods[r]))
                if counted:
                    self._add(e, at, -1.0)
                    self._add(e, at, 1.0, e.releasing)
            if n >= 0 and (node_ok is None or node_ok[n]) and e.matches(task):
                self._add(e, n, 1.0)
                if task.status == S.PIPELINED:
                    self._add(e, n, 1.0, e.arriving)
        self.entries[key] = e
        if hint is None:
            self._unhinted.append(e)
        else:
            self._by_hint.setdefault(hint, []).append(e)
        return e

    def _relevant(self, task) -> list[Entry]:
        """The entries a placement or eviction of ``task`` may change (see ``entry``'s hint)."""
        out = list(self._unhinted)
        by = self._by_hint
        if not by:
            return out
        for kv in task.pod.metadata.labels.items():
            got = by.get(("label",) + kv)
            if got:
                out.extend(got)
        c = task.constraints
        if c is not None:
            for kind, items in ((REQUIRED_ANTI, [(0, t) for t in c.anti_affinity]),
                                (REQUIRED_AFFINITY, [(0, t) for t in c.affinity]),
                                (PREFERRED_AFFINITY, c.preferred_affinity), (PREFERRED_ANTI, c.preferred_anti)):
                for w, t in items:
                    got = by.get(("carry", kind, w, t.key))
                    if got:
                        out.extend(got)
            for _ip, proto, port in c.ports:
                got = by.get(("port", proto, port))
                if got:
                    out.extend(got)
        return out

    @staticmethod
    def _add(e: Entry, n: int, sign: float, arr: np.ndarray | None = None) -> None:
        d = e.dom[n]
        if d >= 0:
            (e.counts if arr is None else arr)[d] += sign

    # ------------------------------------------------------------------ session moves
    def _node_of(self, task) -> int:
        info = self.nodes.by_name.get(task.node_name) if task.node_name else None
        return info.idx if info is not None and info.idx < self.n_nodes else -1

    def _table_node(self, task) -> int:
        r = self.table.row_of.get(task.uid)
        return int(self.table.node[r]) if r is not None else -1

    def carried_terms(self):
        """Every distinct (anti-)affinity term carried by a pod on a node, the PodTable's and
        those of pods placed in this session (their carriers are counted by the entries)."""
        if not self._session_terms:
            return self.table.terms.values()
        return list(self.table.terms.values()) + [ct for k, ct in self._session_terms.items()
                                                   if k not in self.table.terms]

    def _note_terms(self, task) -> None:
        pc = task.constraints
        if pc is None or not pc.has_terms:
            return
        for kind, items in ((REQUIRED_ANTI, [(0, t) for t in pc.anti_affinity]),
                            (REQUIRED_AFFINITY, [(0, t) for t in pc.affinity]),
                            (PREFERRED_AFFINITY, pc.preferred_affinity), (PREFERRED_ANTI, pc.preferred_anti)):
            for w, t in items:
                k = (kind, w, t.key)
                if k not in self.table.terms and k not in self._session_terms:
                    self._session_terms[k] = CarriedTerm(kind, w, t)
                    self.terms_version += 1

    def _allocated(self, task) -> None:
        n = self._node_of(task)
        if n < 0:
            return
        self._note_terms(task)
        back = n == self._table_node(task)        # an eviction undone: it no longer releases
        piped = task.status == S.PIPELINED
        self._record(task, n)
        for e in self._relevant(task):
            if (e.node_ok is None or e.node_ok[n]) and e.matches(task):
                self._add(e, n, 1.0)
                if back:
                    self._add(e, n, -1.0, e.releasing)
                if piped:
                    self._add(e, n, 1.0, e.arriving)

    def _deallocated(self, task) -> None:
        n = self._node_of(task)
        if n < 0:
            return
        evicted = n == self._table_node(task)     # leaves a node it really runs on: releasing
        piped = task.status == S.PIPELINED
        self._record(task, -1)
        for e in self._relevant(task):
            if (e.node_ok is None or e.node_ok[n]) and e.matches(task):
                self._add(e, n, -1.0)
                if evicted:
                    self._add(e, n, 1.0, e.releasing)
                if piped:
                    self._add(e, n, -1.0, e.arriving)

    def _pipelined(self, task) -> None:
        n = self._node_of(task)
        if n < 0:
            return
        for e in self._relevant(task):
            if (e.node_ok is None or e.node_ok[n]) and e.matches(task):
                self._add(e, n, 1.0, e.arriving)

    def _record(self, task, n: int) -> None:
        r = self.table.row_of.get(task.uid)
        at = int(self.table.node[r]) if r is not None else -1
        if n == at:
            self._moves.pop(task.uid, None)        # back where the table has it
        else:
            self._moves[task.uid] = (task, n)

    # ------------------------------------------------------------------ helpers
    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        return self.ssn.state.namespaces.get(namespace)

    def term_rows(self, term) -> np.ndarray:
        """bool[table.n]: rows of pods that match ``term`` (namespaces, namespaceSelector, labels)."""
        t = self.table
        allowed = set(term.namespaces)
        if not term.ns_selector.nothing:
            known = self.ssn.state.namespaces
            allowed |= {ns for ns in set(t.ns_ids) | set(known) if term.ns_selector.matches(known.get(ns, {}))}
        return t.rows_in_namespaces(allowed) & t.rows_matching(term.selector)

    @staticmethod
    def label_hint(selector) -> tuple | None:
        """("label", key, value) when ``selector`` requires one label value, else None."""
        for key, op, values in selector.requirements:
            if op == "In" and len(values) == 1:
                return ("label", key, next(iter(values)))
        return None

    def term_matcher(self, term) -> Callable[[object], bool]:
        def match(task) -> bool:
            return term.matches(task.namespace, task.pod.metadata.labels, self.namespace_labels(task.namespace))
        return match


__all__ = ["PodCounts", "Entry", "HOSTNAME"]
