r"""The tests section 4 of the paper runs on balanced error: Friedman, then Dunn's pairwise test.

- **Friedman's test** (repeated measures): n blocks (here: one seed at one budget, each
  method's value the mean over its training repeats) in which every one of k methods has a
  value. Values are ranked within each
  block; with :math:`R_j` the sum of method j's ranks,

  .. math::
      \chi^2_F = \frac{12}{n k (k+1)} \sum_j R_j^2 - 3 n (k+1),

  divided by the tie correction :math:`1 - \sum (t^3 - t) / (n (k^3 - k))`, and compared with
  :math:`\chi^2_{k-1}`. This is :func:`scipy.stats.friedmanchisquare`.
- **Dunn's test** (Dunn, 1964), the post-hoc test the paper names: every value of every group
  ranked together (average ranks for ties), :math:`\bar R_i` the mean rank of group i, and

  .. math::
      z_{ij} = \frac{|\bar R_i - \bar R_j|}{\sqrt{\left(\frac{N(N+1)}{12} -
      \frac{\sum (t^3 - t)}{12 (N - 1)}\right)\left(\frac{1}{n_i} + \frac{1}{n_j}\right)}},

  two-sided :math:`p = 2\,(1 - \Phi(z_{ij}))`, as ``scikit_posthocs.posthoc_dunn`` computes it
  (not a dependency: it is these few lines). Holm's step-down adjustment over the pairs is
  given too. Dunn's test ranks all values together, as after a Kruskal-Wallis test: it does not
  use the pairing of the blocks, which makes it conservative for paired data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


@dataclass(frozen=True)
class Friedman:
    statistic: float
    p_value: float
    blocks: int
    groups: int


def friedman(values: ArrayLike) -> Friedman:
    """Friedman's chi-square on an (n blocks, k groups) array, k >= 3."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] < 2:
        raise ValueError(f"need (blocks >= 2, groups >= 3) values, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("values must be finite")
    result = stats.friedmanchisquare(*arr.T)
    return Friedman(float(result.statistic), float(result.pvalue), arr.shape[0], arr.shape[1])


@dataclass(frozen=True)
class DunnPair:
    a: str
    b: str
    z: float
    p_value: float
    p_holm: float
    """Holm-adjusted over all pairs."""


def dunn(groups: Mapping[str, Sequence[float]]) -> list[DunnPair]:
    """Dunn's two-sided pairwise test of every pair of groups, in the mapping's order."""
    names = list(groups)
    if len(names) < 2:
        raise ValueError("need at least two groups")
    data = [np.asarray(groups[n], dtype=np.float64) for n in names]
    if any(d.size == 0 for d in data) or not all(np.isfinite(d).all() for d in data):
        raise ValueError("every group needs finite values")
    pooled = np.concatenate(data)
    n = pooled.size
    ranks = stats.rankdata(pooled)
    _, ties = np.unique(pooled, return_counts=True)
    spread = n * (n + 1) / 12.0 - ((ties**3 - ties).sum() / (12.0 * (n - 1)) if n > 1 else 0.0)
    bounds = np.cumsum([0] + [d.size for d in data])
    mean_rank = [ranks[bounds[i] : bounds[i + 1]].mean() for i in range(len(data))]
    pairs = []
    for i, j in combinations(range(len(names)), 2):
        scale = np.sqrt(spread * (1.0 / data[i].size + 1.0 / data[j].size))
        z = abs(mean_rank[i] - mean_rank[j]) / scale if scale > 0 else 0.0
        pairs.append((names[i], names[j], float(z), float(2.0 * stats.norm.sf(z))))
    adjusted = holm([p for *_, p in pairs])
    return [DunnPair(a, b, z, p, h) for (a, b, z, p), h in zip(pairs, adjusted, strict=True)]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m - i), kept monotone, at most 1."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = scaled
    return out.tolist()
