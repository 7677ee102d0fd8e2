r"""Semi-supervised Dawid-Skene EM: labeler parameters learned from every label, plus gold.

Equation (4) measures a labeler on gold items only, and most labelers of a real crowd answer
fewer than five; one with none gets 0.5, so its labels are bought and then weigh nothing. EM
(Dawid and Skene, 1979) uses every label: it alternates

- **E-step**: each task's posterior q_i = P(y_i = 1 | labels) under the current parameters
  (equation (3) for ``one_coin``, its two-coin form for ``two_coin``); a gold task is clamped to
  its truth, q_i = y_i;
- **M-step**: each labeler's parameters from its labels weighted by the posteriors, the
  posterior mean under a Beta prior pooled over the cohort (below); the class prior is
  configured (1/2 by default), or estimated as pi = (sum_i q_i + 1) / (n + 2) over the tasks
  with a label or gold (:class:`EMSettings`).

For one-coin labelers the expected number right is c_j = sum over j's labels of
q_i [label = 1] + (1 - q_i) [label = 0], out of n_j labels; for two-coin ones, sensitivity counts
c = sum q_i [label = 1] out of n = sum q_i, and specificity c = sum (1 - q_i) [label = 0] out of
n = sum (1 - q_i). Each parameter is then

.. math::
    \hat\theta_j = \frac{c_j + m\,s}{n_j + s}, \qquad
    m = \frac{\sum_j c_j / (n_j + s)}{\sum_j n_j / (n_j + s)},

the mean of a Beta(m s, (1 - m) s) prior: an empirical-Bayes prior pooled over the cohort, of
fixed strength s (``EMSettings.prior_strength``, in labels; default 4) and
mean m fitted to the current estimates: m is the fixed point of "m = the cohort's mean
estimate", m = mean_j theta_j over labelers with labels, which is the closed form above. A
labeler with no label gets exactly m, one with few labels little more or less, so a labeler
without gold starts from the cohort's estimate, not 0.5.

Guards against EM's known failures, checked after convergence:

- **orientation**: gold anchors which class is which. If EM's solution says less than half of
  all labels are right while the gold answers say more than half are (or the other way round,
  for a cohort that gold shows to be worse than chance), the solution is label-switched: EM is
  restarted from the gold estimates, and if it switches again the gold estimates (with the
  pooled prior) are returned. With no gold answer at all nothing anchors it, and EM
  relies on its majority-vote start, i.e. on the cohort being better than chance.
- **disagreement with gold**: a parameter whose EM estimate lies outside the labeler's gold
  credible interval (the Beta(``gold_prior``) posterior) falls back to the gold estimate. The
  intervals are Bonferroni-corrected over all the parameters checked, so that the chance of
  any false alarm in a cohort whose EM estimates are right is about 1 - ``guard_level`` at most.

Each guard that fires is a :class:`Fallback` in the result, with its reason, and is logged at
INFO. Everything is vectorised over labels (one ``bincount`` per sum); a (task, labeler) pair
should occur once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core import em_steps as steps
from gtx_stream.core.accuracy import DEFAULT_PRIOR
from gtx_stream.core.em_steps import Counts, LabelArrays
from gtx_stream.core.models import (
    FloatArray,
    ModelName,
    OneCoin,
    TwoCoin,
)

log = logging.getLogger(__name__)

DEFAULT_PRIOR_STRENGTH = 4.0
"""Strength s of the pooled prior, in labels: a labeler's own labels outweigh the cohort's mean
once it has given more than s of them."""


@dataclass(frozen=True)
class EMSettings:
    """How EM fits: the model, the pooled prior, the class prior, convergence, the guards.

    ``class_prior``: a fixed pi (1/2 by default, GTX's default prior), or None to estimate it in
    the M-step. Fixed by default because a one-coin model cannot represent class-asymmetric
    errors and bends an estimated pi to absorb them: on bluebirds, one-coin EM without gold
    estimates pi = 0.04 and gets 0.58 of the tasks right, 0.72 with pi fixed at 1/2; two-coin
    EM gets 0.90 either way, and on rte, temp and possent fixing it changes nothing by more
    than 0.003. ``level``: of the reported intervals.
    ``guard_level``: the gold intervals outside which EM falls back to gold hold together at
    this level (Bonferroni over the parameters checked). Per parameter, a 95% interval misses
    the true value one time in twenty, and then a good estimate from hundreds of labels would
    be replaced by a worse one from a dozen gold answers: on possent and temp with 20 random
    gold tasks, uncorrected 99% intervals replaced six EM estimates of 0.81-0.97 (true share
    right 0.81-0.93) by gold estimates of 0.25-0.60.
    """

    model: ModelName = ModelName.ONE_COIN
    prior_strength: float = DEFAULT_PRIOR_STRENGTH
    class_prior: float | None = 0.5
    gold_prior: tuple[float, float] = DEFAULT_PRIOR
    level: float = 0.95
    guard_level: float = 0.99
    tol: float = 1e-6
    max_iter: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", ModelName(self.model))
        if self.prior_strength <= 0:
            raise ValueError(f"prior_strength must be positive, got {self.prior_strength}")
        if self.class_prior is not None and not 0.0 < self.class_prior < 1.0:
            raise ValueError(f"class prior must be in (0, 1), got {self.class_prior}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")


@dataclass(frozen=True)
class Fallback:
    """A guard that fired: which labeler (None: the whole cohort), parameter, values, and why."""

    labeler: int | None
    parameter: str
    em: float
    gold: float
    lower: float
    upper: float
    reason: str


@dataclass(frozen=True)
class EMResult:
    """Fitted labeler parameters, task posteriors, and how the fit went.

    ``params[name][j]`` for each parameter the model reads (``accuracy``; or ``sensitivity`` and
    ``specificity``) with its equal-tailed ``level`` interval in ``lower`` / ``upper`` (from
    the Beta posterior of the soft counts); ``p1[i]`` = P(y_i = 1), gold tasks at their truth;
    ``cohort_mean[name]`` is the pooled prior's mean m.
    """

    model: ModelName
    params: dict[str, FloatArray]
    lower: dict[str, FloatArray]
    upper: dict[str, FloatArray]
    class_prior: float
    p1: FloatArray
    iterations: int
    converged: bool
    fallbacks: tuple[Fallback, ...]
    cohort_mean: dict[str, float]
    prior_strength: float

    def labeler(self, j: int) -> OneCoin | TwoCoin:
        """Labeler j's parameters as the posterior's typed parameters."""
        if self.model is ModelName.ONE_COIN:
            return OneCoin(float(self.params["accuracy"][j]))
        return TwoCoin(float(self.params["sensitivity"][j]), float(self.params["specificity"][j]))


@dataclass(frozen=True)
class _Fit:
    q: FloatArray
    params: dict[str, FloatArray]
    means: dict[str, float]
    counts: Counts
    pi: float
    iterations: int
    converged: bool


def _iterate(q: FloatArray, d: LabelArrays, opt: EMSettings) -> _Fit:
    prev: FloatArray | None = None
    for it in range(1, opt.max_iter + 1):
        params, means, counts = steps.m_step(q, d, opt.model, opt.prior_strength)
        pi = steps.class_prior(q, d, opt.class_prior)
        q = steps.e_step(params, pi, d, opt.model)
        flat = np.concatenate([*params.values(), [pi]])
        if prev is not None and np.max(np.abs(flat - prev), initial=0.0) < opt.tol:
            return _Fit(q, params, means, counts, pi, it, True)
        prev = flat
    return _Fit(q, params, means, counts, pi, opt.max_iter, False)


def _fallback(fb: Fallback) -> Fallback:
    who = "the cohort" if fb.labeler is None else f"labeler {fb.labeler}"
    log.info("EM fallback for %s (%s): %s", who, fb.parameter, fb.reason)
    return fb


def _orientation(fit: _Fit, d: LabelArrays, opt: EMSettings) -> tuple[_Fit, list[Fallback]]:
    """The label-switching guard: restart from gold, or use gold, when gold says EM flipped."""
    model, s = opt.model, opt.prior_strength
    gold_counts = steps.gold_counts(d, model)
    right = sum(float(c.sum()) for c, _ in gold_counts.values())
    answered = sum(float(n.sum()) for _, n in gold_counts.values())
    share = steps.share_right(fit.q, d)
    gold_share = right / answered if answered else 0.5
    if (gold_share - 0.5) * (share - 0.5) >= 0:  # same side of chance, or nothing to anchor on
        return fit, []
    why = (
        f"EM's solution is label-switched: {share:.3f} of all labels agree with it, "
        f"{gold_share:.3f} of the {answered:.0f} answers to gold tasks are right"
    )
    pooled = {name: steps.pooled(c, n, s) for name, (c, n) in gold_counts.items()}
    params = {name: est for name, (est, _) in pooled.items()}
    means = {name: m for name, (_, m) in pooled.items()}
    pi = steps.class_prior(steps.clamp(np.full(d.n_tasks, 0.5), d), d, opt.class_prior)
    again = _iterate(steps.e_step(params, pi, d, model), d, opt)
    if (steps.share_right(again.q, d) - 0.5) * (gold_share - 0.5) > 0:
        why += "; restarted from the gold estimates"
        return again, [_fallback(Fallback(None, "all", share, gold_share, 0.0, 1.0, why))]
    why += "; restarted from gold and switched again, so the gold estimates are used"
    used = _Fit(
        steps.e_step(params, pi, d, model), params, means, gold_counts, pi, again.iterations, False
    )
    return used, [_fallback(Fallback(None, "all", share, gold_share, 0.0, 1.0, why))]


def _gold_guard(
    fit: _Fit, d: LabelArrays, opt: EMSettings
) -> tuple[dict[str, FloatArray], list[Fallback]]:
    """Parameters outside their gold interval fall back to the gold estimate: (params, records)."""
    params = {name: v.copy() for name, v in fit.params.items()}
    out: list[Fallback] = []
    a, b = opt.gold_prior
    counts = steps.gold_counts(d, opt.model)
    checked = sum(int(np.count_nonzero(n > 0)) for _, n in counts.values())
    level = 1.0 - (1.0 - opt.guard_level) / max(checked, 1)  # Bonferroni over the checks
    for name, (c, n) in counts.items():
        point = (c + a) / (n + a + b)
        lo, hi = steps.beta_interval(c, n, a, b, level)
        for j in np.flatnonzero((n > 0) & ((params[name] < lo) | (params[name] > hi))):
            em, gold = float(params[name][j]), float(point[j])
            why = (
                f"EM's {name} {em:.3f} is outside the {level:.4%} interval "
                f"[{lo[j]:.3f}, {hi[j]:.3f}] of its {n[j]:.0f} gold answers; "
                f"their estimate {gold:.3f} is used"
            )
            out.append(_fallback(Fallback(int(j), name, em, gold, float(lo[j]), float(hi[j]), why)))
            params[name][j] = gold
    return params, out


def dawid_skene(
    task: ArrayLike,
    labeler: ArrayLike,
    label: ArrayLike,
    gold: Mapping[int, int] | ArrayLike | None = None,
    settings: EMSettings | None = None,
    *,
    n_tasks: int | None = None,
    n_labelers: int | None = None,
    init: ArrayLike | None = None,
) -> EMResult:
    """Semi-supervised Dawid-Skene EM over flat label arrays (module docstring).

    ``task[k]``, ``labeler[k]``, ``label[k]``: the k-th label (indices from 0). ``gold``: task ->
    truth, or an array per task with -1 where there is none. ``init``: a starting P(y=1) per
    task (a warm start from an earlier fit); majority vote by default. Converged when no
    parameter moves by ``settings.tol`` in an iteration.
    """
    opt = settings or EMSettings()
    d = steps.prepare(task, labeler, label, gold, n_tasks, n_labelers)
    q0 = (
        steps.majority(d)
        if init is None
        else steps.clamp(np.asarray(init, dtype=np.float64).ravel(), d)
    )
    fit, fallbacks = _orientation(_iterate(q0, d, opt), d, opt)
    params, replaced = _gold_guard(fit, d, opt)
    q = steps.e_step(params, fit.pi, d, opt.model) if replaced else fit.q

    s = opt.prior_strength
    lower, upper = {}, {}
    for name, (c, n) in fit.counts.items():
        m = fit.means[name]
        lower[name], upper[name] = steps.beta_interval(c, n, m * s, (1.0 - m) * s, opt.level)
        for fb in replaced:  # a gold estimate comes with its gold interval
            if fb.parameter == name and fb.labeler is not None:
                lower[name][fb.labeler], upper[name][fb.labeler] = fb.lower, fb.upper
        # the interval holds the estimate: with a cohort that always agrees its pooled prior
        # puts nearly no mass below 1, and the Beta quantiles round to 1.0 above an estimate
        # kept off 1
        est = np.asarray(params[name], dtype=np.float64)
        lower[name], upper[name] = np.minimum(lower[name], est), np.maximum(upper[name], est)
    return EMResult(
        model=opt.model,
        params=params,
        lower=lower,
        upper=upper,
        class_prior=fit.pi,
        p1=q,
        iterations=fit.iterations,
        converged=fit.converged,
        fallbacks=tuple(fallbacks + replaced),
        cohort_mean=fit.means,
        prior_strength=s,
    )
