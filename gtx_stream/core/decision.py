"""Strategy 1 of section 2.3, the confidence threshold, as pure numpy.

:func:`decide` is the rule for one moment of one or many examples (the aggregator calls it on each
frame it touches); :func:`threshold_stop` runs the rule along whole label sequences at once (the
simulator and the replay call it). Both use the same code, so streaming equals offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models import IntArray, Method, Posterior, aggregate


class Decision(int, Enum):
    """Outcome of the decision rule for one example. Values are stable (stored in Redis)."""

    ASK = 0
    CONFIDENT = 1
    KAPPA = 2
    EXHAUSTED = 3
    BUDGET = 4

    @property
    def reason(self) -> str:
        return self.name.lower()


def decide(
    method: Method | str,
    confidence: ArrayLike,
    n_labels: ArrayLike,
    tau: float,
    kappa: int,
    eligible_left: ArrayLike = 1,
    budget_left: ArrayLike = 1,
) -> IntArray:
    """Strategy 1 of section 2.3 (confidence threshold), as :class:`Decision` codes.

    For GTX and SV: finalise as ``confident`` when confidence >= tau, else ask one more labeler,
    unless kappa labels are in (``kappa``), no labeler who has not labeled the example is left
    (``exhausted``) or no budget is left (``budget``): then finalise unconfident. MV and WMV
    ignore tau and take exactly kappa labels (their fixed k), as in section 3.3.

    The checks run in that order, so an example that is confident with its last affordable
    label is reported ``confident``, not ``budget``.
    """
    method = Method(method)
    if not 0.5 < tau < 1.0:
        raise ValueError(f"tau must be in (0.5, 1), got {tau}")
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    conf = np.asarray(confidence, dtype=np.float64)
    n = np.asarray(n_labels)
    shape = np.broadcast_shapes(conf.shape, n.shape)
    out = np.full(shape, Decision.ASK.value, dtype=np.int64)
    confident = (conf >= tau) & (n >= 1) if method.uses_threshold else np.zeros(shape, bool)
    rules = [
        (confident, Decision.CONFIDENT),
        (n >= kappa, Decision.KAPPA),
        (np.asarray(eligible_left) <= 0, Decision.EXHAUSTED),
        (np.asarray(budget_left) <= 0, Decision.BUDGET),
    ]
    for cond, code in reversed(rules):  # earlier rules win
        out = np.where(np.broadcast_to(cond, shape), code.value, out)
    return out


@dataclass(frozen=True)
class Stop:
    """Where each example's label sequence stops, and its posterior there."""

    n_labels: IntArray
    """Labels used (0 only when the example had no labeler at all)."""
    decision: IntArray
    """:class:`Decision` code at the stop (never ``ASK``)."""
    posterior: Posterior


def prefix_posteriors(
    method: Method | str,
    labels: ArrayLike,
    accuracies: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
    max_labels: int | None = None,
) -> list[Posterior]:
    """Posterior after the first t labels of each sequence, for t = 0 .. max_labels."""
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    acc = np.broadcast_to(np.atleast_2d(np.asarray(accuracies, dtype=np.float64)), lab.shape)
    m = (
        np.ones(lab.shape, bool)
        if mask is None
        else np.broadcast_to(np.atleast_2d(np.asarray(mask, bool)), lab.shape)
    )
    steps = lab.shape[1] if max_labels is None else min(max_labels, lab.shape[1])
    out = []
    for t in range(steps + 1):
        upto = np.zeros(lab.shape, bool)
        upto[:, :t] = True
        out.append(aggregate(method, lab, acc, m & upto, prior))
    return out


def threshold_stop(
    method: Method | str,
    labels: ArrayLike,
    accuracies: ArrayLike,
    tau: float,
    kappa: int,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> Stop:
    """Run :func:`decide` along each example's label sequence, in order, until it stops.

    ``labels[i, t]`` is the label the t-th labeler asked about example i would give, and
    ``mask[i, t]`` says whether that labeler exists; available labelers must come first in a
    row (a row is a queue of labelers not yet asked). The budget is the caller's business:
    it is shared between examples, so it is spent in the caller's order.
    """
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    m = (
        np.ones(lab.shape, bool)
        if mask is None
        else np.broadcast_to(np.atleast_2d(np.asarray(mask, bool)), lab.shape)
    )
    available = m.sum(axis=1)
    posts = prefix_posteriors(method, lab, accuracies, m, prior, kappa)
    n_rows = lab.shape[0]
    n_used = np.full(n_rows, -1, dtype=np.int64)
    decision = np.zeros(n_rows, dtype=np.int64)
    for t, post in enumerate(posts):
        d = decide(method, post.confidence, t, tau, kappa, eligible_left=available - t)
        new = (n_used < 0) & (d != Decision.ASK.value)
        n_used[new] = t
        decision[new] = d[new]
    # every row stops by t = min(kappa, available) at the latest
    rows = np.arange(n_rows)
    p1 = np.stack([p.p1 for p in posts])[n_used, rows]
    label = np.stack([p.label for p in posts])[n_used, rows]
    conf = np.stack([p.confidence for p in posts])[n_used, rows]
    return Stop(n_labels=n_used, decision=decision, posterior=Posterior(p1, label, conf))
