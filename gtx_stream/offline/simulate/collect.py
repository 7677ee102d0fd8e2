"""Which examples a budget labels, and with which aggregate label: section 4's label collection.

Section 4 of the paper collects labels for images as section 3.3 does for simulated examples:
examples are served in order, each asked of labelers drawn without replacement until GTX or SV
reach tau or kappa labels are in, MV and WMV for a fixed k (kappa here: with a threshold they
would stop after one label, at confidence 1.0), until the budget is spent; "once the budget has
run out, the set of N labeled images constitutes the training set". Unlike section 3.3 the pool
of images can run out first: then every image is labeled and the rest of the budget is unused.

:func:`collect` is the simulator's own machinery (:func:`.sweep.sweep` at one tau and
:func:`.sweep._serve` for GTX and SV, the fixed-k posteriors of :mod:`.threshold` for MV and
WMV), kept per example instead of summed: on the same :class:`.Draws` it labels the same N
examples with the same labels as :func:`.threshold.simulate_threshold` counts
(``tests/offline/test_collect.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gtx_stream.core.decision import check_tau
from gtx_stream.core.models import FloatArray, Method
from gtx_stream.offline.simulate.cohorts import Draws, Int8Array
from gtx_stream.offline.simulate.sweep import _serve, posteriors, sweep


@dataclass(frozen=True)
class Collected:
    """One trial's labeled examples: the first ``n_labeled`` of the draws' order."""

    n_labeled: int
    labels_used: int
    label: Int8Array
    """(n_labeled,): the aggregate (hard) label of each labeled example."""
    p1: FloatArray
    """(n_labeled,): its P(y = 1 | labels)."""
    asked: np.ndarray
    """(n_labeled,): how many labels each example got."""

    def errors(self, truth: np.ndarray) -> int:
        """Labeled examples whose aggregate label is not ``truth[:n_labeled]``."""
        return int((self.label != truth[: self.n_labeled]).sum())


def collect(
    method: Method | str,
    draws: Draws,
    accuracies: FloatArray,
    *,
    budget: int,
    kappa: int = 5,
    tau: float = 0.95,
    prior: float = 0.5,
) -> list[Collected]:
    """Strategy 1 on a budget for every trial of ``draws``: which examples, which labels."""
    method = Method(method)
    trials, pool, slots = draws.shape
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if slots < kappa:
        raise ValueError(f"draws hold {slots} labels per example, kappa is {kappa}")
    if method.uses_threshold:
        check_tau(tau)
        return _by_threshold(method, draws, accuracies, budget, kappa, tau, prior)
    return _fixed_k(method, draws, accuracies, budget, kappa, prior)


def _by_threshold(
    method: Method,
    draws: Draws,
    accuracies: FloatArray,
    budget: int,
    kappa: int,
    tau: float,
    prior: float,
) -> list[Collected]:
    sw = sweep(method, draws, accuracies, [tau], kappa, budget, prior)
    stop = sw.stops(0)
    last, before, ended = _serve(stop, budget)
    out = []
    for t in range(stop.shape[0]):
        if ended[t]:
            n = int(last[t]) + 1
            asked = stop[t, :n].astype(np.int64)
            asked[-1] = budget - int(before[t])  # the budget may end before its stop
        else:  # every example of the pool got its labels
            n = stop.shape[1]
            asked = stop[t, :n].astype(np.int64)
        i = np.arange(n)
        out.append(
            Collected(
                n_labeled=n,
                labels_used=int(asked.sum()),
                label=sw.hard[asked - 1, t, i].astype(np.int8),
                p1=sw.p1[asked - 1, t, i],
                asked=asked,
            )
        )
    return out


def fixed_k_labels(
    method: Method,
    draws: Draws,
    accuracies: FloatArray,
    budget: int,
    k: int,
    prior: float,
) -> tuple[Int8Array, FloatArray, np.ndarray]:
    """k labels per example until the budget ends (the last one gets what is left).

    (trials, n) aggregate labels and p1 of the first n examples, and each one's labels asked;
    MV and WMV here and in :mod:`.threshold` (section 3.3's fixed k).
    """
    trials, pool, _ = draws.shape
    full, rest = divmod(budget, k)
    if full >= pool:
        full, rest = pool, 0
    asked = np.full(full + int(rest > 0), k, dtype=np.int64)
    if rest:
        asked[-1] = rest
    label = np.empty((trials, asked.size), dtype=np.int8)
    p1 = np.empty((trials, asked.size))
    for first, n, width in ((0, full, k), (full, int(rest > 0), rest)):
        if n == 0:
            continue
        part = slice(first, first + n)
        who = draws.labeler[:, part, :width].reshape(trials * n, width)
        acc = accuracies
        if method is Method.MV:  # one vote each, whoever the labeler: 2^k label sequences
            who, acc = np.zeros_like(who), accuracies[:, :1]
        post, _ = posteriors(
            method,
            draws.label[:, part, :width].reshape(trials * n, width),
            who,
            np.repeat(np.arange(trials), n),
            acc,
            prior,
        )
        label[:, part] = post.label.reshape(trials, n)
        p1[:, part] = post.p1.reshape(trials, n)
    return label, p1, asked


def _fixed_k(
    method: Method,
    draws: Draws,
    accuracies: FloatArray,
    budget: int,
    k: int,
    prior: float,
) -> list[Collected]:
    label, p1, asked = fixed_k_labels(method, draws, accuracies, budget, k, prior)
    return [
        Collected(asked.size, int(asked.sum()), label[t], p1[t], asked.copy())
        for t in range(label.shape[0])
    ]
