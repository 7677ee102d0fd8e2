"""Labelers shared fairly between sources (``aggregator.labeler_slots``), against a real Redis."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis

from gtx_stream.store.keys import Keys, source_of, split_lease_member
from tests.aggregator_harness import (
    Capture,
    answer,
    final_records,
    make_aggregator,
    open_frame,
    register,
    run_until_idle,
)

ACCURACIES = {f"lab{i}": 0.9 for i in range(4)}


def test_source_of_frame_ids() -> None:
    assert source_of("cam-1-17") == "cam-1"
    assert source_of("s-0") == "s"
    assert source_of("odd") == "odd"
    assert source_of("cam-x") == "cam-x"


def _outstanding(r: redis.Redis, keys: Keys) -> tuple[Counter[str], Counter[str]]:
    members = [split_lease_member(m) for m in r.zrange(keys.leases, 0, -1)]
    return Counter(source_of(f) for f, _ in members), Counter(lab for _, lab in members)


pytestmark = pytest.mark.redis


def test_a_burst_gets_its_share_and_the_other_source_is_asked_at_once(
    r: redis.Redis, keys: Keys
) -> None:
    register(r, keys, ACCURACIES)
    capture = Capture()
    agg = make_aggregator(r, keys, capture, labeler_slots=1, tau=0.99, kappa=3)
    for i in range(40):  # a burst: 40 frames of one source
        open_frame(r, keys, i, truth=i % 2, source_id="burst")
    agg.step(block_ms=1)
    by_source, by_labeler = _outstanding(r, keys)
    assert by_source == {"burst": 4}, "alone, the burst gets every slot"
    assert max(by_labeler.values()) == 1, "no labeler holds more than its slot"

    open_frame(r, keys, 0, truth=1, source_id="steady")
    answer(r, keys, capture, ACCURACIES)  # 4 slots free again
    agg.step(block_ms=1)
    by_source, by_labeler = _outstanding(r, keys)
    assert by_source["steady"] == 1, "the steady source's frame is asked in the same step"
    assert by_source["burst"] <= 2, "two active sources: the burst holds at most half"
    assert max(by_labeler.values()) == 1

    run_until_idle(agg, r, keys, capture, ACCURACIES)
    finals = final_records(r, keys)
    ids = [f["frame_id"] for f in finals]
    assert len(ids) == len(set(ids)) == 41, "every frame finalised once"


def test_without_slots_every_frame_is_asked_at_once(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACCURACIES)
    capture = Capture()
    agg = make_aggregator(r, keys, capture, tau=0.99, kappa=3)
    for i in range(40):
        open_frame(r, keys, i, truth=i % 2, source_id="burst")
    agg.step(block_ms=1)
    assert _outstanding(r, keys)[0] == {"burst": 40}


def test_a_frame_left_out_is_asked_when_a_slot_frees(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, {"lab0": 0.9})
    capture = Capture()
    agg = make_aggregator(r, keys, capture, labeler_slots=1, tau=0.99, kappa=1,
                          sweep_seconds=3600)  # fmt: skip
    a = open_frame(r, keys, 0, truth=1, source_id="a")
    b = open_frame(r, keys, 0, truth=0, source_id="b")
    agg.step(block_ms=1)
    assert len(capture.pending) == 1, "one labeler, one slot"
    first = capture.pending[0].frame_id
    answer(r, keys, capture, {"lab0": 0.9})
    agg.step(block_ms=1)  # the label frees the slot; the other frame was left out: asked now
    assert [req.frame_id for req in capture.pending] == [b if first == a else a]
    answer(r, keys, capture, {"lab0": 0.9})
    agg.step(block_ms=1)
    assert sorted(f["frame_id"] for f in final_records(r, keys)) == sorted([a, b])


def test_a_source_active_a_moment_ago_keeps_its_share_free(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACCURACIES)
    capture = Capture()
    agg = make_aggregator(r, keys, capture, labeler_slots=1, tau=0.99, kappa=1)
    open_frame(r, keys, 0, truth=1, source_id="steady")
    agg.step(block_ms=1)
    answer(r, keys, capture, ACCURACIES)
    agg.step(block_ms=1)  # kappa 1: the steady frame is final, nothing of it outstanding
    assert len(final_records(r, keys)) == 1
    for i in range(40):
        open_frame(r, keys, i, truth=i % 2, source_id="burst")
    agg.step(block_ms=1)
    by_source, _ = _outstanding(r, keys)
    assert by_source == {"burst": 2}, "the steady camera's share stays free for its next frame"
    open_frame(r, keys, 1, truth=0, source_id="steady")
    agg.step(block_ms=1)
    assert _outstanding(r, keys)[0] == {"burst": 2, "steady": 1}, "asked at once"


# --- aggregator.budget_per_source: each source's share of the budget ----------------------


def test_a_source_never_spends_more_than_its_share_and_its_frames_end_as_budget(
    r: redis.Redis, keys: Keys
) -> None:
    register(r, keys, ACCURACIES)
    capture = Capture()
    agg = make_aggregator(r, keys, capture, budget_per_source=10, tau=0.999, kappa=4)
    for i in range(20):
        open_frame(r, keys, i, truth=i % 2, source_id="burst")
    for i in range(2):  # at most 2 x kappa = 8 labels: within its share
        open_frame(r, keys, i, truth=1, source_id="steady")
    run_until_idle(agg, r, keys, capture, ACCURACIES)
    spent = r.hgetall(keys.budget)
    assert int(spent["spent:burst"]) == 10, "the burst spends its share, not more"
    finals = final_records(r, keys)
    assert len(finals) == 22 and len({f["frame_id"] for f in finals}) == 22
    burst = [f for f in finals if source_of(f["frame_id"]) == "burst"]
    steady = [f for f in finals if source_of(f["frame_id"]) == "steady"]
    assert sum(int(f["n_labels"]) for f in burst) == 10
    assert any(f["reason"] == "budget" for f in burst)
    assert all(f["reason"] != "budget" for f in steady), "the other source is not charged"
    assert int(spent["spent:steady"]) == sum(int(f["n_labels"]) for f in steady)


def test_a_failed_request_gives_the_source_its_label_back(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, {"bad": 0.9, "good": 0.9})
    capture = Capture()
    agg = make_aggregator(r, keys, capture, budget_per_source=2, tau=0.99, kappa=2,
                          backoff_after_failures=100)  # fmt: skip
    open_frame(r, keys, 0, truth=1, source_id="cam")
    for _ in range(20):
        agg.step(block_ms=1)
        answer(r, keys, capture, {"bad": 0.9, "good": 0.9}, failing=frozenset({"bad"}))
        if final_records(r, keys):
            break
    (final,) = final_records(r, keys)
    assert json.loads(final["labelers"]) == ["good"]
    assert int(r.hget(keys.budget, "spent:cam")) == int(final["n_labels"]) == 1


def test_an_ingester_stops_a_source_whose_share_is_spent(r: redis.Redis, keys: Keys) -> None:
    from gtx_stream.pipeline.ingest.ingester import open_frame as ingest_open

    r.hset(keys.budget, "spent:cam", 5)
    kwargs = dict(source="cam://0", frame_index=0, jpeg=b"j", ttl=60, max_open_frames=10)
    assert ingest_open(r, keys, source_id="cam", source_share=5, **kwargs) == "budget"
    assert ingest_open(r, keys, source_id="cam", source_share=6, **kwargs) == "opened"
    assert ingest_open(r, keys, source_id="other", source_share=5, **kwargs) == "opened"


@pytest.mark.parametrize(("slots", "asked"), [(1, ["low", "mid", "top"]), (0, ["top"] * 3)])
def test_best_dispatch_with_slots_asks_the_next_best_once_the_best_is_full(
    r: redis.Redis, keys: Keys, slots: int, asked: list[str]
) -> None:
    register(r, keys, {"top": 0.95, "mid": 0.85, "low": 0.7})
    capture = Capture()
    agg = make_aggregator(r, keys, capture, dispatch="best", labeler_slots=slots, kappa=3)
    for i in range(3):
        open_frame(r, keys, i, truth=1, source_id="cam")
    agg.step(block_ms=1)
    assert sorted(req.labeler_id for req in capture.pending) == asked
