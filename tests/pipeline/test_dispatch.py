"""Dispatchers: who is asked next about a frame (no server needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import redis

from gtx_stream.core.datasets import load_dataset
from gtx_stream.core.draws import best_first, labeler_order
from gtx_stream.core.models import LabelerParams, OneCoin, TwoCoin
from gtx_stream.core.records import RequestState
from gtx_stream.offline.replay import assess
from gtx_stream.offline.replay_queues import Order, queues, setup
from gtx_stream.offline.replay_stream import gold_params
from gtx_stream.pipeline.dispatch import (
    BestDispatcher,
    LabelerPool,
    LeastLoadedDispatcher,
    RandomDispatcher,
    Slot,
    make_dispatcher,
    plan,
)
from gtx_stream.store.frames import FrameState
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import (
    Capture,
    final_records,
    make_aggregator,
    open_frame,
    register,
    run_until_idle,
)

LABELERS = [f"lab{j}" for j in range(8)]


def _frame(fid: str, asked: dict[str, str] | None = None, **meta: str) -> FrameState:
    requests = {lab: RequestState.decode(v) for lab, v in (asked or {}).items()}
    return FrameState(fid, {"state": "open", **meta}, (), requests)


def test_random_walks_the_frames_seeded_order_past_the_asked_and_unavailable() -> None:
    frame = _frame("src-3", {"lab1": "done:1-0", "lab2": "failed:r", "lab5": "late:r"})
    pool = LabelerPool(available=set(LABELERS) - {"lab4"})
    ranked = RandomDispatcher(seed=7).rank(frame, LABELERS, pool)
    order = labeler_order(7, "src-3", LABELERS)
    assert ranked == [lab for lab in order if lab not in {"lab1", "lab2", "lab4", "lab5"}]


def test_random_order_is_the_tasks_order_for_a_replayed_task() -> None:
    frame = _frame("src-3", task="item-42")
    ranked = RandomDispatcher(seed=7).rank(frame, LABELERS, LabelerPool(set(LABELERS)))
    assert ranked == labeler_order(7, "item-42", LABELERS)


def test_least_loaded_goes_first_and_ties_keep_the_random_order() -> None:
    frame = _frame("src-3")
    load = {lab: (0 if j % 2 else 3) for j, lab in enumerate(LABELERS)}
    pool = LabelerPool(set(LABELERS), load)
    ranked = LeastLoadedDispatcher(seed=7).rank(frame, LABELERS, pool)
    order = labeler_order(7, "src-3", LABELERS)
    assert ranked == [lab for lab in order if load[lab] == 0] + [
        lab for lab in order if load[lab] == 3
    ]


def test_plan_gives_each_frame_at_most_its_room_and_counts_the_load() -> None:
    slots = [Slot(_frame(f"f{i}"), ["a", "b", "c"], room) for i, room in enumerate([2, 1, 0])]
    pool = LabelerPool({"a", "b", "c"}, {"a": 0, "b": 0, "c": 5})
    picks = plan(LeastLoadedDispatcher(seed=1), slots, pool)
    assert [fid for fid, _ in picks] == ["f0", "f0", "f1"]
    assert {lab for fid, lab in picks if fid == "f0"} == {"a", "b"}  # c is loaded
    # f0's picks count: a and b have 1 each now, still below c's 5, so f1 gets one of them
    assert pool.load == {"a": 1 + (picks[2][1] == "a"), "b": 1 + (picks[2][1] == "b"), "c": 5}
    assert picks[2][1] in {"a", "b"}


def test_nothing_to_pick_when_no_allowed_labeler_is_available() -> None:
    slots = [Slot(_frame("f0"), ["a", "b"], 1)]
    assert plan(RandomDispatcher(seed=0), slots, LabelerPool({"c"})) == []


def test_best_first_sorts_by_skill_and_keeps_positions_on_ties() -> None:
    assert best_first([0.6, 0.9, 0.6, 0.7]).tolist() == [[1, 3, 0, 2]]
    # masked-out positions go last, in order, whatever their value
    rows = best_first([[0.6, 0.9, 0.99], [0.5, 0.5, 0.8]], [[True, True, False], [True] * 3])
    assert rows.tolist() == [[1, 0, 2], [2, 0, 1]]


def test_best_ranks_by_the_current_estimate_ties_in_the_seeded_order() -> None:
    frame = _frame("src-3", {"lab1": "done:1-0"})
    skill = [0.7, 0.99, 0.9, 0.7, 0.9, 0.7, 0.6, 0.9]  # lab1 is best but was asked
    params = {lab: OneCoin(s) for lab, s in zip(LABELERS, skill, strict=True)}
    del params["lab7"]  # no parameters: ranks as 0.5, last
    pool = LabelerPool(available=set(LABELERS) - {"lab4"}, params=params)
    ranked = BestDispatcher(seed=7).rank(frame, LABELERS, pool)
    order = [lab for lab in labeler_order(7, "src-3", LABELERS) if lab not in {"lab1", "lab4"}]
    by = {lab: params[lab].weight() if lab in params else 0.5 for lab in order}
    assert ranked == sorted(order, key=lambda lab: -by[lab])  # stable: ties in seeded order
    assert ranked[0] == "lab2" and ranked[-1] == "lab7"  # lab4 (0.9) is not available
    assert ranked[1:4] == [lab for lab in order if by[lab] == 0.7]  # a tie, in seeded order
    # a refit moves the ranking: the pool carries the parameters decisions are made with now
    pool.params = {**params, "lab6": OneCoin(0.95)}
    assert BestDispatcher(seed=7).rank(frame, LABELERS, pool)[0] == "lab6"


def test_best_ranks_two_coin_labelers_by_balanced_accuracy() -> None:
    params: dict[str, LabelerParams] = {
        "a": TwoCoin(0.99, 0.55),
        "b": TwoCoin(0.8, 0.85),
        "c": OneCoin(0.8),
    }
    pool = LabelerPool(available={"a", "b", "c"}, params=params)
    assert BestDispatcher(seed=0).rank(_frame("f"), ["a", "b", "c"], pool) == ["b", "c", "a"]


def test_best_dispatch_asks_as_the_replay_best_order_does(tmp_path: Path) -> None:
    """The same rule once: the dispatcher on a replayed task, and the replay's queues."""
    rng = np.random.default_rng(3)
    workers = [f"w{j}" for j in range(9)]
    folder = tmp_path / "crowd"
    folder.mkdir()
    answers = [f"t{i},{w},{rng.integers(2)}" for i in range(30) for w in workers]
    (folder / "answers.csv").write_text("task,worker,label\n" + "\n".join(answers) + "\n")
    (folder / "truth.csv").write_text("task,truth\n" + "".join(f"t{i},1\n" for i in range(30)))
    ds = load_dataset(folder)
    a = assess(ds, seed=5, assess_fraction=0.3)  # few gold items: many tied estimates
    s = setup(ds, a.gold_tasks, a.scored_tasks, 5, 0)
    params = gold_params(ds, s, "one_coin", "beta", a.accuracies)  # type: ignore[arg-type]
    _, asked, _ = queues(s, slice(0, len(s.tasks)), params, Order.BEST)
    pool = LabelerPool(set(workers), params={w: OneCoin(a.accuracies[w]) for w in workers})
    for i, task in enumerate(s.tasks):
        ranked = BestDispatcher(seed=5).rank(_frame(f"cam-{i}", task=task), workers, pool)
        assert ranked == [s.workers[j] for j in asked[i]]


def test_make_dispatcher_by_name() -> None:
    assert isinstance(make_dispatcher("random", 1), RandomDispatcher)
    assert isinstance(make_dispatcher("least_loaded", 1), LeastLoadedDispatcher)
    assert isinstance(make_dispatcher("best", 1), BestDispatcher)
    with pytest.raises(ValueError, match="unknown dispatch"):
        make_dispatcher("cheapest", 1)


@pytest.mark.redis
def test_the_aggregator_with_dispatch_best_asks_the_best_registered_labeler_first(
    r: redis.Redis, keys: Keys
) -> None:
    accuracies = {"lab0": 0.7, "lab1": 0.9, "lab2": 0.6, "lab3": 0.9, "lab4": 0.8}
    register(r, keys, accuracies)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, dispatch="best", seed=7, tau=0.999, kappa=5)
    frames = [open_frame(r, keys, i, truth=i % 2) for i in range(12)]
    run_until_idle(agg, r, keys, cap, accuracies)
    asked: dict[str, list[str]] = {}
    for req in cap.all:
        asked.setdefault(req.frame_id, []).append(req.labeler_id)
    assert len(final_records(r, keys)) == len(frames)
    firsts = set()
    for fid in frames:
        seeded = labeler_order(7, fid, sorted(accuracies))
        expected = sorted(seeded, key=lambda lab: -accuracies[lab])  # ties in seeded order
        assert asked[fid] == expected[: len(asked[fid])]
        firsts.add(asked[fid][0])
    assert firsts == {"lab1", "lab3"}  # the two best, tied: each goes first on some frames
