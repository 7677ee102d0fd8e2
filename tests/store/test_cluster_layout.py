"""The Redis Cluster key layout: every script call a shard's aggregator, ingester or worker makes
touches one slot, and the layout of one Redis is unchanged. Pure: no Redis."""

from __future__ import annotations

import pytest
from redis.cluster import key_slot

from gtx_stream.core.records import FinalRecord, LabelEntry
from gtx_stream.store import frame_scripts as fs
from gtx_stream.store import waiting_scripts as ws
from gtx_stream.store.budget_lease import (
    credit_call,
    give_back_call,
    lease_call,
    return_call,
    source_lease_call,
)
from gtx_stream.store.cluster import startup_nodes
from gtx_stream.store.dead_letters import requeue_dead
from gtx_stream.store.keys import Keys, shard_of
from gtx_stream.store.scripts import ScriptCall
from gtx_stream.store.stream_scripts import trim_stream

SHARDS = 4


def _frames_of(shard: int, n: int = 3) -> list[str]:
    """``n`` frame ids of ``shard``."""
    out, i = [], 0
    while len(out) < n:
        fid = f"cam-{i}"
        if shard_of(fid, SHARDS) == shard:
            out.append(fid)
        i += 1
    return out


def _slots(call: ScriptCall[object]) -> set[int]:
    return {key_slot(k.encode()) for k in call.keys}


def _calls(keys: Keys, shard: int) -> list[ScriptCall[object]]:
    k = keys.for_shard(shard)
    fids = _frames_of(shard)
    entry = LabelEntry(frame_id=fids[0], labeler="ann", label=1, request_id="r1")
    record = FinalRecord(frame_id=fids[0], label=1, p1=0.99, confidence=0.99,
                         reason="confident", method="gtx", labelers=["ann"], labels=[1],
                         accuracies=[0.9], finalised_at=1.0)  # fmt: skip
    asks = [fs.Ask(fid, "ann", "r1", 0, 10.0) for fid in fids]
    return [
        # the ingester and client.submit open with the pipeline's keys, not a shard's
        fs.open_frame(
            keys,
            frame_id=fids[0],
            frame_index=0,
            source="cam",
            source_id="cam",
            opened_at=1.0,
            ttl=60,
            max_open_frames=8,
            reserve_per_frame=5,
            jpeg=b"x",
        ),  # fmt: skip
        fs.apply_labels(k, [("1-0", entry)] * 2, fs.BackoffPolicy(), 1.0),
        fs.ask_many(k, asks, 1),
        fs.expire_request(k, frame_id=fids[1], labeler="ann", now=1.0),
        fs.finalise(k, [record]),
        fs.drop_frame(keys, fids[2], "expired"),
        ws.take_due(k, now=1.0, limit=10),
        ws.wake_waiting(k, now=1.0, after="", limit=10),
        requeue_dead(k, "1-0", entry),
        trim_stream(k.final, max_age_ms=0, open_frames=k.open_frames),
        trim_stream(k.labels, max_age_ms=0, open_frames=k.open_frames),
        credit_call(k, 10),
        give_back_call(k, 3, ["", "cam"]),
    ]


@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_script_call_of_a_shard_touches_one_slot_on_a_cluster(shard: int) -> None:
    keys = Keys("gtx", shards=SHARDS, cluster=True)
    tag = f"{{s{shard}}}"
    for call in _calls(keys, shard):
        assert len(_slots(call)) == 1, (call.script, call.keys)
        assert all(tag in key for key in call.keys), (call.script, call.keys)


def test_shards_of_a_cluster_spread_over_slots_and_the_pool_is_global() -> None:
    keys = Keys("gtx", shards=16, cluster=True)
    slots = {key_slot(s.budget.encode()) for s in keys.every_shard()}
    assert len(slots) == 16
    assert keys.budget_pool == "gtx:budget"
    assert lease_call(keys, 3, 8).keys == ("gtx:budget",)
    assert source_lease_call(keys, 3, "cam", 1, 8, 30).keys == ("gtx:budget",)  # a source's share
    assert return_call(keys, 3, {"": 5, "cam": 2}).keys == ("gtx:budget",)  # a give-back's half
    with pytest.raises(ValueError, match="per shard"):
        _ = keys.stats  # a cluster's state has no global copy: name the shard
    assert keys.for_shard(3).final == "gtx:{s3}:final"
    assert keys.frame("cam-7") == f"gtx:{{s{shard_of('cam-7', 16)}}}:f:cam-7:frame"
    assert keys.source_index("cam") == "gtx:source:cam"  # reserve_index.lua: one key of its own


def test_one_shard_on_a_cluster_puts_everything_in_one_slot() -> None:
    keys = Keys("gtx", shards=1, cluster=True)
    for call in _calls(keys, 0):
        assert _slots(call) == {key_slot(b"{s0}")}, call.script


def test_the_layout_of_one_redis_is_unchanged() -> None:
    keys = Keys("gtx")
    assert (keys.stats, keys.final, keys.budget, keys.open_frames, keys.labels) == (
        "gtx:stats", "gtx:final", "gtx:budget", "gtx:open", "gtx:labels")  # fmt: skip
    assert keys.frame("cam-1") == "gtx:{f:cam-1}:frame"
    assert keys.script_labelers == keys.labelers == "gtx:labelers"
    assert (keys.live, keys.paused, keys.gold, keys.gold_scores, keys.gold_answers("ann"),
            keys.gold_image("g1"), keys.gold_stats) == (
        "gtx:live", "gtx:paused", "gtx:gold", "gtx:gold:scores", "gtx:gold:answers:ann",
        "gtx:gold:jpeg:g1", "gtx:stats")  # fmt: skip
    assert keys.budget_pool == keys.budget
    assert keys.source_index("cam") == keys.source("cam") == "gtx:source:cam"
    sharded = Keys("gtx", shards=4).for_shard(2)
    assert (sharded.stats, sharded.final, sharded.labels) == (
        "gtx:stats", "gtx:final", "gtx:{s2}:labels")  # fmt: skip
    assert sharded.state_shards() == [sharded]


def test_a_cluster_url_may_name_several_nodes() -> None:
    first, nodes = startup_nodes("redis://u:pw@a:7000, b:7001,redis://c:7002/0")
    assert first == "redis://u:pw@a:7000/0"
    assert [(n.host, n.port) for n in nodes] == [("b", 7001), ("c", 7002)]
    assert startup_nodes("rediss://a:7000") == ("rediss://a:7000", [])
    with pytest.raises(ValueError, match="host:port"):
        startup_nodes("redis://a:7000,b")


def test_the_label_servers_scripts_touch_one_slot_on_a_cluster() -> None:
    """A person's answer goes through the hand of its frame's shard, with that shard's labels
    stream; a gold answer, with the registry and the gold book, through one slot of their own."""
    from gtx_stream.store.gold import gold_answer
    from gtx_stream.store.people import HandItem, PeopleKeys, answer_request

    keys = Keys("gtx", shards=SHARDS, cluster=True)
    for shard in range(SHARDS):
        fid = _frames_of(shard, 1)[0]
        item = HandItem("request", fid, "r1", taken_at=1.0)
        entry = LabelEntry(frame_id=fid, labeler="ann", label=1, request_id="r1")
        call = answer_request(keys, "ann", "tok", item.encode(), entry, now=0.0)
        assert _slots(call) == {key_slot(f"{{s{shard}}}".encode())}, call.keys
        assert call.keys[1] == keys.for_shard(shard).labels
        assert PeopleKeys(keys).hand("ann", shard) == f"gtx:{{s{shard}}}:person:ann:hand"
    gold = HandItem("gold", gold_id="g1", taken_at=1.0)
    call = answer_request(keys, "ann", "tok", gold.encode(), None, now=0.0)
    assert len(_slots(call)) == 1
    book = gold_answer(keys, "ann", "g1", 1, 0, ("{}", "", ""), ("{}", "", ""))
    assert _slots(book) == {key_slot(b"{registry}")}, book.keys
    assert keys.labelers == "gtx:{registry}:labelers" and keys.live == "gtx:{registry}:live"
