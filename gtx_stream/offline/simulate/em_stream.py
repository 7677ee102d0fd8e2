"""Strategy 1 on a budget with labeler parameters learned by EM from the labels bought so far.

Section 3.3 gives the methods fixed accuracies: the true ones, or estimates from gold made
before the first example (:meth:`.Draws.accuracies`). With ``--accuracy em`` they start from
semi-supervised Dawid-Skene EM (:func:`gtx_stream.core.em.dawid_skene`) over the gold items
alone, and after every ``every`` labels bought EM is rerun over the gold items (clamped to
their truth) and **the labels bought so far**, warm-started from the last fit, as the estimator
service and ``gtx-stream replay --estimate em`` do. An example is decided with the parameters
current when it arrives; a label the rule did not ask for is never given to EM.

Vectorised over trials: each round decides the next examples of every trial at once with the
trial's current parameters (the posterior after t = 1..kappa labels and the core's
:func:`~gtx_stream.core.decision.confident` test, as :mod:`.sweep`), keeps them up to the one
during which the ``every``-th label since the last fit was bought (or the budget ended), and
refits EM per trial. Each setting (a tau, or a fixed k) is its own stream, because the labels
bought, and so the parameters learned, depend on it. MV reads no parameter and is not refitted.

The gold items of :class:`.Draws` are counts per labeler and class; EM gets them as one gold
task per item and labeler (:func:`gold_items`), as the estimator service does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from gtx_stream.core import em_steps
from gtx_stream.core.accuracy import Estimator
from gtx_stream.core.decision import check_tau, confident
from gtx_stream.core.em import EMSettings, dawid_skene
from gtx_stream.core.models import FloatArray, IntArray, Method, ModelName
from gtx_stream.offline.simulate.cohorts import Coins, Draws
from gtx_stream.offline.simulate.results import TABLE_ORDER, Outcome
from gtx_stream.offline.simulate.sweep import LabelerArrays, label_posterior

DEFAULT_EVERY = 1000
"""EM's cadence in the simulator: a fit after every 1000 labels bought (15 in a budget of
15000). 200, the replay's, gives the same error within its standard error (module docs)."""


class Accuracy(StrEnum):
    """Where the methods' labeler parameters come from in a simulation."""

    TRUE = "true"
    """The simulation's own (section 3 of the paper)."""
    MLE = "mle"
    """Equation (4) on the gold items, fixed before the first example."""
    BETA = "beta"
    """The Beta(1, 1) posterior mean on the gold items, fixed before the first example."""
    EM = "em"
    """Semi-supervised EM over the gold items and the labels bought so far, refit as they come."""

    @property
    def estimator(self) -> Estimator:
        """The gold estimator of a fixed source (:class:`ValueError` for ``em``)."""
        if self is Accuracy.EM:
            raise ValueError("em parameters are learned during the run, not fixed up front")
        return Estimator(self.value)


@dataclass(frozen=True)
class GoldItems:
    """One trial's gold items as EM's flat arrays: one task per item and labeler."""

    task: IntArray
    labeler: IntArray
    label: FloatArray
    truth: FloatArray
    """Per gold task (task index = position)."""


def gold_items(draws: Draws, trial: int) -> GoldItems:
    """The gold counts of each labeler as answered items (:func:`core.em_steps.gold_items`).

    One task per item and labeler: a clamped task weighs in EM by its answer alone, so this is
    the fit of gold items shared between labelers, as the estimator service has it.
    """
    tp, pos, tn, neg = np.moveaxis(draws.assess_two_coin[trial], -1, 0)
    labeler, label, truth = em_steps.gold_items(np.stack([tp, pos - tp, tn, neg - tn], axis=1))
    return GoldItems(
        task=np.arange(len(labeler), dtype=np.int64),
        labeler=labeler,
        label=label.astype(np.float64),
        truth=truth.astype(np.float64),
    )


@dataclass
class _Trial:
    """One trial's EM: its gold items, the labels bought so far and the last fit's posteriors."""

    gold: GoldItems
    model: ModelName
    labelers: int
    task: list[IntArray] = field(default_factory=list)
    labeler: list[IntArray] = field(default_factory=list)
    label: list[FloatArray] = field(default_factory=list)
    q: FloatArray | None = None
    fits: int = 0
    fallbacks: int = 0
    """Guards of core.em that fired (label switching, disagreement with gold), over all fits."""

    def fit(self, examples: int) -> dict[str, FloatArray]:
        """EM over the gold items and the labels bought on the first ``examples`` examples."""
        g = len(self.gold.truth)
        task = np.concatenate([self.gold.task, *(g + t for t in self.task)])
        labeler = np.concatenate([self.gold.labeler, *self.labeler])
        label = np.concatenate([self.gold.label, *self.label])
        n_tasks = g + examples
        init = None
        if self.q is not None:  # warm start; a task new since the last fit starts at its MV share
            n = np.bincount(task, minlength=n_tasks)
            init = np.bincount(task, weights=label, minlength=n_tasks) / np.maximum(n, 1)
            init[: len(self.q)] = self.q
        res = dawid_skene(
            task,
            labeler,
            label,
            self.gold.truth,
            EMSettings(model=self.model),
            n_tasks=n_tasks,
            n_labelers=self.labelers,
            init=init,
        )
        self.q = res.p1
        self.fits += 1
        self.fallbacks += len(res.fallbacks)
        return res.params


@dataclass(frozen=True)
class Streamed:
    """One setting's stream over every trial: its outcome, and what it bought."""

    outcome: Outcome
    asked: IntArray
    """(trials, examples): labels bought for each example (0 beyond the budget)."""
    fits: IntArray
    """(trials,): EM fits, the first one (gold only) included."""
    fallbacks: IntArray
    """(trials,): EM guards that fired, over all fits."""


def _stack(model: ModelName, params: list[dict[str, FloatArray]]) -> LabelerArrays:
    if model is ModelName.TWO_COIN:
        return Coins(
            np.stack([p["sensitivity"] for p in params]),
            np.stack([p["specificity"] for p in params]),
        )
    return np.stack([p["accuracy"] for p in params])


def em_stream(
    method: Method | str,
    draws: Draws,
    *,
    cohort: str,
    budget: int,
    tau: float | None = None,
    k: int | None = None,
    kappa: int = 5,
    model: ModelName | str = ModelName.ONE_COIN,
    every: int = DEFAULT_EVERY,
    prior: float = 0.5,
) -> Streamed:
    """One setting of section 3.3 for every trial, parameters learned by EM (module docstring).

    GTX and SV stop at ``tau`` (at most ``kappa`` labels), MV and WMV take ``k`` labels.
    ``model`` is GTX's labeler model; SV and WMV weigh labels by one-coin accuracies.
    """
    method = Method(method)
    model = ModelName(model)
    if every < 1:
        raise ValueError(f"the EM cadence must be at least 1 label, got {every}")
    if draws.assess_size <= 0:
        raise ValueError("--accuracy em needs an assessment set (assess-size)")
    if method.uses_threshold:
        if tau is None:
            raise ValueError(f"{method.value} needs a tau")
        check_tau(tau)
        cap = kappa
    else:
        if k is None or k < 1:
            raise ValueError(f"{method.value} takes a fixed k >= 1")
        cap = k
    trials, pool, slots = draws.shape
    if slots < cap:
        raise ValueError(f"draws hold {slots} labels per example, the setting needs {cap}")
    em_model = model if method is Method.GTX else ModelName.ONE_COIN
    labelers = draws.accuracy.shape[1]
    runs = [_Trial(gold_items(draws, t), em_model, labelers) for t in range(trials)]
    refit = method is not Method.MV  # MV reads no parameter
    params = _stack(em_model, [r.fit(0) for r in runs])

    pos = np.zeros(trials, dtype=np.int64)
    spent = np.zeros(trials, dtype=np.int64)
    since = np.zeros(trials, dtype=np.int64)
    done = pos >= pool
    asked = np.zeros((trials, pool), dtype=np.int64)
    n_labeled = np.zeros(trials, dtype=np.int64)
    errors = np.zeros(trials, dtype=np.int64)
    abs_error = np.zeros(trials)
    slot = np.arange(cap)
    while not done.all():
        live = np.flatnonzero(~done)
        left = budget - spent[live]
        width = int(min(every, left.max()))  # every example takes at least one label
        idx = pos[live, None] + np.arange(width)
        valid = idx < pool
        idx = np.minimum(idx, pool - 1)
        rows = live[:, None]
        lab = draws.label[rows, idx, :cap].reshape(-1, cap)
        who = draws.labeler[rows, idx, :cap]
        par = params[rows[:, :, None], who].reshape(-1, cap)
        p1 = np.empty((cap, lab.shape[0]))
        hard = np.empty((cap, lab.shape[0]), dtype=np.int64)
        stop = np.full(lab.shape[0], cap, dtype=np.int64)
        for t in range(1, cap + 1):
            post = label_posterior(method, lab[:, :t], par[:, :t], prior=prior)
            p1[t - 1], hard[t - 1] = post.p1, post.label
            if method.uses_threshold and t < cap:
                first = (stop == cap) & confident(method, post.confidence, float(tau or 0.0))
                stop[first] = t
        stop = np.where(valid, stop.reshape(len(live), width), 0)
        cum = np.cumsum(stop, axis=1)
        ends = (cum >= left[:, None]) | (since[live, None] + cum >= every)
        ends &= valid
        end = np.where(ends.any(axis=1), ends.argmax(axis=1), valid.sum(axis=1) - 1)
        take = end + 1
        lr = np.arange(len(live))
        before = cum[lr, end] - stop[lr, end]
        used = stop.copy()
        used[lr, end] = np.minimum(stop[lr, end], left - before)  # the budget may end inside it
        taken = np.arange(width)[None, :] < take[:, None]
        used = np.where(taken, used, 0)
        at = np.maximum(used, 1).reshape(-1) - 1
        flat = np.arange(at.size)
        y = draws.truth[rows, idx].reshape(-1).astype(np.float64)
        ok = taken.reshape(-1)
        wrong = (hard[at, flat] != y) & ok
        gap = np.where(ok, np.abs(y - p1[at, flat]), 0.0)
        n_labeled[live] += take
        errors[live] += wrong.reshape(len(live), width).sum(axis=1)
        abs_error[live] += gap.reshape(len(live), width).sum(axis=1)
        bought = used.sum(axis=1)
        spent[live] += bought
        since[live] += bought
        said = draws.label[rows, idx, :cap]
        mask = slot[None, None, :] < used[:, :, None]
        for r, tr in enumerate(live):
            asked[tr, pos[tr] : pos[tr] + take[r]] = used[r, : take[r]]
            if refit:
                w, s = np.nonzero(mask[r])
                runs[tr].task.append(pos[tr] + w)
                runs[tr].labeler.append(who[r, w, s].astype(np.int64))
                runs[tr].label.append(said[r, w, s].astype(np.float64))
        pos[live] += take
        done = (spent >= budget) | (pos >= pool)
        again = np.flatnonzero(~done & (since >= every)) if refit else np.zeros(0, np.int64)
        if len(again):
            new = [runs[t].fit(int(pos[t])) for t in again]
            params = _update(params, again, _stack(em_model, new))
            since[again] = 0
    outcome = Outcome(
        cohort,
        method,
        float(tau) if method.uses_threshold and tau is not None else None,
        None if method.uses_threshold else cap,
        n_labeled=n_labeled,
        labels_used=spent,
        errors=errors,
        abs_error=abs_error,
    )
    fits = np.array([r.fits for r in runs], dtype=np.int64)
    return Streamed(outcome, asked, fits, np.array([r.fallbacks for r in runs], dtype=np.int64))


def _update(params: LabelerArrays, trials: IntArray, new: LabelerArrays) -> LabelerArrays:
    if isinstance(params, Coins) and isinstance(new, Coins):
        sens, spec = params.sensitivity.copy(), params.specificity.copy()
        sens[trials], spec[trials] = new.sensitivity, new.specificity
        return Coins(sens, spec)
    out = np.array(params, copy=True)
    out[trials] = new
    return out


def simulate_threshold_em(
    cohort: str,
    draws: Draws,
    *,
    taus: Sequence[float],
    kappa: int = 5,
    budget: int = 15000,
    methods: Sequence[Method] = TABLE_ORDER,
    model: ModelName | str = ModelName.ONE_COIN,
    every: int = DEFAULT_EVERY,
    prior: float = 0.5,
    on_setting: Callable[[], None] | None = None,
) -> list[Outcome]:
    """Section 3.3 for one cohort with EM-learned parameters: the settings of
    :func:`.threshold.simulate_threshold`, in its order; ``on_setting`` is called after each."""
    out: list[Outcome] = []
    for method in methods:
        settings = (
            [(float(tau), None) for tau in taus]
            if method.uses_threshold
            else [(None, k) for k in range(1, kappa + 1)]
        )
        for tau, k in settings:
            run = em_stream(
                method,
                draws,
                cohort=cohort,
                budget=budget,
                tau=tau,
                k=k,
                kappa=kappa,
                model=model,
                every=every,
                prior=prior,
            )
            out.append(run.outcome)
            if on_setting is not None:
                on_setting()
    return out
