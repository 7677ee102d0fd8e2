"""The decision rule of section 2.3: strategy 1 (decide, threshold_stop, taus_reached) and the
uncertainty of equation (5) that strategy 2 picks by."""

from __future__ import annotations

import numpy as np
import pytest

from gtx_stream.core.decision import (
    Decision,
    confident,
    decide,
    taus_reached,
    threshold_stop,
    uncertainty,
)
from gtx_stream.core.models import Method, gtx_posterior

A, C, K, E, B = (
    Decision.ASK,
    Decision.CONFIDENT,
    Decision.KAPPA,
    Decision.EXHAUSTED,
    Decision.BUDGET,
)


@pytest.mark.parametrize(
    "conf,n,eligible,budget,expected",
    [
        (0.995, 2, 5, 10, C),
        (0.99, 2, 5, 10, C),  # confidence >= tau, equality included
        (0.98, 2, 5, 10, A),
        (0.98, 5, 5, 10, K),
        (0.995, 5, 5, 10, C),  # confident beats kappa
        (0.98, 3, 0, 10, E),
        (0.98, 3, 2, 0, B),
        (0.98, 5, 0, 0, K),  # kappa is reported before exhausted and budget
        (1.0, 0, 5, 10, A),  # no label yet: always ask
    ],
)
def test_decide_gtx(conf: float, n: int, eligible: int, budget: int, expected: Decision) -> None:
    got = decide("gtx", conf, n, tau=0.99, kappa=5, eligible_left=eligible, budget_left=budget)
    assert Decision(int(got)) is expected


@pytest.mark.parametrize("method", ["mv", "wmv"])
def test_mv_and_wmv_take_exactly_kappa(method: str) -> None:
    got = decide(method, [1.0, 1.0, 1.0], [1, 2, 3], tau=0.9, kappa=3)
    assert [Decision(int(x)) for x in got] == [A, A, K]


def test_decide_is_vectorised() -> None:
    got = decide("sv", [0.99, 0.5, 0.5], [1, 1, 5], 0.95, 5, eligible_left=[3, 0, 3])
    assert [Decision(int(x)) for x in got] == [C, E, K]


@pytest.mark.parametrize("tau", [0.5, 1.0, 1.2])
def test_tau_outside_half_one_is_refused(tau: float) -> None:
    with pytest.raises(ValueError, match="tau"):
        decide("gtx", 0.9, 1, tau=tau, kappa=5)


def test_kappa_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="kappa"):
        decide("gtx", 0.9, 1, tau=0.9, kappa=0)


def test_threshold_stop_walks_each_sequence() -> None:
    acc = [[0.9] * 5] * 4
    labels = [
        [1, 1, 1, 1, 1],  # 0.9, 0.988, 0.9986: confident at 3
        [1, 0, 1, 0, 1],  # never above 0.9: kappa at 5
        [1, 0, 0, 0, 0],  # only two labelers available: exhausted at 2
        [0, 0, 0, 1, 1],
    ]
    mask = [[True] * 5, [True] * 5, [True, True, False, False, False], [True] * 5]
    stop = threshold_stop("gtx", labels, acc, tau=0.99, kappa=5, mask=mask)
    assert list(stop.n_labels) == [3, 5, 2, 3]
    assert [Decision(int(d)) for d in stop.decision] == [C, K, E, C]
    assert list(stop.posterior.label) == [1, 1, 1, 0]
    assert stop.posterior.confidence[2] == 0.5


def test_threshold_stop_equals_decide_step_by_step() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, (200, 6))
    acc = rng.uniform(0.6, 0.99, (200, 6))
    stop = threshold_stop("gtx", labels, acc, tau=0.97, kappa=6)
    for i in range(200):
        for t in range(1, 7):
            post = gtx_posterior(labels[i : i + 1, :t], acc[i : i + 1, :t])
            d = Decision(int(decide("gtx", post.confidence, t, 0.97, 6, eligible_left=6 - t)[0]))
            if d is not A:
                assert stop.n_labels[i] == t and Decision(int(stop.decision[i])) is d
                assert stop.posterior.p1[i] == post.p1[0]
                break


def test_uncertainty_is_equation_5() -> None:
    post = gtx_posterior([[1], [0]], [[0.9], [0.7]])
    np.testing.assert_allclose(uncertainty(post), [0.1, 0.3])


def test_confident_includes_equality_and_never_holds_for_mv_and_wmv() -> None:
    assert list(confident("gtx", [0.98, 0.99, 0.995], 0.99)) == [False, True, True]
    assert list(confident("sv", [0.99], 0.99)) == [True]
    for method in ("mv", "wmv"):
        assert not confident(method, [1.0], 0.9).any()


def test_a_tie_with_tau_reaches_it_whichever_way_the_float_rounds() -> None:
    """A posterior of exactly 0.9 (one label of a labeler at 9/10) comes out of the logs and
    exponentials a unit in the last place above or below 0.9, by numpy build and CPU."""
    below, above = np.nextafter(0.9, 0.0), np.nextafter(0.9, 1.0)
    assert list(confident("gtx", [below, 0.9, above], 0.9)) == [True, True, True]
    assert list(taus_reached("gtx", [below, 0.9, above], np.array([0.8, 0.9, 0.95]))) == [2, 2, 2]
    # a real shortfall, however small a difference it means, still asks again
    assert list(confident("gtx", [0.9 - 1e-9, 0.9 - 1e-11], 0.9)) == [False, False]
    post = gtx_posterior(np.array([[1]]), np.array([[0.9]]))
    assert confident("gtx", post.confidence, 0.9).all()


@pytest.mark.parametrize("method", list(Method))
def test_taus_reached_counts_the_taus_decide_finalises_at(method: Method) -> None:
    taus = np.array([0.6, 0.8, 0.9, 0.95, 0.99])
    # confidences on, between and beyond the taus
    conf = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.949999, 0.95, 0.99, 0.999, 1.0,
                     np.nextafter(0.9, 0.0), 0.9 - 1e-11])  # fmt: skip
    reached = taus_reached(method, conf, taus)
    for q, tau in enumerate(taus):
        d = decide(method, conf, 1, float(tau), kappa=5)
        np.testing.assert_array_equal(d == Decision.CONFIDENT.value, q < reached, err_msg=f"{tau}")


def test_taus_reached_refuses_more_taus_than_it_can_count() -> None:
    with pytest.raises(ValueError, match="at most 127 taus"):
        taus_reached("gtx", [0.9], np.linspace(0.51, 0.99, 128))
