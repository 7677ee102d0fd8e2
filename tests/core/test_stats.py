"""Friedman's and Dunn's tests (gtx_stream.core.stats) against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gtx_stream.core.stats import dunn, friedman, holm


def test_friedman_by_hand() -> None:
    # ranks within blocks: [1,2,3], [2,1,3], [1,3,2]; rank sums R = 4, 6, 8
    # chi2 = 12 / (n k (k+1)) * sum R^2 - 3 n (k+1) = 12/36 * 116 - 36 = 8/3
    result = friedman([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [1.0, 3.0, 2.0]])
    assert result.statistic == pytest.approx(8 / 3)
    # chi-square with 2 degrees of freedom: sf(x) = exp(-x / 2)
    assert result.p_value == pytest.approx(math.exp(-4 / 3))
    assert (result.blocks, result.groups) == (3, 3)


def test_friedman_finds_a_consistent_difference() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((30, 1))
    values = base + np.array([0.0, 0.0, 0.3, 0.0]) + 0.05 * rng.random((30, 4))
    assert friedman(values).p_value < 1e-6
    with pytest.raises(ValueError, match="groups >= 3"):
        friedman([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="finite"):
        friedman([[1.0, 2.0, math.nan], [2.0, 1.0, 3.0]])


def test_dunn_by_hand_without_ties() -> None:
    # ranks are the values; mean ranks 1.5, 3.5, 5.5; N = 6: N(N+1)/12 = 3.5
    pairs = dunn({"A": [1, 2], "B": [3, 4], "C": [5, 6]})
    z_near = 2 / math.sqrt(3.5)  # |1.5 - 3.5| / sqrt(3.5 * (1/2 + 1/2))
    z_far = 4 / math.sqrt(3.5)
    p_near = math.erfc(z_near / math.sqrt(2))  # 2 (1 - Phi(z))
    p_far = math.erfc(z_far / math.sqrt(2))
    got = {(p.a, p.b): p for p in pairs}
    assert list(got) == [("A", "B"), ("A", "C"), ("B", "C")]
    assert got["A", "B"].z == pytest.approx(z_near) and got["B", "C"].z == pytest.approx(z_near)
    assert got["A", "C"].z == pytest.approx(z_far)
    assert got["A", "B"].p_value == pytest.approx(p_near)  # 0.2850
    assert got["A", "C"].p_value == pytest.approx(p_far)  # 0.0325
    # Holm: 3 * 0.0325 for the smallest, then 2 * 0.2850, then max(1 * 0.2850, 0.5700)
    assert got["A", "C"].p_holm == pytest.approx(3 * p_far)
    assert got["A", "B"].p_holm == pytest.approx(2 * p_near)
    assert got["B", "C"].p_holm == pytest.approx(2 * p_near)


def test_dunn_by_hand_with_ties() -> None:
    # pooled [1, 1, 2, 3]: ranks [1.5, 1.5, 3, 4]; ties 2, 1, 1: sum(t^3 - t) = 6
    # N(N+1)/12 - 6 / (12 (N-1)) = 20/12 - 6/36 = 1.5; z = |1.5 - 3.5| / sqrt(1.5 * 1)
    (pair,) = dunn({"A": [1, 1], "B": [2, 3]})
    assert pair.z == pytest.approx(2 / math.sqrt(1.5))
    assert pair.p_value == pytest.approx(math.erfc(2 / math.sqrt(1.5) / math.sqrt(2)))
    assert pair.p_holm == pytest.approx(pair.p_value)


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> kept monotone: 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
