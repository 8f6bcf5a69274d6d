"""Device inventory: every ResourceSlice device as a row of flat arrays, grouped by node.

Built from the ResourceSlices and the node list (names in the node table's column order,
plus labels for slices with a ``nodeSelector``) by :func:`build_inventory`; the cache
(:mod:`kai.cache.dra_store`) rebuilds it when slices or nodes change, never per cycle.

Rows are ordered so that the node-local devices of node ``n`` are rows
``node_start[n]:node_start[n+1]``; network-attached devices (slices with ``nodeSelector`` or
``allNodes``) follow from ``net_start``, each with a *scope*: a row of ``scope_nodes``
(uint8[S, N]) saying which nodes reach it.

Pools follow kube-scheduler's rules: per (driver, pool) only the slices of the newest
generation count; a pool is *complete* when it holds ``resourceSliceCount`` slices of that
generation and *invalid* when a device name repeats. Devices of incomplete or invalid pools,
and devices using a feature kai does not implement (``consumesCounters``,
``bindingConditions``, ``bindsToNode``; slices with ``perDeviceNodeSelection``), are kept out
of allocation (``dev_ok == 0``) with the reason in ``problems``, so a request that needs
them fails with a reason naming the field. Devices with NoSchedule/NoExecute taints are
usable only by requests that tolerate them.

Attribute and capacity columns are built lazily per fully qualified name (``domain/id``;
names without a domain take the driver's): ``int32[D]`` ids into a list of distinct values
(-1: the device lacks it), which is what :mod:`kai.dra.selector` evaluates on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

import numpy as np

from kai.api.dra import Device, DeviceTaint, DeviceToleration, ResourceSlice, attribute_value
from kai.api.k8s import NodeSelector
from kai.api.resources import QuantityError, parse_quantity
from kai.dra.cel import device_value

BLOCKING_TAINT_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass
class Pool:
    driver: str
    name: str
    generation: int
    slice_count: int            # resourceSliceCount of the newest generation
    slices: int = 0             # slices of that generation seen
    invalid: str = ""           # why the pool is invalid ("" = valid)

    @property
    def complete(self) -> bool:
        return self.slices == self.slice_count

    @property
    def key(self) -> str:
        return f"{self.driver}/{self.name}"


def qualified(name: str, driver: str) -> str:
    return name if "/" in name else f"{driver}/{name}"


def node_selector_mask(sel: NodeSelector | None, names: list[str], labels: list[dict[str, str]],
                       index: dict[str, int] | None = None) -> np.ndarray:
    """bool[N]: nodes matching a NodeSelector (terms ORed, requirements ANDed). With ``index``
    (name -> column), a term of only ``metadata.name In`` fields (what an allocation's
    nodeSelector for node-local devices is) is answered without a pass over the nodes."""
    n = len(names)
    out = np.zeros(n, dtype=bool)
    if sel is None:
        return out
    for term in sel.node_selector_terms:
        if not term.match_expressions and not term.match_fields:
            continue
        if index is not None and not term.match_expressions and len(term.match_fields) == 1 \
                and term.match_fields[0].key == "metadata.name" and term.match_fields[0].operator == "In":
            for v in term.match_fields[0].values:
                i = index.get(v)
                if i is not None:
                    out[i] = True
            continue
        m = np.ones(n, dtype=bool)
        for e in term.match_expressions:
            m &= np.fromiter((_requirement(e, lb.get(e.key)) for lb in labels), dtype=bool, count=n)
        for e in term.match_fields:
            if e.key != "metadata.name" or e.operator not in ("In", "NotIn"):
                m[:] = False
                continue
            m &= np.fromiter(((nm in e.values) == (e.operator == "In") for nm in names), dtype=bool, count=n)
        out |= m
    return out


def _requirement(e, value: str | None) -> bool:
    op = e.operator
    if op == "In":
        return value is not None and value in e.values
    if op == "NotIn":
        return value is None or value not in e.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            a, b = int(value), int(e.values[0])   # type: ignore[arg-type]
        except (TypeError, ValueError, IndexError):
            return False
        return a > b if op == "Gt" else a < b
    return False


def tolerates(tolerations: list[DeviceToleration], taint: DeviceTaint) -> bool:
    """Whether a request's tolerations cover one device taint (as node taints/tolerations)."""
    for t in tolerations:
        if t.effect and t.effect != taint.effect:
            continue
        if not t.key:
            if t.operator == "Exists":
                return True
            continue
        if t.key == taint.key and (t.operator == "Exists" or t.value == taint.value):
            return True
    return False


def _unsupported(dev: Device) -> str:
    if dev.consumes_counters:
        return "consumesCounters (partitionable devices)"
    if dev.binding_conditions or dev.binding_failure_conditions:
        return "bindingConditions (device binding conditions)"
    if dev.binds_to_node:
        return "bindsToNode (device binding conditions)"
    return ""


@dataclass
class Inventory:
    """Flat device arrays; see the module docstring. Read-only once built."""
    node_names: list[str]
    node_labels: list[dict[str, str]]
    node_index: dict[str, int]
    dev_node: np.ndarray            # int32[D]  node-local: node column; network-attached: -1
    dev_scope: np.ndarray           # int32[D]  network-attached: row of scope_nodes; node-local: -1
    scope_nodes: np.ndarray         # uint8[S, N]
    node_start: np.ndarray          # int32[N+1]
    net_start: int
    dev_pool: np.ndarray            # int32[D]  index into pools
    driver_ids: np.ndarray          # int32[D]  index into drivers
    drivers: list[str]
    dev_name: list[str]
    dev_ok: np.ndarray              # uint8[D]  1: allocatable (valid complete pool, no unsupported field)
    dev_tainted: np.ndarray         # uint8[D]  1: has a NoSchedule/NoExecute taint
    node_pool_bad: np.ndarray       # uint8[N]  1: node reaches an incomplete or invalid pool
    pools: list[Pool]
    scope_selectors: list[NodeSelector | None]     # per scope: the slice's selector (None: allNodes)
    problems: dict[int, str]        # row -> why dev_ok is 0
    taints: dict[int, list[DeviceTaint]]
    ignored: list[str]              # devices kai cannot place at all, with the field why
    row_of: dict[tuple[str, str, str], int]
    attrs: list[dict[str, tuple[str, Any]]]
    caps: list[dict[str, Decimal]]
    version: int = 0
    selector_cache: dict = field(default_factory=dict)
    _attr_cols: dict = field(default_factory=dict)
    _cap_cols: dict = field(default_factory=dict)
    _cel: dict = field(default_factory=dict)

    @property
    def n_devices(self) -> int:
        return len(self.dev_name)

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    def device_id(self, row: int) -> tuple[str, str, str]:
        p = self.pools[int(self.dev_pool[row])]
        return p.driver, p.name, self.dev_name[row]

    def attr_column(self, name: str) -> tuple[np.ndarray, list]:
        got = self._attr_cols.get(name)
        if got is None:
            got = self._attr_cols[name] = _intern([a.get(name) for a in self.attrs])
        return got

    def cap_column(self, name: str) -> tuple[np.ndarray, list]:
        got = self._cap_cols.get(name)
        if got is None:
            got = self._cap_cols[name] = _intern([c.get(name) for c in self.caps])
        return got

    def cel_device(self, row: int, domains: tuple[str, ...] = ()) -> dict[str, Any]:
        key = (row, domains)
        got = self._cel.get(key)
        if got is None:
            got = device_value(self.drivers[int(self.driver_ids[row])], self.attrs[row], self.caps[row], domains)
            if len(self._cel) < 200_000:
                self._cel[key] = got
        return got

    def reach(self, row: int) -> np.ndarray:
        """bool[N]: nodes that reach device ``row``."""
        n = int(self.dev_node[row])
        if n >= 0:
            m = np.zeros(self.n_nodes, dtype=bool)
            m[n] = True
            return m
        return self.scope_nodes[int(self.dev_scope[row])].astype(bool)

    def node_rows(self, node: int) -> np.ndarray:
        """int32 rows reachable from ``node``: its own, then network-attached ones."""
        local = np.arange(self.node_start[node], self.node_start[node + 1], dtype=np.int32)
        if self.net_start == self.n_devices:
            return local
        net = np.arange(self.net_start, self.n_devices, dtype=np.int32)
        net = net[self.scope_nodes[self.dev_scope[net], node] != 0]
        return np.concatenate([local, net])


def _intern(values: list) -> tuple[np.ndarray, list]:
    index: dict = {}
    ids = np.empty(len(values), dtype=np.int32)
    for i, v in enumerate(values):
        if v is None:
            ids[i] = -1
        else:
            j = index.get(v)
            if j is None:
                j = index[v] = len(index)
            ids[i] = j
    return ids, list(index)


def build_inventory(slices: Iterable[ResourceSlice], node_names: list[str],
                    node_labels: list[dict[str, str]] | None = None, version: int = 0) -> Inventory:
    """Slices + nodes (in node-table column order) -> Inventory."""
    node_labels = node_labels if node_labels is not None else [{} for _ in node_names]
    node_index = {n: i for i, n in enumerate(node_names)}
    n_nodes = len(node_names)

    # newest generation per pool
    newest: dict[tuple[str, str], list[ResourceSlice]] = {}
    for s in slices:
        key = (s.spec.driver, s.spec.pool.name)
        got = newest.get(key)
        if got is None or s.spec.pool.generation > got[0].spec.pool.generation:
            newest[key] = [s]
        elif s.spec.pool.generation == got[0].spec.pool.generation:
            got.append(s)

    pools: list[Pool] = []
    drivers: list[str] = []
    driver_idx: dict[str, int] = {}
    ignored: list[str] = []
    scope_key: dict[Any, int] = {}
    scope_rows: list[np.ndarray] = []
    scope_selectors: list[NodeSelector | None] = []
    # (sort key, pool idx, driver idx, device, node or -1, scope or -1, problem)
    rows: list[tuple] = []

    for (driver, pname), group in sorted(newest.items()):
        group.sort(key=lambda s: s.metadata.name)
        pool = Pool(driver, pname, group[0].spec.pool.generation, group[0].spec.pool.resource_slice_count,
                    slices=len(group))
        names: set[str] = set()
        for s in group:
            for d in s.spec.devices:
                if d.name in names and not pool.invalid:
                    pool.invalid = f"duplicate device name {d.name}"
                names.add(d.name)
        p_idx = len(pools)
        pools.append(pool)
        if driver not in driver_idx:
            driver_idx[driver] = len(drivers)
            drivers.append(driver)
        dv = driver_idx[driver]
        pool_problem = ("resource pool %s is incomplete (%d of %d slices of generation %d)"
                        % (pool.key, pool.slices, pool.slice_count, pool.generation)) if not pool.complete else \
            (f"resource pool {pool.key} is invalid: {pool.invalid}" if pool.invalid else "")
        for s in group:
            sp = s.spec
            node, scope = -1, -1
            if sp.node_name:
                node = node_index.get(sp.node_name, -1)
                if node < 0:
                    continue                  # a node kai does not know: no pod can reach it
            elif sp.all_nodes or sp.node_selector is not None:
                skey = "*" if sp.all_nodes else repr(sp.node_selector)
                scope = scope_key.get(skey, -1)
                if scope < 0:
                    scope = scope_key[skey] = len(scope_rows)
                    scope_rows.append(np.ones(n_nodes, dtype=np.uint8) if sp.all_nodes else
                                      node_selector_mask(sp.node_selector, node_names, node_labels).astype(np.uint8))
                    scope_selectors.append(None if sp.all_nodes else sp.node_selector)
            else:
                what = "perDeviceNodeSelection (partitionable devices)" if sp.per_device_node_selection \
                    else "no node selection"
                ignored.append(f"ResourceSlice {s.metadata.name}: {len(sp.devices)} devices: {what} "
                               "not supported")
                continue
            for d in sp.devices:
                problem = pool_problem or _unsupported(d)
                rows.append(((0, node) if node >= 0 else (1, 0), p_idx, dv, d, node, scope, problem))

    rows.sort(key=lambda r: r[0])           # stable: slice and device order kept within a node
    D = len(rows)
    dev_node = np.full(D, -1, dtype=np.int32)
    dev_scope = np.full(D, -1, dtype=np.int32)
    dev_pool = np.zeros(D, dtype=np.int32)
    driver_ids = np.zeros(D, dtype=np.int32)
    dev_ok = np.ones(D, dtype=np.uint8)
    dev_tainted = np.zeros(D, dtype=np.uint8)
    dev_name: list[str] = []
    problems: dict[int, str] = {}
    taints: dict[int, list[DeviceTaint]] = {}
    row_of: dict[tuple[str, str, str], int] = {}
    attrs: list[dict[str, tuple[str, Any]]] = []
    caps: list[dict[str, Decimal]] = []
    for i, (_, p_idx, dv, d, node, scope, problem) in enumerate(rows):
        dev_node[i], dev_scope[i], dev_pool[i], driver_ids[i] = node, scope, p_idx, dv
        dev_name.append(d.name)
        driver = drivers[dv]
        row_of.setdefault((driver, pools[p_idx].name, d.name), i)
        a: dict[str, tuple[str, Any]] = {}
        for k, attr in d.attributes.items():
            v = attribute_value(attr)
            if v is not None:
                a[qualified(k, driver)] = v
        attrs.append(a)
        c: dict[str, Decimal] = {}
        for k, cap in d.capacity.items():
            try:
                c[qualified(k, driver)] = parse_quantity(cap.value)
            except QuantityError:
                problem = problem or f"capacity {k}: invalid quantity {cap.value!r}"
        caps.append(c)
        blocking = [t for t in d.taints if t.effect in BLOCKING_TAINT_EFFECTS]
        if blocking:
            dev_tainted[i] = 1
            taints[i] = blocking
        if problem:
            dev_ok[i] = 0
            problems[i] = problem
    node_start = np.zeros(n_nodes + 1, dtype=np.int32)
    local = dev_node[dev_node >= 0]
    if n_nodes:
        np.cumsum(np.bincount(local, minlength=n_nodes), out=node_start[1:])
    net_start = int(node_start[-1])
    scope_nodes = np.ascontiguousarray(np.array(scope_rows, dtype=np.uint8).reshape(len(scope_rows), n_nodes))
    node_pool_bad = np.zeros(n_nodes, dtype=np.uint8)
    for p_idx, pool in enumerate(pools):
        if pool.complete and not pool.invalid:
            continue
        sel = dev_pool == p_idx
        nodes = dev_node[sel]
        node_pool_bad[nodes[nodes >= 0]] = 1
        for s in np.unique(dev_scope[sel]):
            if s >= 0:
                node_pool_bad |= scope_nodes[s]
    return Inventory(node_names=list(node_names), node_labels=node_labels, node_index=node_index, dev_node=dev_node, dev_scope=dev_scope,
                     scope_nodes=scope_nodes, node_start=node_start, net_start=net_start, dev_pool=dev_pool,
                     driver_ids=driver_ids, drivers=drivers, dev_name=dev_name, dev_ok=dev_ok,
                     dev_tainted=dev_tainted, node_pool_bad=node_pool_bad, pools=pools,
                     scope_selectors=scope_selectors, problems=problems, taints=taints, ignored=ignored,
                     row_of=row_of, attrs=attrs, caps=caps, version=version)
