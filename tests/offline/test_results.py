"""Per-setting results and Table 1's rule for the best setting."""

from __future__ import annotations

import numpy as np
import pytest

from gtx_stream.core.models import Method
from gtx_stream.offline.simulate.results import Outcome, best_outcomes


def _outcome(tau: float, errors: list[int], labels: int = 100, n: int = 40) -> Outcome:
    trials = len(errors)
    return Outcome(
        "accurate",
        Method.GTX,
        tau,
        None,
        n_labeled=np.full(trials, n),
        labels_used=np.full(trials, labels),
        errors=np.array(errors),
        abs_error=np.array(errors, dtype=float) / 2,
    )


def test_figures_per_trial_and_their_means() -> None:
    o = _outcome(0.9, [2, 4])
    np.testing.assert_allclose(o.error, [0.05, 0.1])
    np.testing.assert_allclose(o.avg_k, [2.5, 2.5])
    row = o.row(accuracy="true")
    assert row["error"] == pytest.approx(0.075) and row["avg_k"] == 2.5
    assert row["error_se"] == pytest.approx(0.025) and row["accuracy"] == "true"


def test_best_setting_is_the_lowest_error_then_the_fewest_labels() -> None:
    low, high, cheap = _outcome(0.9, [3, 3]), _outcome(0.95, [1, 1]), _outcome(0.97, [1, 1], 80)
    assert best_outcomes([low, high])[("accurate", Method.GTX)] is high
    assert best_outcomes([low, high, cheap])[("accurate", Method.GTX)] is cheap
