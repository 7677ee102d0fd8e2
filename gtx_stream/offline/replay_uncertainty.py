"""Strategy 2, uncertainty sampling, on label queues: the replay's ``--strategy uncertainty``
and the offline side of the live aggregator's (invariant 6).

Every example gets its first label; then, until ``budget`` labels are bought, the example of
highest uncertainty (equation 5) among those that may get another label gets the next label of
its queue, ties broken by :func:`~gtx_stream.core.decision.tie_break` (seed, pick number) through
:func:`~gtx_stream.core.decision.most_uncertain`: the rule of the simulator
(:mod:`gtx_stream.offline.simulate.uncertainty`) and of
:mod:`gtx_stream.pipeline.aggregate.uncertainty`. An example may get another label while it has
fewer than kappa and a labeler left in its queue. Each example ends with the decision rule's
reason with no budget left (confident, kappa, exhausted or budget), as the live aggregator's
record says. Only the labels bought are ever read: the next label of a queue is read when it is
bought, and the posterior of each example is computed on its bought prefix only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gtx_stream.core.decision import Decision, decide, most_uncertain, tie_breaks, uncertainty
from gtx_stream.core.models import FloatArray, IntArray, Method, Posterior, aggregate, majority_vote
from gtx_stream.offline.replay_stream import METHODS, REFERENCE, figures


@dataclass(frozen=True)
class Sampled:
    """Where uncertainty sampling left each example, and the order of its picks."""

    n_labels: IntArray
    decision: IntArray
    """:class:`~gtx_stream.core.decision.Decision` code of each example at the end."""
    posterior: Posterior
    picks: IntArray
    """The example that got each label bought after the first labels, in order."""


def uncertainty_sample(
    method: Method | str,
    labels: FloatArray,
    accuracies: FloatArray,
    mask: np.ndarray,
    *,
    budget: int,
    kappa: int,
    tau: float,
    seed: int,
    prior: float = 0.5,
) -> Sampled:
    """Uncertainty sampling along each example's queue of labels (module docstring).

    ``labels[i, t]`` is the label the t-th labeler asked about example i would give, ``mask``
    says whether that labeler exists (available ones first in a row). With a budget below the
    examples that have a labeler, the first ones in index order get their first label.
    """
    method = Method(method)
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    mask = np.asarray(mask, dtype=bool)
    available = mask.sum(axis=1)
    cap = np.minimum(available, kappa)
    count = np.minimum(cap, 1)
    count[np.cumsum(count) > budget] = 0
    spent = int(count.sum())
    slots = np.arange(labels.shape[1])
    bought = np.zeros(labels.shape)  # the labels bought, read from the queues one by one
    first = np.flatnonzero(count)
    bought[first, 0] = labels[first, 0]
    post = aggregate(method, bought, accuracies, mask & (slots < count[:, None]), prior)
    p1, hard, conf = post.p1.copy(), post.label.copy(), post.confidence.copy()
    unc = uncertainty(post)
    ties = tie_breaks(seed, 0, max(budget - spent, 0))
    picks: list[int] = []
    while spent < budget:
        e = most_uncertain(unc, count < cap, float(ties[len(picks)]))
        if e < 0:
            break  # every example has all the labels it may get
        bought[e, count[e]] = labels[e, count[e]]
        count[e] += 1
        row = slice(e, e + 1)
        one = aggregate(method, bought[row], accuracies[row], mask[row] & (slots < count[e]), prior)
        p1[e], hard[e], conf[e] = one.p1[0], one.label[0], one.confidence[0]
        unc[e] = uncertainty(one)[0]
        picks.append(e)
        spent += 1
    decision = decide(method, conf, count, tau, kappa, eligible_left=available - count,
                      budget_left=0)  # fmt: skip
    return Sampled(count, decision, Posterior(p1, hard, conf), np.array(picks, dtype=np.int64))


STRATEGIES = ("threshold", "uncertainty")


def check(strategy: str, budget: int | None, one_coin_gold: bool, order: str = "random") -> None:
    """A one-line :class:`ValueError` for a replay strategy that cannot run as asked."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy != "threshold" and order != "random":
        raise ValueError(f"order {order} is for strategy threshold (uncertainty asks at random)")
    if strategy == "threshold":
        if budget is not None:
            raise ValueError("a budget is for strategy uncertainty (threshold spends per task)")
        return
    if budget is None:
        # the whole run's labels, not a per-task cap: name the flag and its floor
        raise ValueError(
            "strategy uncertainty needs --budget N: the labels to buy in all, at least one "
            "per scored task"
        )
    if budget < 1:
        raise ValueError(f"budget must be at least one label per scored task, got {budget}")
    if not one_coin_gold:
        raise ValueError("strategy uncertainty replays one-coin accuracies from gold only")


def trial(
    labels: FloatArray,
    accuracies: FloatArray,
    mask: np.ndarray,
    truth: FloatArray,
    *,
    budget: int,
    kappa: int,
    tau: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """One trial of ``gtx-stream replay --strategy uncertainty``: each method's figures."""
    if budget < len(truth):
        raise ValueError(
            f"budget {budget} is below the {len(truth)} scored tasks, each labeled once first"
        )
    results = {}
    for method in METHODS:
        s = uncertainty_sample(method, labels, accuracies, mask, budget=budget, kappa=kappa,
                               tau=tau, seed=seed)  # fmt: skip
        exhausted = int(np.sum(s.decision == Decision.EXHAUSTED.value))
        post = s.posterior
        results[method.value] = figures(truth, post.label, post.p1, s.n_labels, exhausted)
    every = majority_vote(labels, mask)
    results[REFERENCE] = figures(truth, every.label, every.p1, mask.sum(axis=1), 0)
    return results
