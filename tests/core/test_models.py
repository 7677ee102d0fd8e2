"""The models package: one protocol, ``aggregate`` by name and ``posterior_of`` from typed rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import ArrayLike

from gtx_stream.core import models
from gtx_stream.core.models import (
    MODELS,
    TIE_LABEL,
    UNKNOWN_LABELER,
    Method,
    OneCoin,
    Posterior,
    aggregate,
    posterior_of,
)


def test_every_method_has_its_model() -> None:
    assert set(MODELS) == set(Method)
    for method, model in MODELS.items():
        assert model.method is method
        assert models.model_of(method.value) is model


@pytest.mark.parametrize("method", list(Method))
def test_ties_have_confidence_half_and_the_documented_label(method: Method) -> None:
    post = aggregate(method, [[1, 0]], [[0.8, 0.8]])
    assert post.confidence[0] == 0.5 and post.p1[0] == 0.5
    assert post.label[0] == TIE_LABEL


@pytest.mark.parametrize("method", [Method.MV, Method.WMV])
def test_mv_and_wmv_are_certain_after_one_label(method: Method) -> None:
    assert aggregate(method, [[0]], [[0.6]]).confidence[0] == 1.0


def _rows() -> list[list[tuple[int, OneCoin]]]:
    rng = np.random.default_rng(7)
    return [
        [(int(rng.integers(0, 2)), OneCoin(float(rng.uniform(0.55, 0.99)))) for _ in range(n)]
        for n in (1, 4, 2, 0, 7, 3)
    ]


@pytest.mark.parametrize("method", list(Method))
def test_posterior_of_equals_aggregate_on_each_row_alone(method: Method) -> None:
    """The aggregator's padded batch gives each frame bit for bit the simulator's posterior."""
    rows = _rows()
    batch = posterior_of(method, rows, prior=0.4)
    for i, row in enumerate(rows):
        alone = aggregate(
            method,
            [[label for label, _ in row]],
            [[p.accuracy for _, p in row]],
            prior=0.4,
        )
        assert batch.p1[i] == alone.p1[0], (method, i)
        assert batch.label[i] == alone.label[0] and batch.confidence[i] == alone.confidence[0]


def test_an_unknown_labeler_carries_no_weight_in_gtx() -> None:
    with_unknown = posterior_of("gtx", [[(1, OneCoin(0.8)), (0, UNKNOWN_LABELER)]])
    without = posterior_of("gtx", [[(1, OneCoin(0.8))]])
    assert with_unknown.p1[0] == without.p1[0] == pytest.approx(0.8)


@dataclass(frozen=True)
class _TwoCoin:
    """A class-conditional labeler, as a two-coin model would define it."""

    sensitivity: float
    specificity: float

    def weight(self) -> float:
        return (self.sensitivity + self.specificity) / 2

    def value(self, name: str) -> float:
        return float(getattr(self, name))


class _RecordingModel:
    """A model that reads two parameters per labeler and records what it was given."""

    method = Method.GTX
    reads = ("sensitivity", "specificity")

    def __init__(self) -> None:
        self.seen: dict[str, np.ndarray] = {}

    def posterior(
        self,
        labels: ArrayLike,
        params: Mapping[str, ArrayLike],
        mask: ArrayLike | None = None,
        prior: float = 0.5,
    ) -> Posterior:
        self.seen = {name: np.asarray(v) for name, v in params.items()}
        n = np.asarray(labels).shape[0]
        return Posterior(np.full(n, prior), np.ones(n, np.int64), np.full(n, 0.5))


def test_posterior_of_lays_out_the_parameters_the_model_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model with other labeler parameters plugs in without a change to the caller."""
    model = _RecordingModel()
    monkeypatch.setitem(MODELS, Method.GTX, model)
    rows = [[(1, _TwoCoin(0.9, 0.7))], [(0, _TwoCoin(0.6, 0.8)), (1, _TwoCoin(0.95, 0.55))]]
    posterior_of("gtx", rows)
    assert sorted(model.seen) == ["sensitivity", "specificity"]
    np.testing.assert_array_equal(model.seen["sensitivity"], [[0.9, 0.5], [0.6, 0.95]])
    np.testing.assert_array_equal(model.seen["specificity"], [[0.7, 0.5], [0.8, 0.55]])
