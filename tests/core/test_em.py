"""Semi-supervised Dawid-Skene EM: fixed points by hand, gold, the pooled prior, the guards."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gtx_stream.core import em_steps
from gtx_stream.core.draws import simulated_label
from gtx_stream.core.em import EMSettings, dawid_skene
from gtx_stream.core.models import ModelName, OneCoin, TwoCoin, majority_vote

ONE = EMSettings(prior_strength=2.0)
TWO = EMSettings(model=ModelName.TWO_COIN, prior_strength=2.0)
ESTIMATED_PI = EMSettings(prior_strength=2.0, class_prior=None)

# Four gold tasks with truths 1, 1, 1, 0. Labeler 0 says 1 to all (3 of 4 right: 3 of 3
# positives, 0 of 1 negative); labeler 1 says 1, 0, 0, 0 (2 of 4: 1 of 3 positives, 1 of 1).
ALL_GOLD = (
    [0, 1, 2, 3, 0, 1, 2, 3],
    [0, 0, 0, 0, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 0, 0, 0],
    {0: 1, 1: 1, 2: 1, 3: 0},
)


def test_all_gold_one_coin_fixed_point_by_hand() -> None:
    """Every task gold: one M-step gives the answer, the pooled prior's mean in closed form."""
    r = dawid_skene(*ALL_GOLD, ESTIMATED_PI)
    m = (3 / 6 + 2 / 6) / (4 / 6 + 4 / 6)  # sum c/(n+s) over sum n/(n+s), s = 2
    assert r.cohort_mean["accuracy"] == pytest.approx(5 / 8)
    np.testing.assert_allclose(r.params["accuracy"], [(3 + 2 * m) / 6, (2 + 2 * m) / 6])
    np.testing.assert_array_equal(r.p1, [1, 1, 1, 0])
    assert r.class_prior == pytest.approx((3 + 1) / (4 + 2))
    assert r.converged and r.iterations == 2 and r.fallbacks == ()
    assert r.labeler(0) == OneCoin(float(r.params["accuracy"][0]))


def test_all_gold_two_coin_fixed_point_by_hand() -> None:
    r = dawid_skene(*ALL_GOLD, TWO)
    m_s = (3 / 5 + 1 / 5) / (3 / 5 + 3 / 5)  # positives: 3 of 3 and 1 of 3
    m_t = (0 / 3 + 1 / 3) / (1 / 3 + 1 / 3)  # negatives: 0 of 1 and 1 of 1
    np.testing.assert_allclose(r.params["sensitivity"], [(3 + 2 * m_s) / 5, (1 + 2 * m_s) / 5])
    np.testing.assert_allclose(r.params["specificity"], [(0 + 2 * m_t) / 3, (1 + 2 * m_t) / 3])
    assert r.converged and r.fallbacks == ()
    assert r.labeler(1) == TwoCoin(r.params["sensitivity"][1], r.params["specificity"][1])
    assert np.all(r.lower["sensitivity"] < r.params["sensitivity"])
    assert np.all(r.params["sensitivity"] < r.upper["sensitivity"])


@pytest.mark.parametrize("settings", [ONE, TWO], ids=["one_coin", "two_coin"])
def test_two_labelers_who_always_disagree_teach_nothing(settings: EMSettings) -> None:
    """No gold, one labeler always says 1 and the other always 0: every posterior stays 1/2.

    One-coin: both accuracies stay at 1/2. Two-coin: a yes-sayer's sensitivity is high and its
    specificity as low, s + t = 1, which carries no weight either (a fixed point of EM).
    """
    n = 10
    task = np.repeat(np.arange(n), 2)
    r = dawid_skene(task, np.tile([0, 1], n), np.tile([1, 0], n), None, settings)
    if settings.model == "one_coin":
        np.testing.assert_array_equal(r.params["accuracy"], [0.5, 0.5])
    else:
        s, t = r.params["sensitivity"], r.params["specificity"]
        assert s[0] > 0.8 and t[1] > 0.8
        np.testing.assert_allclose(s + t, [1.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(r.p1, np.full(n, 0.5), rtol=1e-14)
    assert r.class_prior == 0.5 and r.converged and r.iterations == 2


def _crowd(
    tasks: int, accuracy: list[float], seed: int = 1, asymmetric: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every labeler labels every task with the project's seeded simulated labelers.

    With ``asymmetric`` > 0 a labeler's sensitivity is accuracy + asymmetric and its
    specificity accuracy - asymmetric.
    """
    truth = np.random.default_rng(seed).integers(0, 2, tasks)
    task = np.repeat(np.arange(tasks), len(accuracy))
    labeler = np.tile(np.arange(len(accuracy)), tasks)
    label = np.array(
        [
            simulated_label(
                seed,
                f"t{t}",
                f"l{j}",
                int(truth[t]),
                accuracy[j] + (asymmetric if truth[t] else -asymmetric),
            )
            for t, j in zip(task, labeler, strict=True)
        ]
    )
    return task, labeler, label, truth


def test_gold_tasks_are_clamped_to_their_truth_and_count_against_wrong_labelers() -> None:
    task, labeler, label, truth = _crowd(60, [0.8, 0.8, 0.8])
    # task 0 is gold with truth 0 while all three labelers said 1 there
    label = label.copy()
    label[task == 0] = 1
    without = dawid_skene(task, labeler, label, None, ONE)
    gold = dawid_skene(task, labeler, label, {0: 0}, ONE)
    assert without.p1[0] > 0.95 and gold.p1[0] == 0.0
    assert np.all(gold.params["accuracy"] < without.params["accuracy"])
    # a gold task without labels is clamped too, and counts for the class prior
    extra = dawid_skene(task, labeler, label, {0: 0, 60: 1}, ONE)
    assert extra.p1.shape == (61,) and extra.p1[60] == 1.0


def test_a_labeler_without_gold_gets_the_pooled_prior_not_one_half() -> None:
    task, labeler, label, truth = _crowd(300, [0.9] * 5)
    gold = {t: int(truth[t]) for t in range(30)}
    # labeler 5 gave one label (right, on a task without gold); labeler 6 gave none
    task = np.append(task, 100)
    labeler = np.append(labeler, 5)
    label = np.append(label, truth[100])
    r = dawid_skene(task, labeler, label, gold, EMSettings(prior_strength=4.0), n_labelers=7)
    m = r.cohort_mean["accuracy"]
    assert m == pytest.approx(0.9, abs=0.03)
    assert r.params["accuracy"][6] == pytest.approx(m)  # nothing but the prior
    c = r.p1[100] if truth[100] == 1 else 1.0 - r.p1[100]  # its label agrees that much
    assert r.params["accuracy"][5] == pytest.approx((c + 4.0 * m) / (1 + 4.0))
    assert r.params["accuracy"][5] > 0.85


@pytest.mark.parametrize("model", [ModelName.ONE_COIN, ModelName.TWO_COIN])
def test_a_cohort_that_always_agrees_gets_intervals_that_hold_its_estimates(
    model: ModelName,
) -> None:
    """Every label 1 and every gold truth 1: the estimates sit just below 1, and the Beta
    quantiles of the intervals would round to 1.0 above them without the guard."""
    task = np.repeat(np.arange(16), 2)
    labeler = np.tile([0, 1], 16)
    label = np.ones(32, dtype=np.int64)
    r = dawid_skene(task, labeler, label, {0: 1, 1: 1}, EMSettings(model=model))
    for name, est in r.params.items():
        assert np.all(r.lower[name] <= est) and np.all(est <= r.upper[name]), name


def _switched_start() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A good cohort (five labelers of 0.85) and a label-switched start for EM."""
    task, labeler, label, truth = _crowd(200, [0.85] * 5, seed=3)
    start = 1.0 - majority_vote(label.reshape(200, 5)).p1
    return task, labeler, label, truth, start


def test_without_gold_a_switched_start_stays_switched() -> None:
    """The failure the guard is for: EM's switched solution is a fixed point too."""
    task, labeler, label, truth, start = _switched_start()
    r = dawid_skene(task, labeler, label, None, ONE, init=start)
    assert np.all(r.params["accuracy"] < 0.5) and r.fallbacks == ()
    assert np.mean((r.p1 > 0.5) == truth) < 0.1


def test_the_switching_guard_anchors_the_orientation_on_gold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two gold tasks do not pull a switched solution back (fb.em < 0.5); the guard does."""
    task, labeler, label, truth, start = _switched_start()
    gold = {0: int(truth[0]), 1: int(truth[1])}
    with caplog.at_level(logging.INFO, logger="gtx_stream.core.em"):
        r = dawid_skene(task, labeler, label, gold, ONE, init=start)
    assert len(r.fallbacks) == 1
    fb = r.fallbacks[0]
    assert fb.labeler is None and fb.em < 0.5 < fb.gold and "label-switched" in fb.reason
    realised = np.bincount(labeler, weights=label == truth[task]) / 200
    np.testing.assert_allclose(r.params["accuracy"], realised, atol=0.03)
    assert np.mean((r.p1 > 0.5) == truth) > 0.95
    assert "label-switched" in caplog.text


def test_an_adversarial_cohort_is_oriented_by_gold_too() -> None:
    """Majority vote starts EM on the wrong side; gold says the cohort is worse than chance."""
    task, labeler, label, truth = _crowd(200, [0.2] * 5, seed=4)
    gold = {t: int(truth[t]) for t in range(20)}
    r = dawid_skene(task, labeler, label, gold, ONE)
    (fb,) = r.fallbacks
    assert fb.labeler is None and fb.gold < 0.5 < fb.em
    realised = np.bincount(labeler, weights=label == truth[task]) / 200
    np.testing.assert_allclose(r.params["accuracy"], realised, atol=0.05)
    assert np.mean((r.p1 > 0.5) == truth) > 0.9
    kept = dawid_skene(task, labeler, label, gold, ONE, init=r.p1)  # started on gold's side
    assert kept.fallbacks == ()


def test_em_outside_the_gold_interval_falls_back_to_gold(caplog: pytest.LogCaptureFixture) -> None:
    """Labeler 5 is right on all 40 gold tasks and wrong on every other one."""
    task, labeler, label, truth = _crowd(300, [0.9] * 6, seed=5)
    gold = {t: int(truth[t]) for t in range(40)}
    label = label.copy()
    sly = labeler == 5
    label[sly] = np.where(task[sly] < 40, truth[task[sly]], 1 - truth[task[sly]])
    with caplog.at_level(logging.INFO, logger="gtx_stream.core.em"):
        r = dawid_skene(task, labeler, label, gold, ONE)
    (fb,) = r.fallbacks
    assert fb.labeler == 5 and fb.parameter == "accuracy"
    assert fb.em < 0.3 and fb.gold == pytest.approx(41 / 42)
    assert not fb.lower <= fb.em <= fb.upper and fb.lower < fb.gold < fb.upper
    assert r.params["accuracy"][5] == pytest.approx(41 / 42)
    assert (r.lower["accuracy"][5], r.upper["accuracy"][5]) == (fb.lower, fb.upper)
    assert "labeler 5" in caplog.text and "outside" in caplog.text


@pytest.mark.parametrize("model", list(ModelName), ids=str)
def test_em_recovers_simulated_labelers(model: ModelName) -> None:
    acc = [0.6, 0.65, 0.7, 0.75, 0.8, 0.85]
    asym = 0.1 if model == "two_coin" else 0.0
    task, labeler, label, truth = _crowd(800, acc, seed=6, asymmetric=asym)
    gold = {t: int(truth[t]) for t in range(40)}
    r = dawid_skene(task, labeler, label, gold, EMSettings(model=model))
    assert r.converged and r.fallbacks == ()
    if model == "one_coin":
        np.testing.assert_allclose(r.params["accuracy"], acc, atol=0.04)
    else:
        np.testing.assert_allclose(r.params["sensitivity"], np.add(acc, asym), atol=0.05)
        np.testing.assert_allclose(r.params["specificity"], np.subtract(acc, asym), atol=0.05)
    em_right = np.mean((r.p1 > 0.5) == truth)
    mv_right = np.mean(majority_vote(label.reshape(800, len(acc))).label == truth)
    assert em_right > mv_right


def test_a_warm_start_reaches_the_same_fit_sooner() -> None:
    task, labeler, label, truth = _crowd(300, [0.7, 0.8, 0.9], seed=7)
    cold = dawid_skene(task, labeler, label, {0: int(truth[0])}, ONE)
    warm = dawid_skene(task, labeler, label, {0: int(truth[0])}, ONE, init=cold.p1)
    assert warm.iterations < cold.iterations
    np.testing.assert_allclose(warm.params["accuracy"], cold.params["accuracy"], atol=1e-5)


def test_a_configured_class_prior_is_used_as_is() -> None:
    assert dawid_skene(*ALL_GOLD, EMSettings(class_prior=0.3)).class_prior == 0.3
    assert dawid_skene(*ALL_GOLD).class_prior == 0.5  # the default: fixed, GTX's prior


def test_the_iteration_limit_is_reported() -> None:
    task, labeler, label, _ = _crowd(100, [0.7, 0.8, 0.9], seed=8)
    r = dawid_skene(task, labeler, label, None, EMSettings(max_iter=1))
    assert r.iterations == 1 and not r.converged


@pytest.mark.parametrize(
    "args,match",
    [
        (([0, 1], [0], [1, 0]), "length"),
        (([0], [0], [2]), "0 or 1"),
        (([-1], [0], [1]), "non-negative"),
    ],
    ids=["lengths", "label", "index"],
)
def test_bad_input_is_refused(args: tuple[list[int], list[int], list[int]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dawid_skene(*args)


def test_bad_settings_and_gold_are_refused() -> None:
    with pytest.raises(ValueError, match="prior_strength"):
        EMSettings(prior_strength=0.0)
    with pytest.raises(ValueError, match="class prior"):
        EMSettings(class_prior=1.0)
    with pytest.raises(ValueError):
        EMSettings(model="three_coin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gold"):
        dawid_skene([0], [0], [1], {0: 2})


@pytest.mark.parametrize("model", [ModelName.ONE_COIN, ModelName.TWO_COIN])
def test_gold_items_fit_as_the_shared_gold_tasks_they_count(model: ModelName) -> None:
    """The estimator's gold tasks (one per gold answer, from counts per labeler and class) give
    the fit that the shared gold tasks they were counted from give."""
    rng = np.random.default_rng(4)
    n_tasks, n_gold, n_lab = 300, 25, 5
    truth = rng.integers(0, 2, n_tasks + n_gold)
    acc = np.array([0.9, 0.8, 0.7, 0.85, 0.6])
    task = np.repeat(np.arange(n_tasks + n_gold), n_lab)
    who = np.tile(np.arange(n_lab), n_tasks + n_gold)
    right = rng.random(len(task)) < acc[who]
    label = np.where(right, truth[task], 1 - truth[task])
    gold_tasks = np.arange(n_tasks, n_tasks + n_gold)
    shared = dawid_skene(task, who, label, {int(t): int(truth[t]) for t in gold_tasks},
                         EMSettings(model=model), n_tasks=n_tasks + n_gold)  # fmt: skip

    on_gold = task >= n_tasks
    y, lab, j = truth[task][on_gold], label[on_gold], who[on_gold]
    counts = np.zeros((n_lab, 4), dtype=np.int64)
    for col, (want_y, want_label) in enumerate([(1, 1), (1, 0), (0, 0), (0, 1)]):
        np.add.at(counts[:, col], j[(y == want_y) & (lab == want_label)], 1)
    g_who, g_label, g_truth = em_steps.gold_items(counts)
    assert len(g_who) == int(on_gold.sum())
    keep = ~on_gold
    n_items = len(g_who)
    own = dawid_skene(
        np.concatenate([task[keep], n_tasks + np.arange(n_items)]),
        np.concatenate([who[keep], g_who]),
        np.concatenate([label[keep], g_label]),
        np.concatenate([np.full(n_tasks, -1), g_truth]),
        EMSettings(model=model), n_tasks=n_tasks + n_items,
    )  # fmt: skip
    for name in shared.params:
        np.testing.assert_allclose(own.params[name], shared.params[name], atol=1e-9)
    np.testing.assert_allclose(own.p1[:n_tasks], shared.p1[:n_tasks], atol=1e-9)


def test_gold_items_refuse_negative_counts() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        em_steps.gold_items([[1, 0, -1, 0]])
