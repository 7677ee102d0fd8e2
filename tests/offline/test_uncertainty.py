"""Section 3.4, vectorised, against the per-label loop; the block summaries behind the pick."""

from __future__ import annotations

import numpy as np
import pytest

from gtx_stream import cli
from gtx_stream.core.decision import uncertainty
from gtx_stream.core.models import Method, two_coin_posterior
from gtx_stream.offline import simulate as sim
from gtx_stream.offline.simulate.uncertainty import _Blocks
from tests.offline import simulate_reference as ref


@pytest.mark.parametrize("estimator,fewest", [("true", False), ("mle", False), ("true", True)])
def test_uncertainty_equals_the_per_label_loop(estimator: str, fewest: bool) -> None:
    examples, budget, trials = 30, 90, 2
    cohorts = []
    for cohort in sim.COHORTS:
        d = sim.draw(
            cohort,
            trials=trials,
            examples=examples,
            slots=10,
            seed=2,
            assess_size=5,
            tie_steps=budget - examples,
            experiment=sim.Experiment.UNCERTAINTY,
        )
        cohorts.append((cohort, d, d.accuracies(estimator)))
    curves = sim.simulate_uncertainty(cohorts, budget=budget, fewest_first=fewest)
    assert len(curves) == 4 * len(cohorts)
    for c in curves:
        _, d, acc = next(x for x in cohorts if x[0].name == c.cohort)
        np.testing.assert_array_equal(c.labels, np.arange(examples, budget + 1))
        for t in range(trials):
            errors, abs_error = ref.uncertainty_trial(
                c.method, d, acc, t, budget=budget, fewest_first=fewest
            )
            np.testing.assert_array_equal(c.error[t] * examples, errors)
            np.testing.assert_allclose(c.mae[t] * examples, abs_error, rtol=0, atol=1e-9)


def test_uncertainty_spends_labels_on_the_uncertain_and_never_repeats_a_labeler() -> None:
    d = sim.draw(
        sim.ACCURATE,
        trials=1,
        examples=20,
        slots=3,
        labelers=3,
        seed=0,
        tie_steps=40,
        experiment=sim.Experiment.UNCERTAINTY,
    )
    # budget = examples x labelers: every example ends with all three labelers, none twice
    curves = sim.simulate_uncertainty([(sim.ACCURATE, d, d.accuracy)], budget=60)
    for c in curves:
        errors, _ = ref.uncertainty_trial(c.method, d, d.accuracy, 0, budget=60)
        assert c.error[0, -1] * 20 == errors[-1]
    with pytest.raises(ValueError, match="budget"):
        sim.simulate_uncertainty([(sim.ACCURATE, d, d.accuracy)], budget=61)


@pytest.mark.parametrize("fewest", [False, True])
def test_tie_break_picks_the_nth_tied_example_in_order(fewest: bool) -> None:
    rng = np.random.default_rng(0)
    keys = rng.choice([0.0, 0.25, 0.5, -1.0], size=(50, 7 * 6))
    keys[0] = -1.0
    keys[0, 40] = 0.0  # one candidate only
    rank = rng.integers(1, 4, size=keys.shape) if fewest else np.zeros(keys.shape, np.int64)
    u = rng.random(50)
    blocks = _Blocks(keys.reshape(50, 7, 6).copy(), rank.reshape(50, 7, 6).copy())
    for step in range(3):
        picked = blocks.pick(u)
        for s in range(50):
            top = keys[s] == keys[s].max()
            tied = np.flatnonzero(top & (rank[s] == rank[s][top].min()))
            assert picked[s] == tied[min(int(u[s] * len(tied)), len(tied) - 1)], (step, s)
        # change the picked entries and check the summaries follow
        new_key = rng.choice([0.0, 0.25, 0.5], size=50)
        new_rank = rank[np.arange(50), picked] + 1 if fewest else np.zeros(50, np.int64)
        keys[np.arange(50), picked], rank[np.arange(50), picked] = new_key, new_rank
        blocks.set(picked, new_key, new_rank)


# --- the two-coin model ------------------------------------------------------------------


def _two_coin_trial(d: sim.Draws, coins: sim.Coins, trial: int, budget: int) -> list[int]:
    """tests.offline.simulate_reference.uncertainty_trial for GTX with two-coin labelers:
    errors over all examples after each label, from label M to the budget."""
    _, n_ex, n_lab = d.shape
    tie = d.tie[trial, list(Method).index(Method.GTX)]
    counts, hard, unc = [0] * n_ex, [0] * n_ex, [0.0] * n_ex

    def label_once(i: int) -> None:
        counts[i] += 1
        who = d.labeler[trial, i]
        post = two_coin_posterior(
            np.array([d.label[trial, i]], dtype=np.float64),
            np.array([coins.sensitivity[trial, who]]),
            np.array([coins.specificity[trial, who]]),
            np.arange(n_lab)[None, :] < counts[i],
        )
        hard[i], unc[i] = int(post.label[0]), float(uncertainty(post)[0])

    for i in range(n_ex):
        label_once(i)
    truth = d.truth[trial]
    curve = [sum(int(hard[i] != truth[i]) for i in range(n_ex))]
    for step in range(budget - n_ex):
        keys = [unc[i] if counts[i] < n_lab else -1.0 for i in range(n_ex)]
        tied = [i for i in range(n_ex) if keys[i] == max(keys)]
        label_once(tied[min(int(tie[step] * len(tied)), len(tied) - 1)])
        curve.append(sum(int(hard[i] != truth[i]) for i in range(n_ex)))
    return curve


def _uncertainty_draws(cohort: sim.Cohort, examples: int, budget: int) -> sim.Draws:
    return sim.draw(cohort, trials=2, examples=examples, slots=10, seed=5, assess_size=6,
                    tie_steps=budget - examples, experiment=sim.Experiment.UNCERTAINTY)  # fmt: skip


@pytest.mark.parametrize("estimator", ["true", "beta"])
def test_two_coin_uncertainty_equals_the_per_label_loop(estimator: str) -> None:
    examples, budget = 25, 80
    draws = [_uncertainty_draws(c, examples, budget) for c in sim.TWO_COIN_COHORTS]
    triples = [(c, d, d.accuracies(estimator)) for c, d in zip(sim.TWO_COIN_COHORTS, draws,
                                                                strict=True)]  # fmt: skip
    coins = [d.coins(estimator) for d in draws]
    curves = sim.simulate_uncertainty(triples, budget=budget, coins=coins, methods=(Method.GTX,))
    for c, d, co in zip(curves, draws, coins, strict=True):
        for t in range(2):
            got = np.rint(c.error[t] * examples)
            np.testing.assert_array_equal(got, _two_coin_trial(d, co, t, budget))


def test_two_coin_uncertainty_with_equal_coins_is_one_coin_bit_for_bit() -> None:
    one = sim.run_uncertainty(trials=2, examples=40, budget=120)[sim.Accuracy.TRUE]
    two = sim.run_uncertainty(trials=2, examples=40, budget=120, model="two_coin")
    for a, b in zip(one, two[sim.Accuracy.TRUE], strict=True):
        np.testing.assert_array_equal(a.error, b.error)
        np.testing.assert_array_equal(a.mae, b.mae)
    with pytest.raises(ValueError, match="threshold"):
        sim.run_uncertainty(trials=1, examples=10, budget=20, estimators=("em",), assess_size=5)


def test_a_budget_out_of_range_names_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "uncertainty", "--budget", "100", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--budget 100 must be between --examples (5000" in err and "(50000)" in err
