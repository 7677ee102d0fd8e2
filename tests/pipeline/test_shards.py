"""Aggregators that scale out by shard (pipeline/aggregate/shards.py, store/shards.py).

In-process: two :class:`ShardedAggregator` on one Redis, requests captured from the enqueue
hook and answered by seeded simulated labelers on the labels stream of each frame's shard.
The kill -9 of a real aggregator process is in test_shards_kill.py.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter

import pytest
import redis

from gtx_stream.config import AggregatorSettings, ConfigError
from gtx_stream.core.draws import simulated_label
from gtx_stream.core.records import LabelEntry, LabelRequest
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.store.keys import Keys, shard_of
from gtx_stream.store.shards import ShardCountError, check_shard_count, owners, stored_shards
from tests.aggregator_harness import Capture, final_records, make_aggregator, open_frame, register

ACC = {"ann": 0.9, "bob": 0.8, "cid": 0.75, "dee": 0.7, "eve": 0.65}


# --- keys -----------------------------------------------------------------------------------


def test_shard_of_is_crc32_and_spreads_frames() -> None:
    assert shard_of("cam-17", 4) == zlib.crc32(b"cam-17") % 4 == shard_of("cam-17", 4)
    assert shard_of("cam-17", 1) == 0
    counts = Counter(shard_of(f"cam-{i}", 4) for i in range(4000))
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(900 <= n <= 1100 for n in counts.values()), counts


def test_one_shard_keeps_every_key_name() -> None:
    keys = Keys("gtx")
    assert (keys.labels, keys.opened, keys.leases, keys.waiting, keys.waiting_seeded) == (
        "gtx:labels", "gtx:opened", "gtx:leases", "gtx:waiting", "gtx:waiting:seeded",
    )  # fmt: skip
    assert keys.of_frame("cam-1") is keys and keys.every_shard() == [Keys("gtx", shard=0)]
    assert keys.for_shard(0).labels == "gtx:labels"


def test_several_shards_name_their_keys_under_one_hash_tag_each() -> None:
    keys = Keys("gtx", shards=4)
    s2 = keys.for_shard(2)
    assert (s2.labels, s2.opened, s2.leases, s2.waiting, s2.waiting_seeded) == (
        "gtx:{s2}:labels", "gtx:{s2}:opened", "gtx:{s2}:leases", "gtx:{s2}:waiting",
        "gtx:{s2}:waiting:seeded",
    )  # fmt: skip
    assert s2.final == keys.final == "gtx:final" and s2.open_frames == "gtx:open"
    assert keys.of_frame("cam-17").shard == shard_of("cam-17", 4)
    with pytest.raises(ValueError, match="per shard"):
        _ = keys.labels  # no shard named: refused rather than a stream no one reads
    with pytest.raises(ValueError, match="out of range"):
        keys.for_shard(4)


# --- the stored count ---------------------------------------------------------------------


@pytest.mark.redis
def test_a_mismatched_shard_count_is_refused_with_one_line(r: redis.Redis) -> None:
    assert check_shard_count(r, Keys("gtx", shards=4)) is True
    assert check_shard_count(r, Keys("gtx", shards=4)) is False
    with pytest.raises(ShardCountError) as err:
        check_shard_count(r, Keys("gtx", shards=2))
    assert "\n" not in str(err.value) and "aggregator.shards is 2" in str(err.value)
    assert isinstance(err.value, ConfigError)  # the CLI prints it and exits 2
    assert stored_shards(r, "gtx") == 4
    # an unsharded aggregator refuses it as well
    with pytest.raises(ShardCountError):
        make_aggregator(r, Keys("gtx"), Capture())


def test_uncertainty_sampling_is_refused_with_shards() -> None:
    s = AggregatorSettings(strategy="uncertainty", budget=10, shards=2)
    with pytest.raises(ConfigError, match="shards = 1"):
        ShardedAggregator(redis.Redis(), Keys("gtx"), s)


# --- two aggregators ----------------------------------------------------------------------


def _answer(r: redis.Redis, keys: Keys, capture: Capture, seed: int = 0) -> int:
    """Answer every captured request on its frame's shard, as a worker does."""
    n = 0
    while capture.pending:
        req: LabelRequest = capture.pending.pop(0)
        truth = int(r.hget(keys.frame(req.frame_id), "truth") or 0)
        label = simulated_label(seed, req.frame_id, req.labeler_id, truth, ACC[req.labeler_id])
        entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label)
        r.xadd(keys.of_frame(req.frame_id).labels, entry.to_fields())  # type: ignore[arg-type]
        n += 1
    return n


def _sharded(r: redis.Redis, name: str, capture: Capture, shards: int) -> ShardedAggregator:
    s = AggregatorSettings(shards=shards, sweep_seconds=0.05, block_ms=5,
                           shard_lease_seconds=1.0)  # fmt: skip
    agg = ShardedAggregator(r, Keys("gtx"), s, consumer=name, enqueue=capture)
    agg.setup()
    return agg


@pytest.mark.redis
def test_two_aggregators_split_four_shards_and_finalise_each_frame_once(r: redis.Redis) -> None:
    keys = Keys("gtx", shards=4)
    register(r, keys, ACC)
    cap = Capture()
    a = _sharded(r, "agg-a", cap, 4)
    a.step()
    assert sorted(a.owned) == [0, 1, 2, 3]  # alone: every shard
    assert not a.splits_arrivals()  # it sees every label arriving: no lingering
    b = _sharded(r, "agg-b", cap, 4)
    fids = [open_frame(r, keys, i, i % 2) for i in range(200)]
    assert {shard_of(f, 4) for f in fids} == {0, 1, 2, 3}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        a.step()
        b.step()
        _answer(r, keys, cap)
        if not r.zcard(keys.open_frames) and len(a.owned) == len(b.owned) == 2:
            break
    assert len(a.owned) == len(b.owned) == 2 and not set(a.owned) & set(b.owned)
    assert owners(r, keys) == ["agg-a" if k in a.owned else "agg-b" for k in range(4)]
    assert a.splits_arrivals() and b.splits_arrivals()  # each sees half: they linger
    records = final_records(r, keys)
    assert sorted(f["frame_id"] for f in records) == sorted(fids)  # each once
    for f in records:
        labelers = json.loads(f["labelers"])
        assert len(labelers) == len(set(labelers))
    spent = int(r.hget(keys.budget, "spent") or 0)
    assert spent == sum(int(f["n_labels"]) for f in records)
    # every per-shard set is empty again, and no unsharded key was used
    for shard in keys.every_shard():
        assert r.zcard(shard.leases) == 0 and r.zcard(shard.waiting) == 0
    assert not r.exists("gtx:labels", "gtx:opened", "gtx:leases", "gtx:waiting")
    a.release()
    b.release()
    assert owners(r, keys) == [None] * 4


@pytest.mark.redis
def test_a_silent_aggregators_shards_are_taken_with_their_pending_entries(
    r: redis.Redis,
) -> None:
    keys = Keys("gtx", shards=2)
    register(r, keys, ACC)
    cap = Capture()
    a = _sharded(r, "agg-a", cap, 2)
    b = _sharded(r, "agg-b", cap, 2)
    for _ in range(3):
        a.step()
        b.step()
        time.sleep(0.35)  # balance: b takes its half
    assert len(a.owned) == len(b.owned) == 1
    fids = [open_frame(r, keys, i, 1) for i in range(40)]
    lost = next(iter(b.owned))
    # b reads its shard's batch and dies before acknowledging it: its entries stay pending
    b.owned[lost].group.read(5)
    assert r.xpending(keys.for_shard(lost).opened, "aggregator")["pending"] > 0
    deadline = time.monotonic() + 20
    while r.zcard(keys.open_frames) and time.monotonic() < deadline:
        a.step()
        _answer(r, keys, cap)
    assert sorted(a.owned) == [0, 1]  # within the lease (1 s) and a balance
    assert sorted(f["frame_id"] for f in final_records(r, keys)) == sorted(fids)
    assert r.xpending(keys.for_shard(lost).opened, "aggregator")["pending"] == 0


# --- producers write to the frame's shard -------------------------------------------------


def test_producers_name_the_frames_shard() -> None:
    from gtx_stream.cli.status import format_status
    from gtx_stream.store import frame_scripts
    from gtx_stream.store.dead_letters import requeue_dead
    from gtx_stream.store.people import answer_request

    keys = Keys("gtx", shards=4)
    fid = "cam-17"
    own = keys.of_frame(fid)
    opened = frame_scripts.open_frame(
        keys, frame_id=fid, frame_index=17, source="cam", source_id="cam", opened_at=0.0,
        ttl=60, max_open_frames=8, reserve_per_frame=0, jpeg=b"j",
    )  # fmt: skip
    assert own.opened in opened.keys and own.waiting in opened.keys
    entry = LabelEntry(fid, "ann", "rid", 1)
    assert own.labels in answer_request(keys, "ann", "tok", "held", entry).keys
    assert own.labels in requeue_dead(keys, "1-0", entry).keys
    assert own.labels == f"gtx:{{s{shard_of(fid, 4)}}}:labels"
    st = {"redis": "r", "prefix": "gtx", "frames_open": 0, "oldest_open_age_s": None,
          "frames_finalised": 0, "dead_letters": 0, "labels_applied": 0, "budget_spent": 0,
          "budget_limit": None, "budget_left": None, "labelers": {}, "shards": 2,
          "shard_owners": ["agg-a", None]}  # fmt: skip
    assert "shards           2: s0 agg-a  s1 (none)" in format_status(st)


@pytest.mark.redis
def test_an_aggregator_restarted_under_its_name_serves_the_shards_it_still_owns(
    r: redis.Redis,
) -> None:
    keys = Keys("gtx", shards=2)
    register(r, keys, ACC)
    cap = Capture()
    first = _sharded(r, "agg-a", cap, 2)
    first.step()
    assert sorted(first.owned) == [0, 1]
    # killed and started again at once with the same --consumer: the owner keys still name it
    again = _sharded(r, "agg-a", cap, 2)
    fids = [open_frame(r, keys, i, 1) for i in range(10)]
    deadline = time.monotonic() + 10
    while r.zcard(keys.open_frames) and time.monotonic() < deadline:
        again.step()
        _answer(r, keys, cap)
    assert sorted(again.owned) == [0, 1]
    assert sorted(f["frame_id"] for f in final_records(r, keys)) == sorted(fids)
