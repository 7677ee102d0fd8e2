"""One pass over the labels for every tau of a sweep: strategy 1 for GTX and SV, vectorised.

The rule is :mod:`gtx_stream.core.decision`'s: the pass asks
:func:`~gtx_stream.core.decision.taus_reached` which taus of the sweep a confidence stops at,
and ``tests/offline/test_sweep.py`` checks, for every tau and method, that :class:`Sweep` stops
every example where :func:`~gtx_stream.core.decision.decide` does, with the same posterior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gtx_stream.core.decision import taus_reached
from gtx_stream.core.models import (
    FloatArray,
    IntArray,
    Method,
    ModelName,
    Posterior,
    aggregate,
    model_of,
)
from gtx_stream.offline.simulate.cohorts import Coins, Draws, Int8Array
from gtx_stream.offline.simulate.results import Outcome

LabelerArrays = FloatArray | Coins
"""Per trial and labeler, what a method weighs labels with: accuracies, or (GTX under the
two-coin model) sensitivities and specificities."""


def label_posterior(
    method: Method,
    labels: np.ndarray,
    params: LabelerArrays,
    mask: np.ndarray | None = None,
    prior: float = 0.5,
) -> Posterior:
    """The core posterior of rows of labels, ``params[i, j]`` the parameters of label j's labeler.

    Accuracies go to :func:`~gtx_stream.core.models.aggregate` (the paper's four methods);
    :class:`Coins` to the two-coin model, whose rule is GTX's.
    """
    if isinstance(params, Coins):
        if method is not Method.GTX:
            raise ValueError(f"{method.value} weighs labels by one accuracy, not two coins")
        return model_of(ModelName.TWO_COIN).posterior(labels, params.params(), mask, prior)
    return aggregate(method, labels, params, mask, prior)


def posteriors(
    method: Method,
    labels: Int8Array,
    labelers: Int8Array,
    trial: IntArray,
    accuracies: LabelerArrays,
    prior: float,
    grid: FloatArray | None = None,
) -> tuple[Posterior, Int8Array | None]:
    """:func:`label_posterior` of rows of t labels, each from a labeler of the row's trial.

    With ``grid`` (increasing taus), also how many of those taus each row's confidence stops
    at (:func:`~gtx_stream.core.decision.taus_reached`). A trial has only 2J possible
    (labeler, label) pairs, so for short rows it is cheaper to aggregate every possible
    sequence of t pairs once per trial and look rows up.
    """
    rows, t = labels.shape
    trials, n_labelers = accuracies.shape
    sequences = (2 * n_labelers) ** t
    if t == 0 or 4 * trials * sequences > rows:
        post = label_posterior(method, labels, accuracies[trial[:, None], labelers], prior=prior)
        return post, _reached(method, grid, post.confidence)
    pair = np.indices((2 * n_labelers,) * t).reshape(t, -1).T  # every sequence of t pairs
    table = label_posterior(
        method,
        np.broadcast_to(pair % 2, (trials, sequences, t)).reshape(-1, t),
        accuracies[:, pair // 2].reshape(-1, t),
        prior=prior,
    )
    code = trial * sequences
    for s in range(t):
        code += (2 * labelers[:, s].astype(np.int64) + labels[:, s]) * (2 * n_labelers) ** (
            t - 1 - s
        )
    hits = _reached(method, grid, table.confidence)
    post = Posterior(table.p1.take(code), table.label.take(code), table.confidence.take(code))
    return post, None if hits is None else hits.take(code)


def _reached(method: Method, grid: FloatArray | None, confidence: FloatArray) -> Int8Array | None:
    """How many taus of ``grid`` each confidence stops at, by the core decision rule."""
    return None if grid is None else taus_reached(method, confidence, grid)


_REACH_EVERY = 3


_BLOCK = 64


def _serve(stop: NDArray[np.int16], budget: int) -> tuple[IntArray, IntArray, NDArray[np.bool_]]:
    """Examples take ``stop[trial, i]`` labels each, in order, until the budget is spent.

    Per trial: the example on which the budget ends (the last to get a label), the labels
    spent before it, and whether the budget ended at all (if not, all examples were served
    and the first two refer to the last example). A cumulative sum adds one number at a time,
    so it runs over sums of blocks of examples, then inside the one block where the budget ends.
    """
    trials, width = stop.shape
    n_blocks = -(-width // _BLOCK)
    padded = np.zeros((trials, n_blocks * _BLOCK), dtype=np.int32)
    padded[:, :width] = stop
    blocks = padded.reshape(trials, n_blocks, _BLOCK)
    sums = blocks.sum(axis=2)
    after = np.cumsum(sums, axis=1)
    k = (after < budget).sum(axis=1)
    ended = k < n_blocks
    tr = np.arange(trials)
    k = np.minimum(k, n_blocks - 1)
    inner = np.cumsum(blocks[tr, k], axis=1) + (after[tr, k] - sums[tr, k])[:, None]
    pos = np.minimum((inner < budget).sum(axis=1), _BLOCK - 1)
    last = np.where(ended, k * _BLOCK + pos, width - 1)
    before = np.where(ended, inner[tr, pos], after[:, -1]) - stop[tr, last]
    return last, before, ended


@dataclass(frozen=True)
class Sweep:
    """Where a threshold method stops each example, at every tau of a sweep.

    Arrays cover the first ``width`` examples of each trial, as far as the budget can reach at
    the lowest tau. An example's entries are exact for every tau at which the budget reaches
    it; beyond that the sweep stops working on it, and they mean nothing.
    """

    method: Method
    taus: FloatArray
    truth: Int8Array
    """(trials, width): the true labels."""
    history: Int8Array
    """(kappa - 1, trials, width): how many taus each example has stopped at after t labels."""
    p1: FloatArray
    """(kappa, trials, width): P(y = 1) after t = 1 .. kappa labels."""
    hard: Int8Array
    """(kappa, trials, width): the hard label after t labels."""

    def stops(self, q: int, width: int | None = None) -> NDArray[np.int16]:
        """(trials, width): the labels each example takes at ``taus[q]`` if the budget allows.

        1 plus the levels that left it below tau_q: the first level whose confidence is at or
        above tau_q, or kappa.
        """
        levels = self.history[:, :, : self.history.shape[2] if width is None else width]
        stop = np.ones(levels.shape[1:], dtype=np.int16)
        for level in levels:
            stop += level <= q
        return stop


def sweep(
    method: Method,
    draws: Draws,
    accuracies: LabelerArrays,
    taus: Sequence[float],
    kappa: int,
    budget: int,
    prior: float = 0.5,
) -> Sweep:
    """GTX or SV under strategy 1, for every tau of the sweep in one pass over the labels.

    Level t computes the posterior after t labels of every example still in play, and
    ``reached`` counts the taus of the sweep that the example's confidence has reached so far:
    the example stops at tau_q at the first level where q < reached (at kappa if none).
    Examples are served in order until the budget is spent, so an example leaves play once it
    has stopped at every tau, or once it lies beyond the budget's reach at the lowest tau it
    has not stopped at (at a higher tau examples take more labels and the budget reaches less
    far). The reach is worked out every few taus, from lower bounds on the stops.
    """
    if not method.uses_threshold:
        raise ValueError(f"{method.value} takes a fixed number of labels, not a tau")
    trials, pool, _ = draws.shape
    grid = np.asarray(taus, dtype=np.float64)
    n_tau = len(grid)
    flat_label = draws.label.reshape(trials * pool, -1)
    flat_who = draws.labeler.reshape(trials * pool, -1)
    # only entries of examples in play are written, and only those are read
    p1 = np.empty((kappa, trials, pool))
    hard = np.empty((kappa, trials, pool), dtype=np.int8)
    reached = np.zeros((trials, pool), dtype=np.int8)
    history = np.zeros((kappa - 1, trials, pool), dtype=np.int8)  # reached after level 1, 2, ..
    starts = list(range(0, n_tau, _REACH_EVERY))
    anchor_of = np.arange(n_tau) // _REACH_EVERY  # the closest start at or below each tau
    bound = np.ones((len(starts), trials, pool), dtype=np.int16)  # stop at tau, or lower bound
    reach = np.full((len(starts), trials), pool)
    flat_reached = reached.reshape(-1)
    rows = np.arange(trials * pool)  # examples in play
    width = pool
    for t in range(1, kappa + 1):
        trial = rows // pool
        post, hit = posteriors(
            method,
            flat_label[rows, :t],
            flat_who[rows, :t],
            trial,
            accuracies,
            prior,
            grid if t < kappa else None,
        )
        p1[t - 1].reshape(-1)[rows] = post.p1
        hard[t - 1].reshape(-1)[rows] = post.label
        if hit is None:
            break
        flat_reached[rows] = np.maximum(flat_reached[rows], hit)
        history[t - 1] = reached
        for a, q in enumerate(starts):
            bound[a, :, :width] += reached[:, :width] <= q
            last, _, ended = _serve(bound[a, :, :width], budget)
            reach[a] = np.where(ended, last + 1, width)
        width = int(reach[0].max())
        now = flat_reached[rows]
        example = rows - trial * pool
        open_anchor = anchor_of[np.minimum(now, n_tau - 1)]
        rows = rows[(now < n_tau) & (example < reach[open_anchor, trial])]
    return Sweep(
        method,
        grid,
        draws.truth[:, :width],
        history[:, :, :width],
        p1[:, :, :width],
        hard[:, :, :width],
    )


def sweep_outcomes(cohort: str, sw: Sweep, budget: int) -> list[Outcome]:
    """Count labeled examples, errors and absolute errors at every tau of the sweep.

    At tau_q an example stops at level s = 1 + #{levels that left it below tau_q}; as q grows,
    that level steps up at the ``history`` values. So its contribution to the totals is a
    step function of q, cut off where the budget no longer reaches it; the steps are added up
    for all examples at once with ``bincount`` and a cumulative sum over q, rather than by
    gathering every example's posterior once per tau.
    """
    method = sw.method
    grid, truth, history, p1, hard = sw.taus, sw.truth, sw.history, sw.p1, sw.hard
    kappa, trials, width = p1.shape
    n_tau = len(grid)
    tr = np.arange(trials)
    n_labeled = np.empty((n_tau, trials), dtype=np.int64)
    last = np.empty((n_tau, trials), dtype=np.int64)  # the last example labeled ...
    last_stop = np.empty((n_tau, trials), dtype=np.int64)  # ... where it would stop ...
    last_used = np.empty((n_tau, trials), dtype=np.int64)  # ... and the labels it got
    w = width  # at a higher tau fewer examples get labels: look no further than the last tau
    for q in range(n_tau):
        stop = sw.stops(q, w)
        j, before, ended = _serve(stop, budget)
        if not ended.all():
            raise ValueError("the pool of examples ran out before the budget")  # pool >= budget
        n_labeled[q], last[q], last_stop[q] = j + 1, j, stop[tr, j]
        last_used[q] = budget - before
        w = int(j.max()) + 1

    # At tau_q the example stops at level s for q in [history[s-1], history[s]), and counts
    # while q < counted (the taus whose budget reaches it): one piece of a step function each.
    counted = np.zeros((trials, width), dtype=np.int8)
    for n in n_labeled:
        counted += np.arange(width)[None, :] < n[:, None]
    lo = np.concatenate([np.zeros((1, trials, width), np.int8), history])
    hi = np.minimum(np.concatenate([history, np.full((1, trials, width), n_tau, np.int8)]), counted)
    piece = np.flatnonzero(lo < hi)
    row = piece % (trials * width)
    trial = row // width
    start = trial * (n_tau + 1) + lo.reshape(-1)[piece]
    end = trial * (n_tau + 1) + hi.reshape(-1)[piece]
    y = truth.reshape(-1)[row]
    values = {
        "errors": (hard.reshape(-1)[piece] != y).astype(np.float64),
        "abs": np.abs(y - p1.reshape(-1)[piece]),
    }
    size = trials * (n_tau + 1)
    totals = {}
    for name, v in values.items():
        diff = np.bincount(start, v, size) - np.bincount(end, v, size)
        total = np.cumsum(diff.reshape(trials, n_tau + 1), axis=1)[:, :n_tau].T.copy()
        totals[name] = total
    # the budget may end on an example before its stop: it keeps the labels it got
    y_last = truth[tr, last].astype(np.float64)
    for name, level in (("errors", hard), ("abs", p1)):
        at_used, at_stop = level[last_used - 1, tr, last], level[last_stop - 1, tr, last]
        if name == "errors":
            totals[name] += (at_used != y_last).astype(float) - (at_stop != y_last)
        else:
            totals[name] += np.abs(y_last - at_used) - np.abs(y_last - at_stop)
    return [
        Outcome(
            cohort,
            method,
            float(tau),
            None,
            n_labeled=n_labeled[q],
            labels_used=np.full(trials, budget, dtype=np.int64),
            errors=np.rint(totals["errors"][q]).astype(np.int64),
            abs_error=totals["abs"][q],
        )
        for q, tau in enumerate(grid)
    ]
