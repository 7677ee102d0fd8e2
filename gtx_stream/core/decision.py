"""The decision rule of section 2.3, as pure numpy: the only place it is written down.

Strategy 1, the confidence threshold: :func:`decide` is the rule for one moment of one or many
examples (the aggregator calls it on each frame it touches); :func:`threshold_stop` runs it
along whole label sequences at once (the replay and the demo's offline check call it), and
:func:`taus_reached` is its confidence test for a whole sweep of taus at once (the simulator's
sweep calls it). Strategy 2, uncertainty sampling, asks next about the example of highest
:func:`uncertainty` (equation 5): :func:`most_uncertain` is its selection rule, with ties broken
by :func:`nth_tied` on the seeded :func:`tie_break` draws (the aggregator and the replay call
them; the simulator's block summaries pick by the same rule). Streaming equals offline
because all of them run this code; ``tests/offline/test_sweep.py`` holds the simulator's
sweep to :func:`decide`, tau by tau.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gtx_stream.core.draws import stable_hash
from gtx_stream.core.models import FloatArray, IntArray, Method, Posterior, aggregate


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


TIE_EPS = 1e-12
"""How far below tau a confidence still counts as reaching it. Beta accuracies are ratios of
small integers, so posteriors of exactly tau are common (0.9 from one label of a labeler at
9/10, say), and the logs and exponentials that compute them end a bit above or below it
depending on numpy's build and the CPU: on rte at tau 0.9, 5.09 labels per task on one
machine and 5.12 on another. A confidence within ``TIE_EPS`` of tau is one that equals it
up to that rounding (the error of a posterior of a few labels is about 1e-15; 1e-12 is far
above it and far below any difference that means anything)."""

MAX_TAUS = 127
"""Most taus :func:`taus_reached` takes: its counts are int8, to keep a sweep's arrays small."""


def check_tau(tau: float) -> float:
    """``tau`` if it is a usable threshold, else a :class:`ValueError`.

    At or below 0.5 every example would stop on its first label (any confidence is >= 0.5); at
    1 or above, on none.
    """
    if not 0.5 < tau < 1.0:
        raise ValueError(f"tau must be in (0.5, 1), got {tau}")
    return tau


def confident(method: Method | str, confidence: ArrayLike, tau: float) -> NDArray[np.bool_]:
    """The threshold test of strategy 1: confidence >= tau, equality included (up to float
    rounding: within :data:`TIE_EPS`).

    Always False for MV and WMV, which take a fixed number of labels instead. Whether an
    example has a label at all is :func:`decide`'s business (no label: always ask).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    if not Method(method).uses_threshold:
        return np.zeros(conf.shape, dtype=bool)
    out: NDArray[np.bool_] = conf + TIE_EPS >= tau
    return out


def taus_reached(method: Method | str, confidence: ArrayLike, taus: FloatArray) -> NDArray[np.int8]:
    """For each confidence, how many taus of the increasing ``taus`` it is :func:`confident` at.

    Those are the first ones: ``confident`` at tau_q for q < taus_reached, not beyond. One
    binary search instead of one pass per tau, for the simulator's sweep; it counts exactly the
    taus with ``confidence + TIE_EPS >= tau`` (``side="right"`` puts a tau equal to it among
    them), which the sweep's test checks against :func:`decide` at every tau.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    if len(taus) > MAX_TAUS:
        raise ValueError(f"at most {MAX_TAUS} taus in one sweep, got {len(taus)}")
    if not Method(method).uses_threshold:
        return np.zeros(conf.shape, dtype=np.int8)
    out: NDArray[np.int8] = np.searchsorted(taus, conf + TIE_EPS, side="right").astype(np.int8)
    return out


def uncertainty(posterior: Posterior) -> FloatArray:
    """Equation (5): u_i = 1 - max_y P(Y_i = y | L(i)), what strategy 2 asks about next."""
    out: FloatArray = 1.0 - posterior.confidence
    return out


def nth_tied(u: ArrayLike, ties: ArrayLike) -> IntArray:
    """Which of ``ties`` tied candidates (counted in order) a tie-break uniform ``u`` picks:
    floor(u * ties), uniform on 0 .. ties - 1, and never past the last one."""
    n = np.asarray(ties, dtype=np.int64)
    out: IntArray = np.minimum((np.asarray(u, dtype=np.float64) * n).astype(np.int64), n - 1)
    return out


def most_uncertain(uncertainties: ArrayLike, running: ArrayLike, u: float) -> int:
    """Strategy 2's next example: the highest :func:`uncertainty` among those still in the
    running (they may get another label), a tie going to the :func:`nth_tied` of the tied
    ones in index order; -1 when none is in the running."""
    key = np.where(np.asarray(running, dtype=bool), np.asarray(uncertainties, np.float64), -1.0)
    if key.size == 0 or key.max() < 0.0:
        return -1
    tied = np.flatnonzero(key == key.max())
    return int(tied[nth_tied(u, len(tied))])


TIE_BLOCK = 1024
"""Tie-break draws come in blocks of this many, each block from its own seeded generator."""


def tie_break(seed: int, step: int) -> float:
    """The uniform that breaks ties at the ``step``-th pick of strategy 2 (0-based, after the
    first pass): fixed by (seed, step), so a restarted aggregator and the replay draw the same."""
    return float(tie_breaks(seed, step, 1)[0])


def tie_breaks(seed: int, start: int, n: int) -> FloatArray:
    """:func:`tie_break` of the steps ``start .. start + n - 1`` at once."""
    if seed < 0 or start < 0 or n < 0:
        raise ValueError(f"seed, start and n must be >= 0, got {seed}, {start}, {n}")
    first, last = start // TIE_BLOCK, (start + n - 1) // TIE_BLOCK if n else start // TIE_BLOCK
    blocks = [
        np.random.default_rng([seed, stable_hash("uncertainty tie"), b]).random(TIE_BLOCK)
        for b in range(first, last + 1)
    ]
    offset = start - first * TIE_BLOCK
    out: FloatArray = np.concatenate(blocks)[offset : offset + n]
    return out


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
    check_tau(tau)
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    conf = np.asarray(confidence, dtype=np.float64)
    n = np.asarray(n_labels)
    shape = np.broadcast_shapes(conf.shape, n.shape)
    out = np.full(shape, Decision.ASK.value, dtype=np.int64)
    rules = [
        (confident(method, conf, tau) & (n >= 1), Decision.CONFIDENT),
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
    posts = prefix_posteriors(method, lab, accuracies, m, prior, kappa)
    return stop_along(method, posts, m.sum(axis=1), tau, kappa)


def stop_along(
    method: Method | str,
    posts: Sequence[Posterior],
    available: ArrayLike,
    tau: float,
    kappa: int,
) -> Stop:
    """:func:`decide` on ``posts[t]``, each row's posterior after its first t labels, for
    t = 0, 1, ...: where each row stops and with what. ``available[i]``: labelers row i has.
    Any labeler model's prefix posteriors (:func:`prefix_posteriors`, or the two-coin ones)."""
    avail = np.asarray(available)
    n_rows = len(avail)
    n_used = np.full(n_rows, -1, dtype=np.int64)
    decision = np.zeros(n_rows, dtype=np.int64)
    for t, post in enumerate(posts):
        d = decide(method, post.confidence, t, tau, kappa, eligible_left=avail - t)
        new = (n_used < 0) & (d != Decision.ASK.value)
        n_used[new] = t
        decision[new] = d[new]
    # every row stops by t = min(kappa, available) at the latest
    rows = np.arange(n_rows)
    p1 = np.stack([p.p1 for p in posts])[n_used, rows]
    label = np.stack([p.label for p in posts])[n_used, rows]
    conf = np.stack([p.confidence for p in posts])[n_used, rows]
    return Stop(n_labels=n_used, decision=decision, posterior=Posterior(p1, label, conf))
