"""Lone answers: what the plugins' hooks say about a single-pod job, asked once per look-alike class.

Allocate asks the same hooks for every single-pod job it places (``allocate._allocate_lone``):
the SubsetNodes fns, which node predicates apply, the pre-predicates, the node mask, the
NodeOrder fns and the domain constraints. For the common pod that nothing constrains beyond its
static node mask, every one of them answers "nothing to add", job after job: a Deployment's,
a sweep's or an inference service's pods are copies of each other (kai.actions.common.lookalike).

:class:`LoneAnswers` keeps that answer for a look-alike class once one job of it got it: the
node mask the job was placed in. The next job of the class skips the hooks and goes straight to
the placement kernel with that mask. Only this "nothing to add" answer is kept: a pod that a
predicate applies to, a pre-predicate refuses, or a NodeOrder fn scores is asked in full, job
after job, as before.

This is sound only when every hook keeps the look-alike contract
(``kai.framework.plugin.alike_stable``): its answer depends only on what look-alike jobs share and
on session state that placements do not change. The memo is off for the session when any
registered hook does not declare it. Which predicates apply also depends on the terms placed
pods carry (inter-pod anti-affinity symmetry): an answer is kept with the session's
``predicate_epoch`` and is not used after the epoch moves.

Single-pod Jobs differ from each other only in their labels (``job-name``,
``controller-uid``). While no pod carries inter-pod terms (epoch ``(0, 0)``) and every
registered hook declares that it then does not read the pod's labels
(``kai.framework.plugin.label_blind``), a class is keyed without the labels
(``kai.api.alike_key.label_blind_key``), so such Jobs share one answer too.
"""
from __future__ import annotations

from kai.actions.common import lookalike
from kai.actions.common.lookalike import NO_TERMS, PLACEMENT_HOOKS, hooks_label_blind
from kai.api.alike_key import alike_key, label_blind_key

#: False: every job asks the hooks (the reference the tests compare the memo with)
USE_MEMO = True
_MEMO = "lone_answers"
#: after this many lookups in a session, the memo stays on only if at least one in
#: ``_MIN_HIT_SHARE`` found a kept answer: pods that are all different (each with an
#: annotation or env of its own, or Jobs' pods once labels count) would be looked up each
#: and never reuse an answer
_TRIAL = 256
_MIN_HIT_SHARE = 4


class LoneAnswer:
    """One look-alike class's answer: its node mask, at a predicate epoch, and the
    ``Statement.allocate_one`` set-up of the class per pipelining flag."""

    __slots__ = ("epoch", "mask", "classes")

    def __init__(self, epoch: tuple, mask) -> None:
        self.epoch = epoch
        self.mask = mask                # uint8[N], the static mask (and stable plugin masks)
        self.classes: dict[bool, object] = {}      # allow_pipeline -> session LoneClass


class LoneAnswers:
    """The session's kept answers (see the module docstring). ``usable`` is False when a
    registered hook does not declare the look-alike contract; then nothing is kept."""

    def __init__(self, ssn) -> None:
        self.ssn = ssn
        hooks = [h for name in PLACEMENT_HOOKS for h in getattr(ssn, name)]
        self.usable = USE_MEMO and all(getattr(h, "alike_stable", False) for h in hooks)
        #: every hook declares ``label_blind``: classes are keyed without labels at epoch (0, 0)
        #: (``lookalike.USE_BLIND`` False: never)
        self.blind = self.usable and lookalike.USE_BLIND and hooks_label_blind(ssn, PLACEMENT_HOOKS)
        self.answers: dict[tuple, LoneAnswer] = {}
        self.lookups = 0
        self.hits = 0

    def class_key(self, job, task) -> tuple | None:
        """The look-alike class of a single-pod job (the fields ``look_alike`` compares, its
        pod's labels left out while ``blind`` holds at epoch (0, 0)), or None when its pod is
        never a look-alike."""
        if self.blind and self.ssn.predicate_epoch() == NO_TERMS:
            key = label_blind_key(task)
        else:
            key = alike_key(task)
        if key is None:
            return None
        return (key, job.queue, job.priority, job.preemptible, job.min_member, job.priority_class,
                job.scheduling_backoff)

    def get(self, key: tuple) -> LoneAnswer | None:
        """The class's kept answer, if still valid at the session's predicate epoch. After
        ``_TRIAL`` lookups with fewer than one in ``_MIN_HIT_SHARE`` found, the memo turns
        itself off for the session (``usable``): the keys would cost more than they save.
        That changes only time, never an answer."""
        self.lookups += 1
        got = self.answers.get(key)
        if got is not None and got.epoch == self.ssn.predicate_epoch():
            self.hits += 1
            return got
        if self.lookups == _TRIAL and self.hits * _MIN_HIT_SHARE < self.lookups:
            self.usable = False
        return None

    def keep(self, key: tuple, mask) -> LoneAnswer:
        """Keep ``mask`` as the class's answer: every hook said "nothing to add" for one of
        its jobs at the current predicate epoch."""
        got = self.answers[key] = LoneAnswer(self.ssn.predicate_epoch(), mask)
        return got


def lone_answers(ssn) -> LoneAnswers:
    """The session's :class:`LoneAnswers` (made on first use, after the plugins registered)."""
    got = ssn.action_memo.get(_MEMO)
    if got is None:
        got = ssn.action_memo[_MEMO] = LoneAnswers(ssn)
    return got


__all__ = ["LoneAnswer", "LoneAnswers", "USE_MEMO", "lone_answers"]
