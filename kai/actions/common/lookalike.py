"""Look-alike jobs: two pending single-pod jobs that every action answers the same way.

Reclaim and preempt walk every pending job, as KAI's do, and in a backlog held back by quota
or limits most of those jobs are copies of the one before them (a Deployment's, a sweep's or
an inference service's pods), each asking the same question of an unchanged session and
getting the same "no". :func:`look_alike` says when a job is such a copy, so that
``JobsOrderByQueues.skip_alike`` can pass over the run of copies after a job that placed
nothing, exactly as if each had been popped and refused.

Two jobs look alike when both are single-pod jobs (``PodGroupInfo.lone_task``) whose pod is
pending, of the same queue, priority, priority class, preemptibility and minimum, and their
pods agree on everything a scheduling decision reads: namespace, labels (inter-pod affinity
and spread count them), annotations (GPU sharing and the like) apart from the name of the
pod's own PodGroup (each job's differs; it only ties the pod to its job), the whole spec and
the nominated node. Pods that own per-pod objects are never look-alikes, because those objects can differ
while the specs are equal: DRA claims made from a template (``resourceClaims``) and generic
ephemeral volumes (a PVC per pod). A false "alike" would skip a job that could have been
placed, so every test here errs towards "different".

The key is made when the cluster state files the pod (kai.api.alike_key). Pods that differ
only in labels -- single-pod Jobs, each with its own ``job-name`` and ``controller-uid`` --
are copies too while no answer can read labels (:func:`alike_for`): no pod carries inter-pod
terms, whose symmetry is what reads an unconstrained pod's labels, and every hook declares
``kai.framework.plugin.label_blind``. :func:`look_alike_blind` compares them so.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.alike_key import alike_key, label_blind_key

_PENDING = C.PodStatus.PENDING
#: False: look-alikes always agree on their pods' labels (the reference for ``look_alike_blind``)
USE_BLIND = True
#: the predicate epoch while no pod carries inter-pod terms
NO_TERMS = (0, 0)
#: the hooks that answer for a pending pod in allocate, and those reclaim and preempt add
PLACEMENT_HOOKS = ("pre_predicate_fns", "node_mask_fns", "node_order_fns", "subset_nodes_fns", "node_predicates")
VICTIM_HOOKS = ("can_reclaim_fns", "reclaim_victim_filter_fns", "preempt_victim_filter_fns",
                "reclaim_scenario_validator_fns", "preempt_scenario_validator_fns")
_MEMO = "look_alike_labels_unread"


def look_alike(a, b) -> bool:
    """True when ``b`` would get exactly ``a``'s answer from an action in the same session
    state (both pending single-pod jobs with interchangeable pods; see the module docstring)."""
    return _alike(a, b, alike_key)


def look_alike_blind(a, b) -> bool:
    """``look_alike`` but for the pods' labels: for sessions where no answer reads them
    (:func:`alike_for`)."""
    return _alike(a, b, label_blind_key)


def _alike(a, b, key_of) -> bool:
    if (a.queue != b.queue or a.priority != b.priority or a.preemptible != b.preemptible
            or a.min_member != b.min_member or a.priority_class != b.priority_class
            or a.scheduling_backoff != b.scheduling_backoff):
        return False
    ta, tb = a.lone_task(), b.lone_task()
    if ta is None or tb is None or ta.status != _PENDING or tb.status != _PENDING:
        return False
    key = key_of(ta)
    return key is not None and key == key_of(tb)


def hooks_label_blind(ssn, lists) -> bool:
    """Every hook the session registered in the named lists declares ``label_blind``
    (kai.framework.plugin.label_blind)."""
    return all(getattr(h, "label_blind", False) for name in lists for h in getattr(ssn, name))


def alike_for(ssn):
    """The look-alike test reclaim and preempt may pass copies over with now:
    :func:`look_alike_blind` while no pod carries inter-pod terms and every placement and
    victim hook declares ``label_blind`` (then no answer reads the pending pod's labels, and
    single-pod Jobs, which differ only in them, are copies), else :func:`look_alike`."""
    blind = ssn.action_memo.get(_MEMO)
    if blind is None:
        blind = ssn.action_memo[_MEMO] = USE_BLIND and hooks_label_blind(ssn, PLACEMENT_HOOKS + VICTIM_HOOKS)
    return look_alike_blind if blind and ssn.predicate_epoch() == NO_TERMS else look_alike


#: look-alike jobs share their init request (their one pending pod's request, GPU sharing and
#: quota figures: equal specs and annotations, no DRA claims), so a job view that reads only
#: the init request needs no comparison between them (JobsOrderByQueues.skip_alike)
look_alike.equal_init_requests = True
look_alike_blind.equal_init_requests = True

__all__ = ["NO_TERMS", "PLACEMENT_HOOKS", "USE_BLIND", "VICTIM_HOOKS", "alike_for", "alike_key",
           "hooks_label_blind", "look_alike", "look_alike_blind"]
