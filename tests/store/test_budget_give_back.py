"""Giving back (store/budget_lease.py): what a cluster's shard holds beyond its open frames'
reserve goes back to the pool, in two halves, against a real local Redis Cluster (3 masters, no
replicas, one for the module). A give-back keeps the reserve of the shard's open frames (of a
source, for a source's share) and no later credit restores it; a crash between the halves loses
labels until the next give-back and never overspends; concurrent leases, spending and
give-backs never overspend; an ingester whose lease comes short takes back what other shards
hold beyond their frames' reserve first."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from redis.cluster import RedisCluster

from gtx_stream.store.budget_lease import (
    ShardBudget,
    budget_held,
    credit_call,
    give_back_call,
    pool_left,
    reclaim,
    return_call,
    set_limit,
)
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from tests import cluster_fixtures
from tests.cluster_fixtures import LocalCluster

RESERVE = 4


masters_only_cluster = cluster_fixtures.masters_only_cluster  # the fixtures
flushed_client = cluster_fixtures.flushed_client


@pytest.fixture
def cluster(masters_only_cluster: LocalCluster) -> LocalCluster:
    return masters_only_cluster


@pytest.fixture
def rc(flushed_client: RedisCluster) -> RedisCluster:
    return flushed_client


def _hash(r: Any, key: str) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(key).items()}


def _open(r: Any, shard: Keys, *fids: str) -> None:
    r.zadd(shard.open_frames, {fid: 1.0 for fid in fids})


def _conserved(r: Any, keys: Keys, budget: int) -> tuple[int, int, int]:
    """(sum of the shards' limits, the pool's spent, the pool's left); checks the order that
    keeps the budget from being overspent: spent <= limit on every shard, sum of limits <=
    the pool's spent <= the budget."""
    shards = [_hash(r, s.budget) for s in keys.every_shard()]
    assert all(s.get("spent", 0) <= s.get("limit", 0) for s in shards), shards
    limits = sum(s.get("limit", 0) for s in shards)
    pool_spent = _hash(r, keys.budget_pool).get("spent", 0)
    assert limits <= pool_spent <= budget, (limits, pool_spent)
    return limits, pool_spent, budget - pool_spent


@pytest.mark.redis
def test_a_give_back_keeps_the_open_frames_reserve_and_no_credit_restores_it(
    rc: RedisCluster,
) -> None:
    keys = Keys("gtx", shards=16, cluster=True)
    runner = ScriptRunner(rc)
    shard = keys.for_shard(3)
    set_limit(rc, keys, 100)
    budget = ShardBudget(rc, shard, runner, chunk=40, reserve=RESERVE)
    assert budget.lease(30) == 30
    rc.hincrby(shard.budget, "spent", 10)  # asked 10 labels
    _open(rc, shard, "cam-1", "cam-2", "dog-7")
    assert budget.give_back() == 0  # the pool has plenty: it keeps its lease
    assert ShardBudget(rc, keys.for_shard(9), runner, chunk=70).lease(70) == 70
    assert budget.give_back() == 30 - 10 - 3 * RESERVE  # the pool is empty: all but the reserve
    assert _hash(rc, shard.budget) == {"limit": 22, "spent": 10, "returned": 8}
    assert _conserved(rc, keys, 100) == (22 + 70, 92, 8)
    assert budget.give_back() == 0  # nothing more to give
    # a late credit of the old total, or an aggregator's start, does not restore it
    assert runner.run_one(credit_call(shard, 30)) == 22
    set_limit(rc, keys, 100)
    assert rc.hget(shard.budget, "limit") == "22"
    # a new lease is credited less what was given back
    assert budget.lease(5) == 5
    assert _hash(rc, shard.budget)["limit"] == 35 - 8
    assert _conserved(rc, keys, 100) == (27 + 70, 97, 3)
    # its frames end: nothing open, everything unspent goes back, whatever the pool holds
    rc.delete(shard.open_frames)
    assert budget.give_back() == 17
    assert _hash(rc, shard.budget) == {"limit": 10, "spent": 10, "returned": 25}
    assert _conserved(rc, keys, 100) == (80, 80, 20)


@pytest.mark.redis
def test_a_crash_between_the_two_halves_loses_labels_until_the_next_give_back(
    rc: RedisCluster,
) -> None:
    keys = Keys("gtx", shards=4, cluster=True)
    runner = ScriptRunner(rc)
    one, two = keys.for_shard(1), keys.for_shard(2)
    set_limit(rc, keys, 50)
    budget = ShardBudget(rc, one, runner, chunk=20, reserve=RESERVE)
    assert budget.lease(20) == 20
    rc.hincrby(one.budget, "spent", 5)
    assert ShardBudget(rc, two, runner, chunk=30).lease(30) == 30
    # the shard's half, and a crash before the pool's: the labels are lost for now, not spent
    assert runner.run_one(give_back_call(one, RESERVE, [""])) == [(15, 15)]
    assert runner.run_one(give_back_call(one, RESERVE, [""])) == [(0, 15)]  # sent twice
    assert _conserved(rc, keys, 50) == (5 + 30, 50, 0)
    assert ShardBudget(rc, two, runner, chunk=30).lease(1) == 0  # the pool cannot lend them
    assert runner.run_one(credit_call(one, 20)) == 5  # nor can a credit put them back
    # the shard's next give-back brings its returned total: the pool takes the 15 back
    assert budget.give_back() == 0
    assert _hash(rc, keys.budget_pool)["returned:1"] == 15
    assert _conserved(rc, keys, 50) == (35, 35, 15)
    # the pool's half is idempotent: the same total again, or an older one, changes nothing
    assert runner.run_one(return_call(keys, 1, {"": 15})) == 0
    assert runner.run_one(return_call(keys, 1, {"": 9})) == 0
    assert _conserved(rc, keys, 50) == (35, 35, 15)


@pytest.mark.redis
def test_a_source_share_is_given_back_beyond_the_reserve_of_that_sources_open_frames(
    rc: RedisCluster,
) -> None:
    keys = Keys("gtx", shards=4, cluster=True)
    runner = ScriptRunner(rc)
    shard = keys.for_shard(2)
    budget = ShardBudget(rc, shard, runner, chunk=20, share=30, reserve=RESERVE)
    assert budget.lease_source("cam", 20) == 20
    rc.hincrby(shard.budget, "spent:cam", 3)
    _open(rc, shard, "cam-1", "cam-b-2", "dog-3")  # one frame of cam (cam-b is another source)
    other = ShardBudget(rc, keys.for_shard(0), runner, chunk=20, share=30)
    assert other.lease_source("cam", 10) == 10  # cam's share is all leased out
    assert budget.give_back() == 20 - 3 - RESERVE
    assert _hash(rc, shard.budget) == {"limit:cam": 7, "spent:cam": 3, "returned:cam": 13}
    pool = _hash(rc, keys.budget_pool)
    assert (pool["spent:cam"], pool["returned:2:cam"]) == (30 - 13, 13)
    assert runner.run_one(credit_call(shard, 20, "limit:cam")) == 7
    assert budget.sources_left(["cam"]) == {"cam": 4 + 13}
    # shard 0 leases the rest and has no open frame; a cam frame refused on shard 3 (holding
    # none of cam) takes it back first, and opens
    from gtx_stream.pipeline.ingest.ingester import open_frame
    from gtx_stream.store.keys import shard_of

    assert other.lease_source("cam", 13) == 13
    index = next(i for i in range(1000) if shard_of(f"cam-{i}", 4) == 3)
    code = open_frame(rc, keys, source="cam", source_id="cam", frame_index=index, jpeg=b"x",
                      ttl=60, max_open_frames=80, reserve_per_frame=RESERVE, reserved=True,
                      source_share=30)  # fmt: skip
    assert code == "opened"
    assert _hash(rc, keys.for_shard(0).budget) == {"limit:cam": 0, "returned:cam": 23}
    limits = [_hash(rc, s.budget).get("limit:cam", 0) for s in keys.every_shard()]
    assert limits == [0, 0, 7, 5]  # shard 3 leased what it needed, or a share of the 23
    assert sum(limits) == _hash(rc, keys.budget_pool)["spent:cam"] == 30 - 18


_SPEND = """
local b = redis.call('HMGET', KEYS[1], 'limit', 'spent')
if b[1] and tonumber(b[2] or '0') >= tonumber(b[1]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'spent', 1)
return 1
"""  # ask.lua's rule for one label: refused once spent reaches the shard's limit


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_concurrent_leases_spending_and_give_backs_never_overspend(
    cluster: LocalCluster, rc: RedisCluster
) -> None:
    """Eight shards lease, spend, open and close frames and give back at once; an ingester's
    reclaim runs beside them, and a tenth of the give-backs stop after the shard's half (a
    crash): no shard spends over its limit, the limits never add up to more than the pool
    leased out, the labels spent never to more than the budget; once every shard has given
    back again, spent and the pool's left add up to the budget exactly."""
    keys = Keys("gtx", shards=8, cluster=True)
    set_limit(rc, keys, 600)
    spent = [0] * keys.shards
    errors: list[BaseException] = []

    def shard_loop(k: int) -> None:
        rng = random.Random(k)
        client = cluster.client(decode_responses=True)
        runner = ScriptRunner(client)
        shard = keys.for_shard(k)
        budget = ShardBudget(client, shard, runner, chunk=12, reserve=3)
        try:
            for i in range(400):
                action = rng.random()
                if action < 0.35:
                    budget.lease(rng.randint(1, 8))
                elif action < 0.7:
                    spent[k] += int(client.eval(_SPEND, 1, shard.budget))
                elif action < 0.8:
                    _open(client, shard, f"cam-{k}-{i}")
                elif action < 0.9:
                    client.zpopmin(shard.open_frames)
                elif rng.random() < 0.1:  # a crash after the shard's half
                    runner.run_one(give_back_call(shard, 3, [""]))
                else:
                    budget.give_back()
                    if rng.random() < 0.3:
                        reclaim(runner, shard, 3, "")
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)
        finally:
            client.close()

    threads = [threading.Thread(target=shard_loop, args=(k,)) for k in range(keys.shards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors
    limits, pool_spent, left = _conserved(rc, keys, 600)
    shards = [_hash(rc, s.budget) for s in keys.every_shard()]
    assert [s.get("spent", 0) for s in shards] == spent
    assert sum(spent) <= 600
    assert sum(s.get("returned", 0) for s in shards) > 0  # the give-backs did give back
    # every frame ends and every shard gives back once more: nothing lost, nothing made up
    runner = ScriptRunner(rc)
    for s in keys.every_shard():
        rc.delete(s.open_frames)
        ShardBudget(rc, s, runner, chunk=12, reserve=3).give_back()
    limits, pool_spent, left = _conserved(rc, keys, 600)
    assert limits == pool_spent == sum(spent)
    assert sum(spent) + left == 600


@pytest.mark.redis
def test_an_open_refused_for_budget_takes_back_what_other_shards_hold_beyond_their_frames(
    rc: RedisCluster,
) -> None:
    """The ingester's lease (``lease_for_open``) that the pool cannot give has every other shard
    give back what its open frames do not keep; while the budget left is all kept for open
    frames (``budget_held``) a frame is refused "full" (the ingester waits for what they
    leave), and "budget" (it stops) once nothing is held anywhere."""
    from gtx_stream.pipeline.ingest.ingester import open_frame
    from gtx_stream.store.keys import shard_of

    keys = Keys("gtx", shards=8, cluster=True)
    runner = ScriptRunner(rc)
    fids = {k: [f"cam-{i}" for i in range(2000) if shard_of(f"cam-{i}", 8) == k] for k in (1, 3, 5)}

    def opens(shard: int) -> str:
        index = int(fids[shard].pop(0).rsplit("-", 1)[1])
        return open_frame(rc, keys, source="cam", source_id="cam", frame_index=index,
                          jpeg=b"x", ttl=60, max_open_frames=800, reserve_per_frame=RESERVE,
                          reserved=True)  # fmt: skip

    set_limit(rc, keys, 40)
    assert ShardBudget(rc, keys.for_shard(1), runner, chunk=36).lease(36) == 36
    assert opens(1) == "opened"  # shard 1: one open frame, 36 labels
    assert opens(5) == "opened"  # shard 5 leases the pool's last 4
    assert pool_left(rc, keys) == 0
    # shard 5's next frame needs 4 more: shard 1 gives back all but its frame's reserve
    assert opens(5) == "opened"
    one = _hash(rc, keys.for_shard(1).budget)
    assert (one["limit"], one["returned"]) == (RESERVE, 32)
    assert _hash(rc, keys.budget_pool)["returned:1"] == 32
    limits, _, left = _conserved(rc, keys, 40)
    assert limits + left == 40
    # open until shard 5 is full: then a shard without open frames or lease waits as well,
    # and every shard keeps its frames' reserve and no more
    code = "opened"
    while code == "opened":
        code = opens(5)
    assert code == "full"
    assert opens(3) == "full"
    for s in keys.every_shard():
        held = _hash(rc, s.budget)
        assert held.get("limit", 0) - held.get("spent", 0) <= RESERVE * rc.zcard(s.open_frames)
    assert pool_left(rc, keys) == 0
    assert budget_held(rc, keys, "cam")  # all of it kept for open frames
    # the frames end (each spent 1 label): what they leave comes back, and a frame opens again
    n_frames = sum(rc.zcard(s.open_frames) for s in keys.every_shard())
    assert n_frames == 40 // RESERVE
    for s in keys.every_shard():
        rc.hincrby(s.budget, "spent", rc.zcard(s.open_frames))
        rc.delete(s.open_frames)
        ShardBudget(rc, s, runner, chunk=16, reserve=RESERVE).give_back()
    assert pool_left(rc, keys) == 40 - n_frames
    assert opens(3) == "opened"
    # everything leased and spent: nothing held anywhere, the budget is spent for good
    three = ShardBudget(rc, keys.for_shard(3), runner, chunk=40, reserve=RESERVE)
    assert three.lease(pool_left(rc, keys) or 0) > 0
    assert pool_left(rc, keys) == 0
    for s in keys.every_shard():
        rc.hset(s.budget, "spent", rc.hget(s.budget, "limit") or 0)
    assert not budget_held(rc, keys, "cam")
    assert opens(3) == "budget"
