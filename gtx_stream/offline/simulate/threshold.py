"""Section 3.3 of the paper, Table 1 and Figure 1: strategy 1 on a budget, vectorised.

A budget of B labels, examples arriving one after another, each asked of labelers drawn without
replacement until the decision rule of section 2.3 stops it: GTX and SV when the confidence
reaches tau or kappa labels are in (every tau of a sweep in one pass over the labels,
:mod:`.sweep`), MV and WMV after a fixed k labels.

Under the two-coin model GTX weighs each label with its labeler's sensitivity or specificity
(:class:`.Coins`); MV, WMV and SV stay the paper's one-coin methods. With ``em`` accuracies
the parameters are learned as labels are bought (:mod:`.em_stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from gtx_stream.core.accuracy import Estimator
from gtx_stream.core.decision import MAX_TAUS, check_tau
from gtx_stream.core.models import FloatArray, Method, ModelName
from gtx_stream.offline.simulate.cohorts import COHORTS, Cohort, Coins, Draws, draw
from gtx_stream.offline.simulate.collect import fixed_k_labels
from gtx_stream.offline.simulate.em_stream import DEFAULT_EVERY, Accuracy, simulate_threshold_em
from gtx_stream.offline.simulate.results import TABLE_ORDER, Outcome
from gtx_stream.offline.simulate.sweep import sweep, sweep_outcomes

_T = TypeVar("_T")

PAPER_TAUS: tuple[float, ...] = tuple(round(0.85 + 0.01 * i, 2) for i in range(15))
"""Section 3.3: tau swept over 0.85, 0.86, ..., 0.99."""


def _fixed_k(
    cohort: str,
    method: Method,
    draws: Draws,
    accuracies: FloatArray,
    k: int,
    budget: int,
    prior: float,
) -> Outcome:
    """MV and WMV in section 3.3: every example takes exactly k labels until the budget ends.

    When k does not divide the budget, the last example gets what is left (the decision
    rule's ``budget`` stop).
    """
    trials = draws.shape[0]
    label, p1, asked = fixed_k_labels(method, draws, accuracies, budget, k, prior)
    truth = draws.truth[:, : asked.size]
    wrong = (label != truth).sum(axis=1).astype(np.int64)
    absum = np.abs(truth - p1).sum(axis=1)
    return Outcome(
        cohort,
        method,
        None,
        k,
        n_labeled=np.full(trials, asked.size, dtype=np.int64),
        labels_used=np.full(trials, budget, dtype=np.int64),
        errors=wrong,
        abs_error=absum,
    )


def simulate_threshold(
    cohort: Cohort,
    draws: Draws,
    accuracies: FloatArray,
    *,
    taus: Sequence[float] = PAPER_TAUS,
    kappa: int = 5,
    budget: int = 15000,
    methods: Sequence[Method] = TABLE_ORDER,
    prior: float = 0.5,
    coins: Coins | None = None,
) -> list[Outcome]:
    """Section 3.3 for one cohort: every method at every setting, per trial.

    GTX and SV: one outcome per tau (strategy 1, kappa labels at most). MV and WMV give
    confidence 1.0 after one label, so, as in the paper, they take a fixed k = 1 .. kappa.
    ``draws`` needs ``budget`` examples (each example takes at least one label) and ``kappa``
    slots. With ``coins``, GTX's posterior is the two-coin model's with them.
    """
    trials, pool, slots = draws.shape
    if pool < budget:
        raise ValueError(f"draws hold {pool} examples per trial, the budget needs {budget}")
    if slots < kappa:
        raise ValueError(f"draws hold {slots} labels per example, kappa is {kappa}")
    if list(taus) != sorted(taus):
        raise ValueError("taus must be increasing")
    if len(taus) > MAX_TAUS:
        raise ValueError(f"at most {MAX_TAUS} taus in one sweep, got {len(taus)}")
    for tau in taus:
        check_tau(tau)
    out: list[Outcome] = []
    for method in methods:
        if method.uses_threshold:
            weights = coins if coins is not None and method is Method.GTX else accuracies
            sw = sweep(method, draws, weights, taus, kappa, budget, prior)
            out += sweep_outcomes(cohort.name, sw, budget)
        else:
            out += [
                _fixed_k(cohort.name, method, draws, accuracies, k, budget, prior)
                for k in range(1, kappa + 1)
            ]
    return out


def run_threshold(
    *,
    trials: int = 100,
    seed: int = 0,
    budget: int = 15000,
    kappa: int = 5,
    labelers: int = 10,
    taus: Sequence[float] = PAPER_TAUS,
    estimators: Sequence[Estimator | Accuracy | str] = (Estimator.TRUE,),
    assess_size: int = 0,
    cohorts: Sequence[Cohort] = COHORTS,
    jobs: int = 1,
    model: ModelName | str = ModelName.ONE_COIN,
    every: int = DEFAULT_EVERY,
    on_em_setting: Callable[[], None] | None = None,
) -> dict[Accuracy, list[Outcome]]:
    """Section 3.3 for each cohort and source of accuracies; cohorts run in ``jobs`` threads.

    All sources of a cohort see the same trials (labelers, examples, answers, gold items).
    ``model`` is GTX's labeler model; ``every``, EM's cadence for ``em``; ``on_em_setting``
    is called after each setting of ``em`` (a progress line; from the cohorts' threads).
    """
    if trials < 1:
        raise ValueError("need at least one trial")
    sources = [Accuracy(e) for e in estimators]
    model = ModelName(model)

    def results(cohort: Cohort, draws: Draws, source: Accuracy) -> list[Outcome]:
        if source is Accuracy.EM:
            return simulate_threshold_em(
                cohort.name,
                draws,
                taus=taus,
                kappa=kappa,
                budget=budget,
                model=model,
                every=every,
                on_setting=on_em_setting,
            )
        coins = draws.coins(source.estimator) if model is ModelName.TWO_COIN else None
        acc = draws.accuracies(source.estimator)
        return simulate_threshold(
            cohort, draws, acc, taus=taus, kappa=kappa, budget=budget, coins=coins
        )

    def one(cohort: Cohort) -> dict[Accuracy, list[Outcome]]:
        draws = draw(
            cohort,
            trials=trials,
            examples=budget,
            slots=kappa,
            labelers=labelers,
            seed=seed,
            assess_size=assess_size,
        )
        return {e: results(cohort, draws, e) for e in sources}

    per_cohort = _map(one, cohorts, jobs)
    return {e: [o for r in per_cohort for o in r[e]] for e in sources}


def _map(fn: Callable[[Cohort], _T], items: Sequence[Cohort], jobs: int) -> list[_T]:
    if jobs <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    # numpy releases the GIL in its loops, so threads use both cores of a small machine
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items))
