"""The budget pool of a Redis Cluster layout, leased to shards in chunks (store/budget_lease.py),
against a real Redis: concurrent leases never add up to more than the limit, a credit never
lowers a limit, and a lease whose credit was lost (a crash between the two calls) is credited
by the next one."""

from __future__ import annotations

import threading

import redis

from gtx_stream.store.budget_lease import ShardBudget, credit_call, lease_call, set_limit
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner

SHARDS = 8


def _cluster_keys() -> Keys:
    return Keys("gtx", shards=SHARDS, cluster=True)


def test_concurrent_leases_never_add_up_to_more_than_the_limit(redis_url: str) -> None:
    keys = _cluster_keys()
    setup = redis.Redis.from_url(redis_url)
    set_limit(setup, keys, 1000)
    granted = [0] * SHARDS

    def lease_until_spent(shard: int) -> None:
        client = redis.Redis.from_url(redis_url)
        budget = ShardBudget(client, keys.for_shard(shard), ScriptRunner(client), chunk=7)
        while (got := budget.lease(1 + shard)) > 0:  # the last leases shrink to what is left
            granted[shard] += got
        assert got == 0
        client.close()

    threads = [threading.Thread(target=lease_until_spent, args=(k,)) for k in range(SHARDS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    limits = [int(setup.hget(s.budget, "limit") or 0) for s in keys.every_shard()]
    pool = {k.decode(): int(v) for k, v in setup.hgetall(keys.budget_pool).items()}
    assert sum(granted) == sum(limits) == pool["spent"] == 1000  # all of it, never more
    assert limits == granted
    assert [pool[f"leased:{k}"] for k in range(SHARDS)] == limits
    assert min(limits) > 0  # every shard got some
    setup.close()


def test_a_lost_credit_is_made_good_and_a_credit_never_lowers_a_limit(r: redis.Redis) -> None:
    keys = _cluster_keys()
    runner = ScriptRunner(r)
    shard = keys.for_shard(3)
    set_limit(r, keys, 100)
    assert r.hget(shard.budget, "limit") == "0"  # limited from the start: nothing leased yet
    # a lease whose credit never came (the process died between the two calls)
    granted, leased = runner.run_one(lease_call(keys, 3, 30))
    assert (granted, leased) == (30, 30)
    assert r.hget(shard.budget, "limit") == "0"
    # the next lease's credit raises the limit to the shard's whole lease
    assert ShardBudget(r, shard, runner, chunk=10).lease(10) == 10
    assert r.hget(shard.budget, "limit") == "40"
    assert runner.run_one(credit_call(shard, 25)) == 40  # an older total changes nothing
    # an aggregator's start credits every shard (set_limit again)
    runner.run_one(lease_call(keys, 5, 20))
    set_limit(r, keys, 100)
    assert r.hget(keys.for_shard(5).budget, "limit") == "20"
    # a lease takes up to a chunk, but no more than a shard's share of what is left (40 / 8)
    big = ShardBudget(r, keys.for_shard(0), runner, chunk=500)
    assert big.lease(1) == 5
    # what is needed is granted however little is left, never more than is left
    assert big.lease(34) == 34
    assert big.lease(3) == 1
    assert big.lease(1) == 0
    assert int(r.hget(keys.budget_pool, "spent")) == 100


def test_without_a_limit_leases_are_unlimited(r: redis.Redis) -> None:
    keys = _cluster_keys()
    runner = ScriptRunner(r)
    set_limit(r, keys, 0)
    assert ShardBudget(r, keys.for_shard(1), runner, chunk=4).lease(4) == -1
    assert r.hget(keys.for_shard(1).budget, "limit") is None  # ask.lua: unlimited
    assert ShardBudget(r, keys.for_shard(1), runner, chunk=4).combined(None) is None
