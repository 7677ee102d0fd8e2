"""The trial's stream for :mod:`.replay_stream`: gold answers, the tasks in arrival order, and
each task's recorded labels in the order its workers are asked.

The queues are laid out in :func:`~gtx_stream.core.draws.labeler_order` (``Order.RANDOM``, as
the random dispatcher walks them); ``Order.BEST`` reorders a stretch of tasks by the workers'
estimated skill under the parameters in force when those tasks arrive (:func:`queues`), with
:func:`~gtx_stream.core.draws.best_first`, the rule of the ``best`` dispatcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from gtx_stream.core.datasets import Dataset
from gtx_stream.core.draws import best_first, labeler_order, stable_hash
from gtx_stream.core.models import FloatArray, IntArray

Params = dict[str, FloatArray]
"""Parameter name -> value per worker index (``accuracy``; or ``sensitivity``, ``specificity``)."""


class Order(StrEnum):
    """Which recorded labeler of a task is asked next."""

    RANDOM = "random"
    """The seeded :func:`~gtx_stream.core.draws.labeler_order` (``dispatch = random``)."""
    BEST = "best"
    """The one of highest estimated skill, from the parameters in force when the task arrives;
    ties in the seeded order (:func:`~gtx_stream.core.draws.best_first`, ``dispatch = best``)."""


@dataclass(frozen=True)
class Setup:
    """One trial's stream: the gold answers, and the streamed tasks' label queues in order.

    Task indices: the dataset's tasks (sorted), then the assessment set's; worker indices: the
    sorted workers of both.
    """

    workers: tuple[str, ...]
    n_tasks: int
    gold_task: IntArray
    gold_worker: IntArray
    gold_label: FloatArray
    gold: dict[int, int]
    """Task index -> truth of every gold task (EM clamps them)."""
    tasks: tuple[str, ...]
    """Streamed tasks in arrival order."""
    task_index: IntArray
    scored: np.ndarray
    truth: FloatArray
    """Per streamed task: its truth, nan for a task without one."""
    order: list[list[str]]
    """Per streamed task: the workers who labeled it, in their seeded random order."""
    labels: FloatArray
    worker: IntArray
    mask: np.ndarray


def arrival_order(tasks: Sequence[str], seed: int, trial: int) -> list[str]:
    """The order tasks arrive in, in trial t: a permutation of the sorted ids by (seed + t)."""
    ordered = sorted(tasks)
    rng = np.random.default_rng([seed + trial, stable_hash("task arrival")])
    return [ordered[i] for i in rng.permutation(len(ordered))]


def setup(
    dataset: Dataset, gold_tasks: Sequence[str], scored: Sequence[str], seed: int, trial: int
) -> Setup:
    """The trial's stream: ``scored`` tasks and the truthless ones, gold answers beside them."""
    main = sorted(set(dataset.answers) | set(dataset.truth))
    extra = sorted(dataset.assessment.truth) if dataset.assessment is not None else []
    index = {t: i for i, t in enumerate(main)}
    extra_index = {t: len(main) + i for i, t in enumerate(extra)}  # ids may repeat main ones
    people = set(dataset.workers)
    if dataset.assessment is not None:
        people |= set(dataset.assessment.workers)
    workers = tuple(sorted(people))
    who = {w: j for j, w in enumerate(workers)}

    gold_rows: list[tuple[int, int, int]] = []
    gold: dict[int, int] = {}
    if dataset.assessment is not None:
        for t, y in dataset.assessment.truth.items():
            i = extra_index[t]
            gold[i] = y
            gold_rows += [(i, who[w], v) for w, v in dataset.assessment.answers.get(t, {}).items()]
    for t in gold_tasks:
        gold[index[t]] = dataset.truth[t]
        gold_rows += [(index[t], who[w], v) for w, v in dataset.answers.get(t, {}).items()]
    g = np.array(gold_rows, dtype=np.int64).reshape(-1, 3)

    tasks = arrival_order([*scored, *dataset.truthless], seed, trial)
    order = [labeler_order(seed + trial, t, list(dataset.answers.get(t, {}))) for t in tasks]
    width = max(1, max((len(o) for o in order), default=1))
    labels = np.zeros((len(tasks), width))
    worker = np.zeros((len(tasks), width), dtype=np.int64)
    mask = np.zeros((len(tasks), width), dtype=bool)
    for i, (t, ws) in enumerate(zip(tasks, order, strict=True)):
        recorded = dataset.answers.get(t, {})
        labels[i, : len(ws)] = [recorded[w] for w in ws]
        worker[i, : len(ws)] = [who[w] for w in ws]
        mask[i, : len(ws)] = True
    truth = np.array([dataset.truth.get(t, np.nan) for t in tasks], dtype=np.float64)
    return Setup(
        workers=workers,
        n_tasks=len(main) + len(extra),
        gold_task=g[:, 0],
        gold_worker=g[:, 1],
        gold_label=g[:, 2].astype(np.float64),
        gold=gold,
        tasks=tuple(tasks),
        task_index=np.array([index[t] for t in tasks], dtype=np.int64),
        scored=~np.isnan(truth),
        truth=truth,
        order=order,
        labels=labels,
        worker=worker,
        mask=mask,
    )


def weight(params: Params) -> FloatArray:
    """Each worker's one number: the accuracy, or a two-coin worker's balanced accuracy."""
    if "accuracy" in params:
        return params["accuracy"]
    return (params["sensitivity"] + params["specificity"]) / 2.0


Queue = tuple[FloatArray, IntArray, np.ndarray]
"""Rows of tasks' queues in the order asked: labels, worker indices, mask."""


def queues(s: Setup, rows: slice, params: Params, order: Order) -> Queue:
    """The queues of ``rows`` in ``order``; ``best`` ranks each by the ``params`` given."""
    labels, w, mask = s.labels[rows], s.worker[rows], s.mask[rows]
    if order is Order.RANDOM:
        return labels, w, mask
    pick = best_first(weight(params)[w], mask)
    return (
        np.take_along_axis(labels, pick, axis=1),
        np.take_along_axis(w, pick, axis=1),
        np.take_along_axis(mask, pick, axis=1),
    )
