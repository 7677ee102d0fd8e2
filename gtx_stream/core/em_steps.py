"""The vectorised steps of :mod:`gtx_stream.core.em`: labels as flat arrays, E-step, M-step.

Every sum over labels is one ``np.bincount``, so a step costs a few passes over the label
arrays whatever the number of tasks and labelers. The formulas are in :mod:`.em`'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaincinv

from gtx_stream.core.models import ACCURACY_EPS, FloatArray, IntArray, ModelName, logit, sigmoid

Counts = dict[str, tuple[FloatArray, FloatArray]]
"""Per parameter name: (right, out of) per labeler."""


@dataclass(frozen=True)
class LabelArrays:
    """The labels as flat arrays (the k-th label: task, labeler, 0/1) and gold per task."""

    task: IntArray
    labeler: IntArray
    label: FloatArray
    gold: FloatArray  # per task: the truth, or nan
    seen: np.ndarray  # per task: has a label or gold
    n_labelers: int

    @property
    def n_tasks(self) -> int:
        return len(self.gold)


def gold_array(gold: Mapping[int, int] | ArrayLike | None, n_tasks: int | None) -> FloatArray:
    """Truth per task, nan where there is none, from task -> truth or an array with -1 for none."""
    if gold is None:
        return np.full(n_tasks or 0, np.nan)
    if isinstance(gold, Mapping):
        top = max([n_tasks or 0, *(int(t) + 1 for t in gold)])
        out = np.full(top, np.nan)
        for t, y in gold.items():
            out[int(t)] = y
    else:
        raw = np.asarray(gold, dtype=np.float64).ravel()
        out = np.where(raw < 0, np.nan, raw)
        if n_tasks is not None and n_tasks > len(out):
            out = np.concatenate([out, np.full(n_tasks - len(out), np.nan)])
    known = out[~np.isnan(out)]
    if np.any((known != 0) & (known != 1)):
        raise ValueError("gold truths must be 0 or 1")
    return out


def prepare(
    task: ArrayLike,
    labeler: ArrayLike,
    label: ArrayLike,
    gold: Mapping[int, int] | ArrayLike | None,
    n_tasks: int | None,
    n_labelers: int | None,
) -> LabelArrays:
    """Checked :class:`LabelArrays`: equal lengths, indices from 0, labels and truths 0 or 1."""
    t = np.asarray(task, dtype=np.int64).ravel()
    j = np.asarray(labeler, dtype=np.int64).ravel()
    y = np.asarray(label, dtype=np.float64).ravel()
    if not len(t) == len(j) == len(y):
        raise ValueError(f"task, labeler and label differ in length: {len(t)}, {len(j)}, {len(y)}")
    if len(t) and (t.min() < 0 or j.min() < 0):
        raise ValueError("task and labeler indices must be non-negative")
    if np.any((y != 0) & (y != 1)):
        raise ValueError("labels must be 0 or 1")
    tasks = max(n_tasks or 0, int(t.max()) + 1 if len(t) else 0)
    g = gold_array(gold, tasks)
    labelers = max(n_labelers or 0, int(j.max()) + 1 if len(j) else 0)
    seen = (np.bincount(t, minlength=len(g)) > 0) | ~np.isnan(g)
    return LabelArrays(t, j, y, g, seen, labelers)


def clamp(q: FloatArray, d: LabelArrays) -> FloatArray:
    """P(y=1) per task with every gold task set to its truth."""
    return np.where(np.isnan(d.gold), q, d.gold)


def majority(d: LabelArrays) -> FloatArray:
    """Soft majority vote per task (0.5 without labels), gold clamped: EM's start."""
    n = np.bincount(d.task, minlength=d.n_tasks)
    ones = np.bincount(d.task, weights=d.label, minlength=d.n_tasks)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(n > 0, ones / n, 0.5)
    return clamp(q, d)


def soft_counts(q: FloatArray, d: LabelArrays, model: ModelName) -> Counts:
    """The M-step's sufficient statistics: soft (right, out of) per labeler and parameter."""
    qi = q[d.task]
    k = d.n_labelers

    def total(w: FloatArray | None) -> FloatArray:
        out: FloatArray = np.bincount(d.labeler, weights=w, minlength=k).astype(np.float64)
        return out

    if model is ModelName.ONE_COIN:
        agree = np.where(d.label == 1.0, qi, 1.0 - qi)
        return {"accuracy": (total(agree), total(None))}
    return {
        "sensitivity": (total(d.label * qi), total(qi)),
        "specificity": (total((1.0 - d.label) * (1.0 - qi)), total(1.0 - qi)),
    }


def pooled(c: FloatArray, n: FloatArray, s: float) -> tuple[FloatArray, float]:
    """Posterior means under the cohort's Beta(m s, (1 - m) s) prior, and m (module docstring)."""
    weight = n / (n + s)
    m = float(np.sum(c / (n + s)) / weight.sum()) if weight.sum() > 0 else 0.5
    m = min(max(m, ACCURACY_EPS), 1.0 - ACCURACY_EPS)
    return (c + m * s) / (n + s), m


def m_step(
    q: FloatArray, d: LabelArrays, model: ModelName, s: float
) -> tuple[dict[str, FloatArray], dict[str, float], Counts]:
    counts = soft_counts(q, d, model)
    params, means = {}, {}
    for name, (c, n) in counts.items():
        params[name], means[name] = pooled(c, n, s)
    return params, means, counts


def e_step(
    params: dict[str, FloatArray], pi: float, d: LabelArrays, model: ModelName
) -> FloatArray:
    """Posterior of every task under the parameters: log-odds summed per task with bincount."""
    if model is ModelName.ONE_COIN:
        w = logit(np.clip(params["accuracy"], ACCURACY_EPS, 1.0 - ACCURACY_EPS))[d.labeler]
        votes = np.where(d.label == 1.0, w, -w)
    else:
        s = np.clip(params["sensitivity"], ACCURACY_EPS, 1.0 - ACCURACY_EPS)[d.labeler]
        t = np.clip(params["specificity"], ACCURACY_EPS, 1.0 - ACCURACY_EPS)[d.labeler]
        votes = np.where(d.label == 1.0, np.log(s) - np.log1p(-t), np.log1p(-s) - np.log(t))
    lo = float(logit(pi)) + np.bincount(d.task, weights=votes, minlength=d.n_tasks)
    return clamp(sigmoid(lo), d)


def class_prior(q: FloatArray, d: LabelArrays, fixed: float | None) -> float:
    """pi: ``fixed``, or the Beta(1, 1)-smoothed mean posterior over tasks with a label or gold."""
    if fixed is not None:
        return fixed
    return float((q[d.seen].sum() + 1.0) / (d.seen.sum() + 2.0))


def gold_counts(d: LabelArrays, model: ModelName) -> Counts:
    """Hard counts from the labels on gold tasks only (the clamped q there is the truth)."""
    on_gold = ~np.isnan(d.gold[d.task])
    sub = LabelArrays(
        d.task[on_gold], d.labeler[on_gold], d.label[on_gold], d.gold, d.seen, d.n_labelers
    )
    return soft_counts(np.nan_to_num(d.gold, nan=0.5), sub, model)


def share_right(q: FloatArray, d: LabelArrays) -> float:
    """The share of all labels that agree with the posteriors q (the cohort's mean accuracy)."""
    qi = q[d.task]
    return float(np.mean(np.where(d.label == 1.0, qi, 1.0 - qi))) if len(qi) else 0.5


def beta_interval(
    c: FloatArray, n: FloatArray, a: FloatArray | float, b: FloatArray | float, level: float
) -> tuple[FloatArray, FloatArray]:
    """Equal-tailed ``level`` interval of Beta(c + a, n - c + b), per labeler."""
    pa, pb = c + a, np.maximum(n - c, 0.0) + b
    tail = (1.0 - level) / 2.0
    return (
        np.asarray(betaincinv(pa, pb, tail), dtype=np.float64),
        np.asarray(betaincinv(pa, pb, 1.0 - tail), dtype=np.float64),
    )


def gold_items(counts: ArrayLike) -> tuple[IntArray, IntArray, IntArray]:
    """One gold task per gold answer, from counts per labeler: (labeler, label, truth) arrays.

    ``counts[j]`` = (class 1 labeled 1, class 1 labeled 0, class 0 labeled 0, class 0 labeled 1)
    for labeler j. A gold task answered by one labeler adds exactly that answer to the labeler's
    counts in the M-step and is clamped in the E-step, so these tasks weigh in EM as the shared
    gold tasks they came from would: the fit is the same (with a fixed class prior).
    """
    c = np.asarray(counts, dtype=np.int64).reshape(-1, 4)
    if np.any(c < 0):
        raise ValueError("gold counts must be >= 0")
    who = np.repeat(np.repeat(np.arange(len(c)), 4), c.ravel())
    kind = np.repeat(np.tile(np.arange(4), len(c)), c.ravel())
    label = np.array([1, 0, 0, 1], dtype=np.int64)[kind]
    truth = np.array([1, 1, 0, 0], dtype=np.int64)[kind]
    return who.astype(np.int64), label, truth
