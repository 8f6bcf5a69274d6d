"""JobsOrderByQueues: pop jobs in queue-fair order down the queue tree (KAI's iteration).

Leaf queues hold their jobs sorted by the session's job order (a sorted list read from a
position: one sort, often of nearly sorted keys, instead of a heap pop per job); at each level the child
whose best pending job compares first under the session's queue order wins. Popped jobs
that still have work (elastic extras) are pushed back and compete again.

Only queues that hold jobs are visited: each inner queue keeps the list of its children with
jobs in their subtree (in the tree's child order, which breaks ties exactly as a walk over
every child would), and a leaf leaves its parent's list when its jobs run out or its
``depth`` is used up. A pop therefore costs the comparisons among queues that have work,
whatever the number of queues in the tree (5,000 queues with a backlog in 50 cost as 50).

A pop that places nothing keeps every cached pick when the popped leaf's next job looks the
same to the queue order as the job it follows (the same *job view*: the queue comparator reads
a head job only through it, e.g. the proportion plugin's init request). Every comparison would
then be asked again with the same arguments and give the same answers, so the picks along the
leaf's path carry over to the new head: a backlog of identical jobs held back by quota costs a
dictionary update a pop, not a comparison of every queue with work.

When a leaf runs out, its parent must pick again among the rest. Where the queue order is a
strict total order over a queue's children (``total_order_fn``: the proportion comparator is
one when its rule 7 vectors form a chain), the linear walk's answer is simply the smallest
child, so a queue picked twice without an allocation in between keeps its children sorted:
a child that runs out leaves the list, a child whose head changed is put back by binary
search, and the pick is the list's first child. Where the order is not known to be total
(rule 7 is a partial order), every pick walks the children as before.
"""
from __future__ import annotations

import bisect
import functools
import itertools
from operator import itemgetter

from kai.api.podgroup_info import PodGroupInfo


#: False: every pick walks the queues with work afresh (the reference the tests compare the
#: cached picks with)
USE_CACHE = True


def _queue_order_methods(ssn, explicit: str, method: str):
    """(``ssn.<explicit>``, None) when the session sets it; else (None, the ``method`` of the
    object behind each of ``ssn.queue_order_fns``), or (None, None) when one of them lacks it
    or the session has no such list."""
    got = getattr(ssn, explicit, None)
    if got is not None:
        return got, None
    fns = getattr(ssn, "queue_order_fns", None)
    if fns is None:
        return None, None
    methods = [getattr(getattr(fn, "__self__", None), method, None) for fn in fns]
    return None, (None if any(m is None for m in methods) else methods)


def total_order_fn(ssn):
    """``[QueueInfo] -> bool``: True when the session's queue order is a strict total order
    over those queues whatever their head jobs (so a sorted list picks what the linear walk
    picks), or None when that cannot be known.

    ``ssn.queue_order_total`` wins when set; otherwise each of ``ssn.queue_order_fns`` must be
    a bound method of an object with a ``total_over(queues)`` method. The session's fallback
    (priority, creation time, name) is total, so the first fn that answers decides a pair
    and the lexicographic whole is total when every fn is a total preorder there."""
    explicit, checks = _queue_order_methods(ssn, "queue_order_total", "total_over")
    if explicit is not None or checks is None:
        return explicit
    return lambda queues: all(check(queues) for check in checks)


#: a queue's children are kept sorted once it has this many with work and was picked twice
#: without an allocation between (sorting costs n log n comparisons; a walk n)
SORT_MIN_CHILDREN = 8


def job_view_fn(ssn):
    """``job -> hashable``: everything the session's queue order reads from a head job, or
    None when that is not known (no reuse of picks across a change of head).

    ``ssn.queue_job_view`` wins when set; otherwise each of ``ssn.queue_order_fns`` must be a
    bound method of an object with a ``job_view(job)`` method (the proportion plugin's
    QueueOrder); no queue order fns: the fallback order reads no job at all."""
    explicit, views = _queue_order_methods(ssn, "queue_job_view", "job_view")
    if explicit is not None or views is None:
        return explicit
    if not views:
        return lambda job: ()
    if len(views) == 1:
        return views[0]
    return lambda job: tuple(v(job) for v in views)


def path_local_fn(ssn) -> bool:
    """True when an allocation event moves, for the session's queue order, only the queues on
    the path of the event's job's queue (each queue's view reads its own figures and its head
    job alone, and the job's queue and its ancestors are the figures that move): a walk then
    re-asks those paths after an event instead of every queue. The session must log the
    events' queues (``ssn.event_queues``).

    ``ssn.queue_order_path_local`` wins when set; otherwise every one of
    ``ssn.queue_order_fns`` must be a bound method of an object whose ``path_local`` is True
    (the proportion plugin's QueueOrder); no queue order fns: the fallback order reads no
    figures at all."""
    if not isinstance(getattr(ssn, "event_queues", None), list):
        return False
    explicit = getattr(ssn, "queue_order_path_local", None)
    if explicit is not None:
        return bool(explicit)
    fns = getattr(ssn, "queue_order_fns", None)
    if fns is None:
        return False
    return all(getattr(getattr(fn, "__self__", None), "path_local", False) is True for fn in fns)


_first = itemgetter(0)
_UNKNOWN = object()          # not in a dict of picks (a kept pick may be None: no work)


class JobsOrderByQueues:
    def __init__(self, ssn, jobs: list[PodGroupInfo], depth: int | None = None,
                 sorted_leaves: dict[str, list] | None = None, runs: dict | None = None,
                 replay: list | None = None) -> None:
        """``jobs`` in queue-fair order, each leaf's popped at most ``depth`` times.

        ``sorted_leaves`` (each leaf's entries ``(job order key, unique int, job)``, sorted,
        for exactly ``jobs`` as they are now; e.g. the pending index's, or an earlier walk's
        ``leaves`` before any push, with no allocation event since) saves the sort; its lists are never mutated here (a
        push copies its leaf's list first). ``runs`` (leaf -> memo) keeps :meth:`skip_alike`'s
        look-alike runs found in those lists, for any later walk over the same lists: a run
        is a function of the jobs alone (kept only where the alike relation vouches for the
        job view, see ``skip_alike``).

        ``replay``: the :attr:`trace` of a complete earlier walk over the same lists with the
        same depth and no allocation event since. With nothing moving, the walk's pops are a
        function of the lists and the session state alone (a refused job and the look-alikes
        passed over after it are pops that change nothing), so this walk pops in the recorded
        order without asking the queue order, until an allocation event fires; from there on
        it picks live from where it stands."""
        self.ssn = ssn
        self.tree = ssn.queues
        #: name -> QueueInfo lookup of the tree (its dict's own ``get`` when it has one: no
        #: Python frame per lookup on the pop path)
        queues = getattr(self.tree, "queues", None)
        self._queue = queues.get if isinstance(queues, dict) else self.tree.get
        self._counter = itertools.count()
        self.leaves: dict[str, list] = {}
        self.depth = depth
        self.popped: dict[str, int] = {}
        #: leaf -> index of its next job in ``leaves[leaf]`` (sorted by (job order key, arrival))
        self._pos: dict[str, int] = {}
        #: inner queue name ("" for the forest of roots) -> its children with jobs, in tree order
        self._active: dict[str, list[str]] = {}
        #: inner queue name ("" for the roots) -> its ``_pick`` answer, kept while nothing it
        #: depends on moved: dropped along a leaf's path when the leaf's head or active state
        #: changes, and when an allocate/deallocate/pipeline event fired (the queue order's
        #: allocated vectors moved) along the paths of the events' queues (path-local order)
        #: or all at once. A pop that places nothing then costs the
        #: comparisons along one path, not among every queue with work.
        self._best: dict[str, tuple | None] = {}
        self._events = ssn.alloc_events
        #: path-local queue order (``path_local_fn``): an event drops the picks along its
        #: queue's path only (read from ``ssn.event_queues`` from ``_log_pos`` on)
        self._path_local = path_local_fn(ssn)
        self._log_pos = len(ssn.event_queues) if self._path_local else 0
        #: (leaf, job) of the last live pop while its leaf stays open: what the picks along the
        #: leaf's path owe that pop (carried to the new head, or dropped), settled when next
        #: read (``_settle``); after an allocation event every pick is dropped anyway, and
        #: after a pop that placed something one comes before the next pop
        self._advanced: tuple | None = None
        self._view = job_view_fn(ssn)
        self._total = total_order_fn(ssn)
        #: inner queue key -> its children with work, sorted by the queue order (kept only
        #: while the order is total over them and, unless the order is path-local, no
        #: allocation event fired: a path-local event puts the child on its path back)
        self._sorted: dict[str, list[str]] = {}
        #: inner queue key -> children out of ``_sorted[key]`` whose head changed (put back
        #: by binary search at the next pick)
        self._dirty: dict[str, set[str]] = {}
        #: inner queue key -> walks of its children since the last allocation event
        self._walks: dict[str, int] = {}
        self._parents: dict[str, str | None] = {}        # ``_parent_key`` answers
        #: leaves whose list this walk copied (it may change them; the others may be shared)
        self._owned: set[str] = set()
        #: leaf -> {(alike fn, position): end of the look-alike run after that position}:
        #: valid for the leaf's list while no allocation event fired since ``_runs_events``
        #: and nothing was pushed to it
        self._runs: dict[str, dict] = runs if runs is not None else {}
        self._runs_events = ssn.alloc_events
        #: the full pop sequence as [leaf, pops] segments (look-alikes passed over counted as
        #: pops), while no allocation event fired since ``_trace_events`` and nothing was
        #: pushed; ``trace_complete`` once the walk ran out that way
        self.trace: list[list] | None = [] if replay is None else None
        self.trace_complete = False
        self._trace_events = ssn.alloc_events
        #: replaying an earlier walk's trace: (segments, segment index, pops into it)
        self._replay: list | None = replay
        self._seg = 0
        self._off = 0
        if sorted_leaves is not None:
            self.leaves = dict(sorted_leaves)
            self._counter = itertools.count(sum(len(e) for e in sorted_leaves.values()))
        else:
            keys = [(ssn.job_order_key(job), next(self._counter), job) for job in jobs]
            for entry in keys:
                self.leaves.setdefault(entry[2].queue, []).append(entry)
            for entries in self.leaves.values():
                # by the job order key alone (cheaper compares): the sort is stable and the
                # arrival numbers increase in list order, so equal keys stay as they would
                entries.sort(key=_first)
        self._build_active()

    def _build_active(self) -> None:
        """Every queue with an open leaf below it, then each parent's list in tree order."""
        self._active = {}
        busy: set[str] = set()
        for name in self.leaves:
            if not self._leaf_open(name):
                continue
            while name not in busy:
                key = self._parent_key(name)
                if key is None:
                    break
                busy.add(name)
                if key == "":
                    break
                name = key
        for key in {"", *(self._parent_key(n) for n in busy)}:
            if key is not None:
                kids = [c for c in self._children_of(key) if c in busy]
                if kids:
                    self._active[key] = kids

    # ------------------------------------------------------------------ active subtrees
    def _parent_key(self, name: str) -> str | None:
        """The ``_active`` key that lists ``name`` ("" for a root), None when not in the tree
        (memoized: the tree does not change during a walk)."""
        got = self._parents.get(name, False)
        if got is False:
            q = self.tree.get(name)
            got = None if q is None else (q.parent if q.parent and self.tree.get(q.parent) is not None else "")
            self._parents[name] = got
        return got

    def _children_of(self, key: str) -> list[str]:
        if key == "":
            return [q.name for q in self.tree.roots()]
        q = self.tree.get(key)
        return list(q.children) if q is not None else []

    def _forget_path(self, name: str) -> None:
        """Drop the cached picks of ``name``'s ancestors (its head or active state changed);
        in a sorted parent the child on the path waits to be put back."""
        best = self._best
        if not best and not self._sorted:
            return
        sorted_ = self._sorted
        while True:
            key = self._parent_key(name)
            if key is None:
                return
            best.pop(key, None)
            srt = sorted_.get(key)
            if srt is not None:
                dirty = self._dirty.setdefault(key, set())
                if name not in dirty:
                    if name in srt:
                        srt.remove(name)
                    dirty.add(name)
            if key == "":
                return
            name = key

    def _unsort(self, key: str, name: str) -> None:
        """``name`` has no more work: out of ``key``'s sorted list for good."""
        srt = self._sorted.get(key)
        if srt is not None:
            if name in srt:
                srt.remove(name)
            self._dirty.get(key, set()).discard(name)

    def _carry(self, name: str, head: PodGroupInfo) -> None:
        """The picks along ``name``'s path now name ``head``, the leaf's new first job (same
        job view as the one popped, nothing moved: every comparison answers as before)."""
        best = self._best
        while True:
            key = self._parent_key(name)
            if key is None:
                return
            got = best.get(key)
            if got is not None:
                best[key] = (got[0], head, got[2])
            if key == "":
                return
            name = key

    def _check_events(self) -> None:
        if self.ssn.alloc_events != self._events:
            self._events = self.ssn.alloc_events
            if self._path_local:
                log = self.ssn.event_queues
                start = self._log_pos
                end = self._log_pos = len(log)
                # only these queues' paths moved: their picks go, and in a sorted parent the
                # child on such a path waits to be put back (the order stays total over the
                # rest: it reads fixed figures)
                if end - start == 1:            # (the common case: one placement since)
                    name = log[start]
                    if name is not None:
                        self._forget_path(name)
                        return
                elif end > start:               # (none logged: not known, drop all)
                    moved = set(log[start:end])
                    if None not in moved:
                        for name in moved:
                            self._forget_path(name)
                        return
            self._best.clear()
            self._sorted.clear()
            self._dirty.clear()
            self._walks.clear()

    def _activate(self, name: str) -> None:
        """``name`` has work: list it under its parent, and the parent under its own, up to the roots."""
        self._forget_path(name)
        while True:
            key = self._parent_key(name)
            if key is None:
                return
            active = self._active.get(key)
            if active is None:
                self._active[key] = [name]
            elif name in active:
                return
            else:
                order = self._children_of(key)
                pos = {c: i for i, c in enumerate(order)}
                active.append(name)
                active.sort(key=lambda c: pos.get(c, len(pos)))
            if key == "":
                return
            name = key

    def _deactivate(self, name: str) -> None:
        """``name`` has no more work: take it off its parent's list, and empty parents off theirs."""
        if USE_CACHE and self._leave_sorted(name):
            return
        self._forget_path(name)
        while True:
            key = self._parent_key(name)
            if key is None:
                return
            active = self._active.get(key)
            if not active or name not in active:
                return
            active.remove(name)
            self._unsort(key, name)
            if active or key == "":
                return
            name = key

    def _leave_sorted(self, name: str) -> bool:
        """``name`` ran out, under a parent whose children are kept sorted (and none waits to
        be put back) and that keeps other work. When the parent's pick did not come from
        ``name``, nothing above changes; when it did, the parent's next child takes over, and
        if its head looks the same to the queue order (same job view) every comparison above
        answers as before: the parent keeps its place in every list above, and the cached
        picks along the path now name the new head and leaf. True when done so; False (and
        nothing changed) when that does not hold."""
        key = self._parent_key(name)
        if key is None or self._view is None:
            return False
        srt = self._sorted.get(key)
        active = self._active.get(key)
        if not srt or self._dirty.get(key) or not active or len(active) < 2 or name not in srt:
            return False
        old = self._best.get(key)
        if old is None or old[2] != name:
            if old is None:
                return False
            srt.remove(name)                   # not the parent's pick: nothing above moves
            active.remove(name)
            return True
        if srt[0] != name or len(srt) < 2:
            return False
        cand = self._pick_in(srt[1])
        if cand is None or self._view(cand[1]) != self._view(old[1]):
            return False
        srt.pop(0)
        active.remove(name)
        best = self._best
        best[key] = cand
        while key != "":
            child, key = key, self._parent_key(key)
            if key is None:
                break
            got = best.get(key)
            if got is None or got[2] != name:
                break                          # its pick is elsewhere, or not cached
            best[key] = (got[0], cand[1], cand[2])
        return True

    def _leaf_head(self, queue: str) -> PodGroupInfo | None:
        """The leaf's next job, None when it has none left or reached its depth."""
        entries = self.leaves.get(queue)
        if not entries:
            return None
        pos = self._pos.get(queue, 0)
        if pos >= len(entries) or (self.depth is not None and self.popped.get(queue, 0) >= self.depth):
            return None
        return entries[pos][2]

    def _leaf_open(self, queue: str) -> bool:
        return self._leaf_head(queue) is not None

    # ------------------------------------------------------------------ queue
    def push(self, job: PodGroupInfo) -> None:
        if self._replay is not None:
            self._go_live()
        if self._advanced is not None:
            self._settle()
        self.trace = None
        if job.queue not in self._owned:
            self._owned.add(job.queue)
            self.leaves[job.queue] = list(self.leaves.get(job.queue, ()))
        entries = self.leaves[job.queue]
        bisect.insort(entries, (self.ssn.job_order_key(job), next(self._counter), job), lo=self._pos.get(job.queue, 0))
        self._forget_path(job.queue)
        if self._leaf_open(job.queue):
            self._activate(job.queue)

    def _head(self, queue: str) -> PodGroupInfo | None:
        """Best job under ``queue`` (leaf: its first job; inner: best child's head)."""
        if self._advanced is not None:
            self._settle()
        got = self._pick_in(queue)
        return got[1] if got else None

    def _pick_in(self, queue: str):
        """(QueueInfo of ``queue``, its best job, the leaf holding it), or None."""
        q = self._queue(queue)
        if q is None:
            return None
        if not q.children:                              # a leaf (``is_leaf``, inline)
            entries = self.leaves.get(queue)            # ``_leaf_head``, inline (hot path)
            if not entries:
                return None
            pos = self._pos.get(queue, 0)
            if pos >= len(entries) or (self.depth is not None and self.popped.get(queue, 0) >= self.depth):
                return None
            return (q, entries[pos][2], queue)
        if USE_CACHE:
            best = self._best.get(queue, _UNKNOWN)
            if best is _UNKNOWN:
                best = self._best[queue] = self._pick_key(queue)
        else:
            best = self._pick(self._active.get(queue, ()))
        return (q, best[1], best[2]) if best else None

    def _pick(self, names):
        """The child that goes first under the session's queue order: (QueueInfo, head job, leaf)."""
        if len(names) == 1:
            return self._pick_in(names[0])
        best = None
        compare = self.ssn.queue_compare
        for name in names:
            cand = self._pick_in(name)
            if cand is None:
                continue
            if best is None or compare(cand[0], best[0], cand[1], best[1]) < 0:
                best = cand
        return best

    def _pick_key(self, key: str):
        """``_pick`` over ``key``'s children with work, through their sorted list when the
        queue order is total over them (the smallest child is what the walk picks)."""
        names = self._active.get(key, ())
        srt = self._sorted.get(key)
        if srt is not None:
            dirty = self._dirty.get(key)
            if dirty:
                for name in [n for n in names if n in dirty]:
                    cand = self._pick_in(name)
                    if cand is not None:
                        self._insert(srt, name, cand)
                dirty.clear()
            for name in srt:
                cand = self._pick_in(name)
                if cand is not None:
                    return cand
            return None
        best = self._pick(names)
        if len(names) >= SORT_MIN_CHILDREN and self._total is not None:
            walks = self._walks[key] = self._walks.get(key, 0) + 1
            if walks >= 2 and self._total([self.tree.get(n) for n in names]):
                self._sort_children(key, names)
        return best

    def _compare_cands(self, a, b) -> int:
        return self.ssn.queue_compare(a[1][0], b[1][0], a[1][1], b[1][1])

    def _sort_children(self, key: str, names) -> None:
        cands = [(n, c) for n in names if (c := self._pick_in(n)) is not None]
        cands.sort(key=functools.cmp_to_key(self._compare_cands))
        self._sorted[key] = [n for n, _ in cands]
        self._dirty[key] = set()

    def _insert(self, srt: list[str], name: str, cand) -> None:
        """Binary search for ``name``'s place in a sorted children list (a strict total order)."""
        compare = self.ssn.queue_compare
        lo, hi = 0, len(srt)
        while lo < hi:
            mid = (lo + hi) // 2
            other = self._pick_in(srt[mid])
            if compare(cand[0], other[0], cand[1], other[1]) < 0:
                hi = mid
            else:
                lo = mid + 1
        srt.insert(lo, name)

    def _best_child(self, names):
        best = self._pick(names)
        return (best[0], best[1]) if best else None

    def _go_live(self) -> None:
        """Stop replaying: pick live from the positions reached."""
        self._replay = None
        self._best.clear()
        self._sorted.clear()
        self._dirty.clear()
        self._walks.clear()
        self._events = self.ssn.alloc_events
        if self._path_local:
            self._log_pos = len(self.ssn.event_queues)
        self._build_active()

    def _replay_pop(self) -> PodGroupInfo | None:
        segs = self._replay
        if self._seg >= len(segs):
            return None
        name, count = segs[self._seg]
        pos = self._pos.get(name, 0)
        self._pos[name] = pos + 1
        self.popped[name] = self.popped.get(name, 0) + 1
        self._off += 1
        if self._off >= count:
            self._seg += 1
            self._off = 0
        return self.leaves[name][pos][2]

    def _settle(self) -> None:
        """Settle what the last pop owes the picks along its leaf's path (``_advanced``): with
        no allocation event since, carry them to the leaf's new head when it looks the same
        to the queue order, else drop them; after an event, the picks along the leaf's path
        (path-local order; ``_check_events`` drops the moved paths' before the next read)
        or nothing (``_check_events`` drops every pick). The views are as at the pop: no
        event, no status moved."""
        name, job = self._advanced
        self._advanced = None
        if self.ssn.alloc_events != self._events:
            if self._path_local:
                # the other paths' picks are kept; when the one event since is this leaf's
                # (the popped job placed), ``_check_events`` drops this path anyway
                log = self.ssn.event_queues
                if not (len(log) - self._log_pos == 1 and log[-1] == name):
                    self._forget_path(name)
            return
        head = self.leaves[name][self._pos.get(name, 0)][2]
        if self._view(head) == self._view(job):
            self._carry(name, head)
        else:
            self._forget_path(name)

    def pop(self) -> PodGroupInfo | None:
        if self._replay is not None:
            if self.ssn.alloc_events == self._trace_events:
                return self._replay_pop()
            self._go_live()
        if self._advanced is not None:
            self._settle()
        if self.ssn.alloc_events != self._events:
            self._check_events()
        if not USE_CACHE:
            best = self._pick(self._active.get("", ()))
        else:
            best = self._best.get("", _UNKNOWN)
            if best is _UNKNOWN:
                best = self._best[""] = self._pick_key("")
        trace = self.trace
        if trace is not None and self.ssn.alloc_events != self._trace_events:
            trace = self.trace = None
        if best is None:
            if trace is not None:
                self.trace_complete = True
            return None
        name = best[2]
        if trace is not None:
            if trace and trace[-1][0] == name:
                trace[-1][1] += 1
            else:
                trace.append([name, 1])
        self.popped[name] = self.popped.get(name, 0) + 1
        pos = self._pos.get(name, 0)
        entries = self.leaves[name]
        job = entries[pos][2]
        self._pos[name] = pos + 1
        if pos + 1 >= len(entries) or (self.depth is not None and self.popped[name] >= self.depth):
            self._deactivate(name)                  # (``_leaf_open``, inline)
        elif USE_CACHE and self._view is not None:
            self._advanced = (name, job)            # carried or dropped when next read
        else:
            self._forget_path(name)
        return job

    def skip_alike(self, job: PodGroupInfo, alike) -> int:
        """Pass over the jobs this walk would pop right after ``job`` that ``alike(job, other)``
        says get ``job``'s answer, as if each had been popped and refused; returns how many.

        The caller's contract: ``job`` was the last job popped, the action's answer for it
        placed nothing and changed nothing the action reads, and ``alike`` holds only for a
        job the action would answer the same way from the same state. The walk then pops
        ``job``'s leaf again and again (its picks carried, no allocation event) for as long
        as the next job looks the same to the queue order; this stops at the first job that
        is not alike, looks different, or lies past the leaf's depth."""
        if self._advanced is not None:
            self._settle()
        replaying = self._replay is not None and self.ssn.alloc_events == self._trace_events
        if not replaying and (not USE_CACHE or self._view is None or self.ssn.alloc_events != self._events):
            return 0
        leaf = job.queue
        entries = self.leaves.get(leaf)
        if replaying:
            if self._view is None or not entries:
                return 0
        else:
            best = self._best.get("")
            if best is None or best[2] != leaf or not entries:
                return 0
        pos = self._pos.get(leaf, 0)
        end = len(entries)
        if self.depth is not None:
            end = min(end, pos + self.depth - self.popped.get(leaf, 0))
        view = self._view(job)
        # alike jobs share what the view reads: no view to compare per job
        check_view = not (getattr(alike, "equal_init_requests", False)
                          and getattr(self._view, "reads_init_request", False))
        memo = None
        if not check_view and self._runs_events == self.ssn.alloc_events and leaf not in self._owned:
            memo = self._runs.get(leaf)
            if memo is None:
                memo = self._runs[leaf] = {}
        known = memo.get((alike, pos)) if memo is not None else None
        if known is not None:
            i = min(known, end)
        else:
            i = pos
            while i < end:
                other = entries[i][2]
                if not alike(job, other) or (check_view and self._view(other) != view):
                    break
                i += 1
            if memo is not None and (i < end or i == len(entries)):
                memo[(alike, pos)] = i              # the run's true end, not a depth cap
        skipped = i - pos
        if not skipped:
            return 0
        if replaying:
            segs = self._replay
            if (self._seg < len(segs) and segs[self._seg][0] == leaf
                    and skipped <= segs[self._seg][1] - self._off):
                self._pos[leaf] = i
                self.popped[leaf] = self.popped.get(leaf, 0) + skipped
                self._off += skipped
                if self._off >= segs[self._seg][1]:
                    self._seg += 1
                    self._off = 0
                return skipped
            self._go_live()                     # not what the trace says: pick live instead
            return 0
        if self.trace is not None:
            self.trace[-1][1] += skipped
        self._pos[leaf] = i
        self.popped[leaf] = self.popped.get(leaf, 0) + skipped
        if not self._leaf_open(leaf):
            self._deactivate(leaf)
        elif self._view(entries[i][2]) == view:
            self._carry(leaf, entries[i][2])
        else:
            self._forget_path(leaf)
        return skipped

    def __iter__(self):
        while True:
            job = self.pop()
            if job is None:
                return
            yield job
