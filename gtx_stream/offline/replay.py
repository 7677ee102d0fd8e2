"""The confidence-threshold strategy (section 2.3), or uncertainty sampling (strategy 2, with a
budget: :mod:`.replay_uncertainty`), replayed on real crowdsourced labels.

A dataset folder holds ``answers.csv`` (``task,worker,label``), ``truth.csv`` (``task,truth``)
and, optionally, a separate assessment set: ``assessment_answers.csv`` + ``assessment_truth.csv``
(section 2.2 of the paper). The recorded workers play the labelers. Each scored task's recorded
labels arrive in a random order, :func:`gtx_stream.core.draws.labeler_order` of
``(seed + trial, task id, the workers who labeled the task)``, and
:func:`gtx_stream.core.decision.threshold_stop` stops early exactly as the aggregator would.

Labeler accuracies come from the assessment set when the folder has one. Otherwise a random
``assess_fraction`` of the tasks of ``truth.csv`` is drawn as gold: the workers' answers on them
give the accuracies, and those tasks are left out of scoring. A worker with no assessment item
gets the estimator's value for zero items (0.5 for both ``beta`` and ``mle``), so its labels
carry no weight in GTX and SV.

The math lives in :mod:`gtx_stream.core` (``models``, ``decision``, ``accuracy.assess``); this
module only draws gold tasks, orders labels and counts. Two-coin, EM and ``order = best``
replays are streams (:mod:`.replay_stream`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gtx_stream.core import accuracy
from gtx_stream.core.accuracy import Estimator
from gtx_stream.core.datasets import Dataset, DatasetError
from gtx_stream.core.decision import Decision, Stop, threshold_stop
from gtx_stream.core.draws import labeler_order, stable_hash
from gtx_stream.core.models import FloatArray, Method, ModelName, majority_vote
from gtx_stream.offline import replay_stream, replay_uncertainty
from gtx_stream.offline.replay_queues import Order
from gtx_stream.offline.replay_stream import (
    DEFAULT_EVERY,
    DS_REFERENCE,
    METHODS,
    REFERENCE,
    Estimate,
    figures,
)

REFERENCES = (REFERENCE, DS_REFERENCE)
"""The reference rows: ``mv-all`` always, ``ds-all`` in two-coin or EM replays."""


@dataclass(frozen=True)
class Assessment:
    """Labeler accuracies for one trial, and which tasks they leave to be scored."""

    accuracies: dict[str, float]
    """Estimated accuracy of every worker of ``answers.csv``."""
    gold_tasks: tuple[str, ...]
    """Tasks of ``truth.csv`` spent on the estimate (none when the folder has an assessment set)."""
    scored_tasks: tuple[str, ...]
    unassessed: int
    """Workers with no assessment item, who get the estimator's value for zero items."""


@dataclass(frozen=True)
class TaskResult:
    """How one task went in one trial: the labelers asked, in order, and where it stopped."""

    task: str
    truth: int
    labelers: tuple[str, ...]
    labels: tuple[int, ...]
    label: int
    p1: float
    n_labels: int
    decision: Decision


@dataclass(frozen=True)
class Row:
    """One method's figures, averaged over trials, with standard errors of the mean."""

    method: str
    tau: float | None
    k: int | None
    """Fixed number of labels (MV, WMV); None for the threshold methods and the reference."""
    avg_k: float
    avg_k_se: float
    accuracy: float
    accuracy_se: float
    error: float
    error_se: float
    mae: float
    mae_se: float
    exhausted: float
    """Tasks that ran out of labelers before the method stopped (decision ``exhausted``)."""
    exhausted_se: float
    n_tasks: float
    trials: int


@dataclass(frozen=True)
class Report:
    """Everything ``gtx-stream replay`` prints."""

    dataset: str
    n_tasks: int
    n_workers: int
    n_labels: int
    assessment: str
    """``assessment set`` or ``gold tasks``."""
    n_gold: int
    unassessed: float
    """Workers without an assessment item, averaged over trials."""
    estimator: str
    tau: float
    kappa: int
    seed: int
    trials: int
    rows: tuple[Row, ...]
    model: str = ModelName.ONE_COIN.value
    estimate: str = Estimate.GOLD.value
    every: int | None = None
    """EM's cadence in labels bought (``estimate = em``), else None."""
    fits: float = 0.0
    """EM refits of GTX's stream per trial, averaged over trials (``estimate = em``)."""
    truthless: int = 0
    """Tasks without a truth: never scored; labeled only in the stream (two-coin, EM, best)."""
    strategy: str = "threshold"
    """``threshold`` (strategy 1), or ``uncertainty`` (strategy 2, spending ``budget`` labels)."""
    budget: int | None = None
    order: str = Order.RANDOM.value
    """Who is asked next about a task: ``random`` (seeded) or ``best`` (estimated skill)."""


# -- one trial -------------------------------------------------------------------------------


def _check_seed(seed: int, trial: int) -> None:
    if seed < 0 or trial < 0:
        raise ValueError(f"seed and trial must be >= 0, got seed {seed}, trial {trial}")


def gold_tasks(
    tasks: Sequence[str], assess_fraction: float, seed: int, trial: int = 0
) -> list[str]:
    """The gold subset of a trial: round(fraction * n) tasks, drawn by ``(seed + trial)``.

    The draw permutes the sorted task ids, so it does not depend on the order of ``tasks``.
    """
    _check_seed(seed, trial)
    if not 0.0 <= assess_fraction < 1.0:
        raise ValueError(f"assess fraction must be in [0, 1), got {assess_fraction}")
    ordered = sorted(tasks)
    n_gold = int(round(assess_fraction * len(ordered)))
    rng = np.random.default_rng([seed + trial, stable_hash("gold tasks")])
    picked = rng.permutation(len(ordered))[:n_gold]
    return sorted(ordered[i] for i in picked)


def assess(
    dataset: Dataset,
    *,
    seed: int = 0,
    trial: int = 0,
    assess_fraction: float = 0.1,
    estimator: Estimator | str = Estimator.BETA,
) -> Assessment:
    """Accuracies of the dataset's workers for one trial, from its assessment set or gold tasks."""
    if Estimator(estimator) is Estimator.TRUE:
        raise ValueError("a real dataset has no true accuracies: use mle or beta")
    if dataset.assessment is not None:
        gold: list[str] = []
        answers, truth = dataset.assessment.answers, dataset.assessment.truth
    else:
        gold = gold_tasks(list(dataset.truth), assess_fraction, seed, trial)
        answers = {task: dataset.answers.get(task, {}) for task in gold}
        truth = dataset.truth
    estimates = accuracy.assess(answers, truth, estimator, labelers=dataset.workers)
    gold_set = set(gold)
    scored = tuple(sorted(t for t in dataset.truth if t not in gold_set))
    if not scored:
        raise DatasetError(f"{dataset.name}: no task left to score after the gold split")
    return Assessment(
        accuracies={w: e.accuracy for w, e in estimates.items()},
        gold_tasks=tuple(gold),
        scored_tasks=scored,
        unassessed=sum(1 for e in estimates.values() if e.total == 0),
    )


@dataclass(frozen=True)
class _Queues:
    """Each scored task's recorded labels in arrival order, padded into arrays."""

    tasks: tuple[str, ...]
    truth: FloatArray
    order: list[list[str]]
    labels: FloatArray
    accuracies: FloatArray
    mask: np.ndarray


def _queues(dataset: Dataset, assessment: Assessment, seed: int, trial: int) -> _Queues:
    tasks = assessment.scored_tasks
    order = [
        labeler_order(seed + trial, task, list(dataset.answers.get(task, {}))) for task in tasks
    ]
    width = max(1, max(len(o) for o in order))
    labels = np.zeros((len(tasks), width))
    accuracies = np.full((len(tasks), width), 0.5)
    mask = np.zeros((len(tasks), width), dtype=bool)
    for i, (task, workers) in enumerate(zip(tasks, order, strict=True)):
        recorded = dataset.answers.get(task, {})
        n = len(workers)
        labels[i, :n] = [recorded[w] for w in workers]
        accuracies[i, :n] = [assessment.accuracies[w] for w in workers]
        mask[i, :n] = True
    truth = np.array([dataset.truth[t] for t in tasks], dtype=np.float64)
    return _Queues(tasks, truth, order, labels, accuracies, mask)


def _stop(method: Method, q: _Queues, tau: float, kappa: int) -> Stop:
    return threshold_stop(method, q.labels, q.accuracies, tau, kappa, q.mask)


def replay_tasks(
    dataset: Dataset,
    method: Method | str,
    *,
    tau: float = 0.99,
    kappa: int = 5,
    seed: int = 0,
    trial: int = 0,
    assess_fraction: float = 0.1,
    estimator: Estimator | str = Estimator.BETA,
    assessment: Assessment | None = None,
) -> list[TaskResult]:
    """Per-task outcome of one method in one trial, in sorted task order.

    Pass ``assessment`` to replay with given accuracies and scored tasks; by default they come
    from :func:`assess` with the same seed and trial.
    """
    _check_seed(seed, trial)
    if assessment is None:
        assessment = assess(
            dataset, seed=seed, trial=trial, assess_fraction=assess_fraction, estimator=estimator
        )
    q = _queues(dataset, assessment, seed, trial)
    stop = _stop(Method(method), q, tau, kappa)
    out = []
    for i, task in enumerate(q.tasks):
        n = int(stop.n_labels[i])
        used = tuple(q.order[i][:n])
        out.append(
            TaskResult(
                task=task,
                truth=int(q.truth[i]),
                labelers=used,
                labels=tuple(int(v) for v in q.labels[i, :n]),
                label=int(stop.posterior.label[i]),
                p1=float(stop.posterior.p1[i]),
                n_labels=n,
                decision=Decision(int(stop.decision[i])),
            )
        )
    return out


# -- many trials -----------------------------------------------------------------------------


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return float(x.mean()), se


def _row(
    method: str, tau: float | None, k: int | None, per_trial: dict[str, list[float]], trials: int
) -> Row:
    stats = {name: _mean_se(values) for name, values in per_trial.items()}
    (acc, acc_se), (avg_k, avg_k_se) = stats["accuracy"], stats["avg_k"]
    return Row(method=method, tau=tau, k=k, avg_k=avg_k, avg_k_se=avg_k_se, accuracy=acc,
               accuracy_se=acc_se, error=1.0 - acc, error_se=acc_se, mae=stats["mae"][0],
               mae_se=stats["mae"][1], exhausted=stats["exhausted"][0],
               exhausted_se=stats["exhausted"][1], n_tasks=stats["n_tasks"][0],
               trials=trials)  # fmt: skip


def replay(
    dataset: Dataset,
    *,
    tau: float = 0.99,
    kappa: int = 5,
    trials: int = 10,
    seed: int = 0,
    assess_fraction: float = 0.1,
    estimator: Estimator | str = Estimator.BETA,
    model: ModelName | str = ModelName.ONE_COIN,
    estimate: Estimate | str = Estimate.GOLD,
    every: int = DEFAULT_EVERY,
    strategy: str = "threshold",
    budget: int | None = None,
    order: Order | str = Order.RANDOM,
    on_trial: Callable[[], None] | None = None,
) -> Report:
    """Replay every method over ``trials`` trials (trial t orders labels with seed + t),
    calling ``on_trial`` after each (a progress line).

    ``model`` and ``estimate`` other than one-coin from gold replay the tasks as a stream
    (:mod:`.replay_stream`), with EM refit every ``every`` labels bought for ``em``, and add
    the ``ds-all`` reference row. ``strategy = "uncertainty"`` spends ``budget`` labels on the
    scored tasks by uncertainty sampling instead (one-coin from gold only; tie-breaks seed + t).
    ``order = best`` asks each task's workers best first (:class:`~.replay_queues.Order`), as a
    stream too (threshold only).
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    _check_seed(seed, 0)
    model, estimate, order = ModelName(model), Estimate(estimate), Order(order)
    if every < 1:
        raise ValueError(f"the EM cadence must be at least 1 label, got {every}")
    one_coin_gold = model is ModelName.ONE_COIN and estimate is Estimate.GOLD
    replay_uncertainty.check(strategy, budget, one_coin_gold, order)
    legacy = one_coin_gold and order is Order.RANDOM
    names = [m.value for m in METHODS] + list(REFERENCES)
    per_trial: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    unassessed, n_gold, fits = [], 0, []
    for trial in range(trials):
        assessment = assess(
            dataset, seed=seed, trial=trial, assess_fraction=assess_fraction, estimator=estimator
        )
        unassessed.append(assessment.unassessed)
        n_gold = len(assessment.gold_tasks)
        if strategy == "uncertainty":
            q = _queues(dataset, assessment, seed, trial)
            results = replay_uncertainty.trial(q.labels, q.accuracies, q.mask, q.truth,
                                               budget=budget or 0, kappa=kappa, tau=tau,
                                               seed=seed + trial)  # fmt: skip
        elif legacy:
            results = _legacy_trial(dataset, assessment, tau, kappa, seed, trial)
        else:
            results, n_fits = replay_stream.trial(
                dataset, assessment.gold_tasks, assessment.scored_tasks, assessment.accuracies,
                model=model, estimate=estimate, every=every, tau=tau, kappa=kappa, seed=seed,
                trial=trial, estimator=estimator, order=order,
            )  # fmt: skip
            fits.append(n_fits)
        for name, row_figures in results.items():
            for key, value in row_figures.items():
                per_trial[name].setdefault(key, []).append(value)
        if on_trial is not None:
            on_trial()
    threshold = strategy == "threshold"
    rows = [_row(m.value, tau if m.uses_threshold and threshold else None,
                 None if m.uses_threshold or not threshold else kappa, per_trial[m.value], trials)
            for m in METHODS]  # fmt: skip
    rows += [
        _row(name, None, None, per_trial[name], trials) for name in REFERENCES if per_trial[name]
    ]
    return Report(
        dataset=dataset.name,
        n_tasks=len(dataset.truth),
        n_workers=len(dataset.workers),
        n_labels=dataset.n_labels,
        assessment="assessment set" if dataset.assessment is not None else "gold tasks",
        n_gold=n_gold,
        unassessed=float(np.mean(unassessed)),
        estimator=Estimator(estimator).value,
        tau=tau,
        kappa=kappa,
        seed=seed,
        trials=trials,
        rows=tuple(rows),
        model=model.value,
        estimate=estimate.value,
        every=every if estimate is Estimate.EM else None,
        fits=float(np.mean(fits)) if fits else 0.0,
        truthless=len(dataset.truthless),
        strategy=strategy,
        budget=budget if strategy == "uncertainty" else None,
        order=order.value,
    )


def _legacy_trial(
    dataset: Dataset, assessment: Assessment, tau: float, kappa: int, seed: int, trial: int
) -> dict[str, dict[str, float]]:
    """One trial of the paper's replay: one-coin accuracies from gold, every task at once."""
    q = _queues(dataset, assessment, seed, trial)
    results = {}
    for method in METHODS:
        stop = _stop(method, q, tau, kappa)
        exhausted = int(np.sum(stop.decision == Decision.EXHAUSTED.value))
        post = stop.posterior
        results[method.value] = figures(q.truth, post.label, post.p1, stop.n_labels, exhausted)
    every = majority_vote(q.labels, q.mask)
    results[REFERENCE] = figures(q.truth, every.label, every.p1, q.mask.sum(axis=1), 0)
    return results
