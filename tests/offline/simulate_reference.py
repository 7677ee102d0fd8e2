"""The experiments of :mod:`gtx_stream.offline.simulate` as a straightforward per-label Python loop.

One trial, one method, one setting at a time; every label is one call of
:func:`gtx_stream.core.models.aggregate` and :func:`gtx_stream.core.decision.decide` on a
single example, which is what the aggregator does per frame. It reads the same
:class:`~gtx_stream.offline.simulate.Draws` as the vectorised simulator, so the two must
give the same numbers: the tests hold them to that, and ``benchmarks/bench_simulate.py``
uses this loop as the baseline.
"""

from __future__ import annotations

import numpy as np

from gtx_stream.core.decision import Decision, decide, uncertainty
from gtx_stream.core.models import FloatArray, Method, aggregate
from gtx_stream.offline.simulate import Draws


def threshold_trial(
    method: Method | str,
    draws: Draws,
    accuracies: FloatArray,
    trial: int,
    *,
    tau: float | None,
    k: int | None,
    kappa: int,
    budget: int,
    prior: float = 0.5,
    record: list[tuple[int, float, int]] | None = None,
) -> tuple[int, int, int, float]:
    """Section 3.3, one trial: (examples labeled, labels used, errors, sum of |y - p1|).

    GTX and SV stop on ``tau`` (at most ``kappa`` labels); MV and WMV take ``k`` labels.
    ``record`` gets (label, p1, labels asked) of each labeled example. The loop ends when the
    budget is spent or the examples run out.
    """
    method = Method(method)
    cap = kappa if method.uses_threshold else int(k or 0)
    rule_tau = float(tau) if tau is not None else 0.9  # MV and WMV ignore it
    n_labelers = accuracies.shape[1]
    spent = n_labeled = errors = 0
    abs_error = 0.0
    example = 0
    while spent < budget and example < draws.shape[1]:
        labels: list[int] = []
        accs: list[float] = []
        while True:
            post = aggregate(method, np.array([labels]), np.array([accs]), prior=prior)
            decision = decide(
                method,
                post.confidence[0],
                len(labels),
                rule_tau,
                cap,
                eligible_left=n_labelers - len(labels),
                budget_left=budget - spent,
            )
            if decision != Decision.ASK.value:
                break
            slot = len(labels)
            labeler = int(draws.labeler[trial, example, slot])
            labels.append(int(draws.label[trial, example, slot]))
            accs.append(float(accuracies[trial, labeler]))
            spent += 1
        truth = int(draws.truth[trial, example])
        n_labeled += 1
        errors += int(post.label[0] != truth)
        abs_error += abs(truth - float(post.p1[0]))
        if record is not None:
            record.append((int(post.label[0]), float(post.p1[0]), len(labels)))
        example += 1
    return n_labeled, spent, errors, abs_error


def uncertainty_trial(
    method: Method | str,
    draws: Draws,
    accuracies: FloatArray,
    trial: int,
    *,
    budget: int,
    prior: float = 0.5,
    fewest_first: bool = False,
) -> tuple[list[int], list[float]]:
    """Section 3.4, one trial: errors and sum of |y - p1| over all examples after each label.

    The lists start after every example has its first label (M labels) and end at ``budget``.
    """
    method = Method(method)
    _, n_ex, n_lab = draws.shape
    tie = draws.tie[trial, list(Method).index(method)]
    truth = [int(v) for v in draws.truth[trial]]
    counts = [0] * n_ex
    p1 = [0.0] * n_ex
    hard = [0] * n_ex
    unc = [0.0] * n_ex

    def label_once(i: int) -> None:
        counts[i] += 1
        # one row as long as the vectorised simulator's, so that sums add in the same order
        row = np.array([draws.label[trial, i]], dtype=np.float64)
        acc = np.array([accuracies[trial, draws.labeler[trial, i]]])
        mask = np.arange(n_lab)[None, :] < counts[i]
        post = aggregate(method, row, acc, mask, prior)
        p1[i], hard[i], unc[i] = float(post.p1[0]), int(post.label[0]), float(uncertainty(post)[0])

    for i in range(n_ex):
        label_once(i)
    wrong = sum(int(hard[i] != truth[i]) for i in range(n_ex))
    absum = float(np.abs(np.array(truth) - np.array(p1)).sum())
    err_curve, mae_curve = [wrong], [absum]
    for step in range(budget - n_ex):
        keys = [unc[i] if counts[i] < n_lab else -1.0 for i in range(n_ex)]
        top = max(keys)
        tied = [i for i in range(n_ex) if keys[i] == top]
        if fewest_first:
            fewest = min(counts[i] for i in tied)
            tied = [i for i in tied if counts[i] == fewest]
        i = tied[min(int(tie[step] * len(tied)), len(tied) - 1)]
        old_p1, old_hard = p1[i], hard[i]
        label_once(i)
        wrong += int(hard[i] != truth[i]) - int(old_hard != truth[i])
        absum += abs(truth[i] - p1[i]) - abs(truth[i] - old_p1)
        err_curve.append(wrong)
        mae_curve.append(absum)
    return err_curve, mae_curve
