"""The replay as a stream: two-coin labelers, and parameters re-estimated by EM as labels come.

:mod:`.replay` weighs every label with one-coin accuracies fixed from gold before the first
task. Here (``gtx-stream replay --model two_coin`` and/or ``--estimate em``) the tasks arrive
one after another, in the order of a seeded permutation, and each task's recorded labels in
:func:`~gtx_stream.core.draws.labeler_order`, as before.

- ``estimate = gold``: the parameters come from the gold answers (equation (4), or its
  two-coin form :func:`~gtx_stream.core.accuracy.assess_two_coin`) and never change.
- ``estimate = em``: they start from :func:`~gtx_stream.core.em.dawid_skene` over the gold
  answers alone (so a worker without gold gets the pooled prior's mean, not 0.5), and after
  every ``every`` labels bought EM is rerun over **the labels bought so far** plus the gold
  answers, warm-started from the last fit's posteriors, as the estimator service does. The new
  parameters apply from the next task on: a task is decided with the parameters current when
  its labels arrive, and a label the strategy did not ask for is never given to EM.

The queues and the order a task's workers are asked in are :mod:`.replay_queues`'s: the
seeded random order, or (``order = best``) best first by the parameters in force when the task
arrives. Between two fits the parameters are fixed, so the tasks up to the next fit are decided
at once (:func:`~gtx_stream.core.decision.threshold_stop`, or :func:`two_coin_stop`): the fit
comes after the task during which the ``every``-th label since the last fit was bought, and
the tasks after it are decided again with the new parameters. Tasks without a truth are streamed
(their labels count for EM) and not scored; the gold tasks are not streamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from gtx_stream.core import accuracy
from gtx_stream.core.accuracy import Estimator
from gtx_stream.core.datasets import Dataset
from gtx_stream.core.decision import Decision, Stop, stop_along, threshold_stop
from gtx_stream.core.em import EMSettings, dawid_skene
from gtx_stream.core.models import FloatArray, IntArray, Method, ModelName, majority_vote
from gtx_stream.core.models.two_coin import two_coin_posterior
from gtx_stream.offline.replay_queues import (
    Order,
    Params,
    Queue,
    Setup,
    queues,
    setup,
    weight,
)

REFERENCE = "mv-all"
"""Name of the reference row: majority vote over every recorded label of a task."""
DS_REFERENCE = "ds-all"
"""Name of the second reference row (two-coin or EM replays): two-coin Dawid-Skene EM over
every recorded label plus the trial's gold, no budget."""
METHODS = (Method.GTX, Method.SV, Method.MV, Method.WMV)
"""Methods replayed, in the order they are reported."""

DEFAULT_EVERY = 200
"""EM's cadence in the replay: a fit after every 200 labels bought."""


class Estimate(StrEnum):
    """Where the labeler parameters of a replay come from."""

    GOLD = "gold"
    """Gold answers only, fixed before the first task."""
    EM = "em"
    """Semi-supervised EM over the labels bought so far plus gold, refit every N labels."""


def two_coin_stop(
    labels: FloatArray,
    sensitivity: FloatArray,
    specificity: FloatArray,
    mask: np.ndarray,
    tau: float,
    kappa: int,
    prior: float = 0.5,
) -> Stop:
    """:func:`~gtx_stream.core.decision.threshold_stop` for GTX with two-coin labelers."""
    posts = []
    for t in range(min(kappa, labels.shape[1]) + 1):
        upto = np.zeros(labels.shape, bool)
        upto[:, :t] = True
        posts.append(two_coin_posterior(labels, sensitivity, specificity, mask & upto, prior))
    return stop_along(Method.GTX, posts, mask.sum(axis=1), tau, kappa)


def gold_params(
    dataset: Dataset,
    s: Setup,
    model: ModelName,
    estimator: Estimator | str,
    accuracies: dict[str, float],
) -> Params:
    """Parameters from gold only: the one-coin ``accuracies`` given, or two-coin estimates."""
    if model is ModelName.ONE_COIN:
        return {"accuracy": np.array([accuracies.get(w, 0.5) for w in s.workers])}
    by_task: dict[str, dict[str, int]] = {}
    for t, j, y in zip(s.gold_task, s.gold_worker, s.gold_label, strict=True):
        by_task.setdefault(str(t), {})[s.workers[j]] = int(y)
    truth = {str(t): y for t, y in s.gold.items()}
    est = accuracy.assess_two_coin(by_task, truth, estimator, labelers=s.workers)
    return {
        "sensitivity": np.array([est[w].sensitivity.accuracy for w in s.workers]),
        "specificity": np.array([est[w].specificity.accuracy for w in s.workers]),
    }


@dataclass
class Outcome:
    """One method's stream in one trial, per streamed task (arrival order), and EM's fits."""

    n_labels: IntArray
    decision: IntArray
    p1: FloatArray
    label: IntArray
    worker: IntArray
    """Per streamed task: the worker indices of its queue in the order they were asked (the
    first ``n_labels`` were); :attr:`Setup.worker` reordered under ``Order.BEST``."""
    fits: int = 0
    snapshots: list[tuple[int, Params]] = field(default_factory=list)
    """(labels bought when fitted, the parameters it gave), the initial ones first."""


def _fit(
    s: Setup, model: ModelName, bought: list[np.ndarray], init: FloatArray | None
) -> tuple[Params, FloatArray]:
    """EM over the gold answers and the bought labels: parameters, and P(y=1) of tasks seen."""
    t = np.concatenate([s.gold_task, *bought[0::3]]) if bought else s.gold_task
    j = np.concatenate([s.gold_worker, *bought[1::3]]) if bought else s.gold_worker
    y = np.concatenate([s.gold_label, *bought[2::3]]) if bought else s.gold_label
    if init is not None:
        n = np.bincount(t, minlength=s.n_tasks)
        share = np.bincount(t, weights=y, minlength=s.n_tasks) / np.maximum(n, 1)
        init = np.where(np.isnan(init), share, init)  # a task new since the last fit: its MV share
    res = dawid_skene(
        t,
        j,
        y,
        s.gold,
        EMSettings(model=model),
        n_tasks=s.n_tasks,
        n_labelers=len(s.workers),
        init=init,
    )
    seen = np.bincount(t, minlength=s.n_tasks) > 0
    return res.params, np.where(seen, res.p1, np.nan)


def _decide(
    method: Method, model: ModelName, params: Params, q: Queue, tau: float, kappa: int
) -> Stop:
    labels, w, mask = q
    if model is ModelName.TWO_COIN and method is Method.GTX:
        sens, spec = params["sensitivity"][w], params["specificity"][w]
        return two_coin_stop(labels, sens, spec, mask, tau, kappa)
    # SV and WMV weigh by one number (a two-coin worker's balanced accuracy)
    return threshold_stop(method, labels, weight(params)[w], tau, kappa, mask)


def stream(
    method: Method,
    s: Setup,
    model: ModelName,
    estimate: Estimate,
    initial: Params,
    *,
    tau: float,
    kappa: int,
    every: int = DEFAULT_EVERY,
    order: Order = Order.RANDOM,
) -> Outcome:
    """Replay one method over the trial's stream (module docstring), asking in ``order``."""
    if every < 1:
        raise ValueError(f"the EM cadence must be at least 1 label, got {every}")
    n = len(s.tasks)
    out = Outcome(
        n_labels=np.zeros(n, dtype=np.int64),
        decision=np.zeros(n, dtype=np.int64),
        p1=np.zeros(n),
        label=np.zeros(n, dtype=np.int64),
        worker=s.worker.copy(),
    )
    order = Order(order)  # MV reads no parameter, unless the order does:
    refit = estimate is Estimate.EM and (method is not Method.MV or order is Order.BEST)
    params, p1 = initial, None
    bought: list[np.ndarray] = []
    total = since = 0
    if refit:
        params, p1 = _fit(s, model, [], None)
    out.snapshots.append((0, params))
    i = 0
    while i < n:
        hi = min(n, i + every) if refit else n
        q = queues(s, slice(i, hi), params, order)
        stop = _decide(method, model, params, q, tau, kappa)
        used = stop.n_labels
        take = len(used)
        if refit:
            reached = np.flatnonzero(since + np.cumsum(used) >= every)
            take = int(reached[0]) + 1 if len(reached) else take
        rows = np.arange(i, i + take)
        out.n_labels[rows] = used[:take]
        out.decision[rows] = stop.decision[:take]
        out.p1[rows] = stop.posterior.p1[:take]
        out.label[rows] = stop.posterior.label[:take]
        out.worker[rows] = q[1][:take]
        for r in range(take):  # only the labels asked for: the first n_labels of each queue
            k = used[r]
            bought += [np.full(k, s.task_index[i + r]), q[1][r, :k], q[0][r, :k]]
        spent = int(used[:take].sum())
        total, since = total + spent, since + spent
        if refit and since >= every:
            params, p1 = _fit(s, model, bought, p1)
            out.fits += 1
            out.snapshots.append((total, params))
            since = 0
        i += take
    return out


def ds_all(dataset: Dataset, s: Setup) -> FloatArray:
    """DS-all: two-coin EM over every recorded label plus gold; P(y=1) per streamed task."""
    index = {t: i for i, t in enumerate(sorted(set(dataset.answers) | set(dataset.truth)))}
    who = {w: j for j, w in enumerate(s.workers)}
    gold_main = {i for i in s.gold if i < len(index)}  # their labels are in s.gold_* already
    rows = [
        (index[t], who[w], y)
        for t, labels in dataset.answers.items()
        if index[t] not in gold_main
        for w, y in labels.items()
    ]
    a = np.array(rows, dtype=np.int64).reshape(-1, 3)
    res = dawid_skene(
        np.concatenate([s.gold_task, a[:, 0]]),
        np.concatenate([s.gold_worker, a[:, 1]]),
        np.concatenate([s.gold_label, a[:, 2].astype(np.float64)]),
        s.gold,
        EMSettings(model=ModelName.TWO_COIN),
        n_tasks=s.n_tasks,
        n_labelers=len(s.workers),
    )
    return res.p1[s.task_index]


def figures(
    truth: FloatArray, label: np.ndarray, p1: FloatArray, n_labels: np.ndarray, exhausted: int
) -> dict[str, float]:
    return {
        "avg_k": float(np.mean(n_labels)),
        "accuracy": float(np.mean(label == truth)),
        "mae": float(np.mean(np.abs(truth - p1))),
        "exhausted": float(exhausted),
        "n_tasks": float(len(truth)),
    }


def trial(
    dataset: Dataset,
    gold_tasks: Sequence[str],
    scored_tasks: Sequence[str],
    accuracies: dict[str, float],
    *,
    model: ModelName,
    estimate: Estimate,
    every: int,
    tau: float,
    kappa: int,
    seed: int,
    trial: int,
    estimator: Estimator | str,
    order: Order = Order.RANDOM,
) -> tuple[dict[str, dict[str, float]], int]:
    """One trial of a two-coin or EM replay: the figures of each row, and GTX's EM fits."""
    s = setup(dataset, gold_tasks, scored_tasks, seed, trial)
    initial = gold_params(dataset, s, model, estimator, accuracies)
    sc = s.scored
    truth = s.truth[sc]
    results, fits = {}, 0
    for method in METHODS:
        o = stream(method, s, model, estimate, initial, tau=tau, kappa=kappa, every=every,
                   order=order)  # fmt: skip
        fits = o.fits if method is Method.GTX else fits
        exhausted = int(np.sum(o.decision[sc] == Decision.EXHAUSTED.value))
        results[method.value] = figures(truth, o.label[sc], o.p1[sc], o.n_labels[sc], exhausted)
    every_label = majority_vote(s.labels[sc], s.mask[sc])
    n_all = s.mask[sc].sum(axis=1)
    results[REFERENCE] = figures(truth, every_label.label, every_label.p1, n_all, 0)
    p1 = ds_all(dataset, s)[sc]
    results[DS_REFERENCE] = figures(truth, (p1 >= 0.5).astype(np.int64), p1, n_all, 0)
    return results, fits
