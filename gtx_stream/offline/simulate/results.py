"""Results of the threshold experiment per setting, and Table 1's choice of the best one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gtx_stream.core.models import FloatArray, IntArray, Method

TABLE_ORDER = (Method.MV, Method.WMV, Method.SV, Method.GTX)
"""Methods in the order of the paper's tables."""


def _mean_se(values: NDArray[np.float64]) -> tuple[float, float]:
    n = len(values)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return mean, se


@dataclass(frozen=True)
class Outcome:
    """One method at one setting (a tau or a fixed k), per trial."""

    cohort: str
    method: Method
    tau: float | None
    k: int | None
    n_labeled: IntArray
    """Examples that got at least one label."""
    labels_used: IntArray
    errors: IntArray
    """Labeled examples whose hard label is wrong."""
    abs_error: FloatArray
    """Sum over labeled examples of |y_i - P(y_i = 1 | L(i))|."""

    @property
    def avg_k(self) -> FloatArray:
        out: FloatArray = self.labels_used / self.n_labeled
        return out

    @property
    def error(self) -> FloatArray:
        out: FloatArray = self.errors / self.n_labeled
        return out

    @property
    def mae(self) -> FloatArray:
        out: FloatArray = self.abs_error / self.n_labeled
        return out

    def row(self, **extra: object) -> dict[str, object]:
        """Means over trials with their standard errors.

        ``avg_k`` is all labels over all labeled examples, B / mean(N) as in the paper's
        Table 1 (the mean of the per-trial ratios is a little larger); its standard error is
        the delta-method one of a ratio of means. ``n_labeled_se`` is what the paper prints
        after N.
        """
        err, err_se = _mean_se(self.error)
        mae, mae_se = _mean_se(self.mae)
        n = self.n_labeled.astype(np.float64)
        used = self.labels_used.astype(np.float64)
        trials = len(n)
        avg_k = float(used.sum() / n.sum())
        if trials > 1:
            cov = np.cov(used, n)  # delta method for mean(used) / mean(n)
            var = (cov[0, 0] - 2 * avg_k * cov[0, 1] + avg_k**2 * cov[1, 1]) / n.mean() ** 2
            avg_k_se = float(np.sqrt(max(var, 0.0) / trials))
            n_sd = float(n.std(ddof=1))
        else:
            avg_k_se = n_sd = float("nan")
        return {
            "cohort": self.cohort,
            "method": self.method.value,
            "tau": self.tau,
            "k": self.k,
            "avg_k": avg_k,
            "avg_k_se": avg_k_se,
            "n_labeled": float(n.mean()),
            "n_labeled_se": n_sd / np.sqrt(trials),
            "n_labeled_sd": n_sd,
            "error": err,
            "error_se": err_se,
            "mae": mae,
            "mae_se": mae_se,
            "trials": trials,
            **extra,
        }


def best_outcomes(outcomes: Iterable[Outcome]) -> dict[tuple[str, Method], Outcome]:
    """Per cohort and method, the setting with the lowest mean error (Table 1's rule).

    Equal errors go to the setting with fewer labels per example.
    """
    best: dict[tuple[str, Method], Outcome] = {}
    for o in outcomes:
        key = (o.cohort, o.method)
        cur = best.get(key)
        mine = (float(o.error.mean()), float(o.avg_k.mean()))
        if cur is None or mine < (float(cur.error.mean()), float(cur.avg_k.mean())):
            best[key] = o
    return best
