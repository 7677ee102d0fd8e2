"""Dispatchers: who is asked next about a frame (no server needed)."""

from __future__ import annotations

import pytest

from gtx_stream.core.draws import labeler_order
from gtx_stream.core.records import RequestState
from gtx_stream.pipeline.dispatch import (
    LabelerPool,
    LeastLoadedDispatcher,
    RandomDispatcher,
    Slot,
    make_dispatcher,
    plan,
)
from gtx_stream.store.frames import FrameState

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


def test_make_dispatcher_by_name() -> None:
    assert isinstance(make_dispatcher("random", 1), RandomDispatcher)
    assert isinstance(make_dispatcher("least_loaded", 1), LeastLoadedDispatcher)
    with pytest.raises(ValueError, match="unknown dispatch"):
        make_dispatcher("cheapest", 1)
