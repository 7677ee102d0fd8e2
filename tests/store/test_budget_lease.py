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
    # every thread has its connection before any leases: a thread that started late on a
    # loaded machine would otherwise find the budget spent, and "every shard got some" fail
    ready = threading.Barrier(SHARDS, timeout=60)

    def lease_until_spent(shard: int) -> None:
        client = redis.Redis.from_url(redis_url)
        budget = ShardBudget(client, keys.for_shard(shard), ScriptRunner(client), chunk=7)
        client.ping()
        ready.wait()
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


def test_concurrent_source_leases_never_add_up_to_more_than_the_share(redis_url: str) -> None:
    """Sources' shares (aggregator.budget_per_source) are leased like the budget: per source,
    what the shards leased never adds up to more than the share, whatever their races."""
    keys = _cluster_keys()
    granted = {(k, src): 0 for k in range(SHARDS) for src in ("cam-a", "cam-b")}

    def lease_until_spent(shard: int, source: str) -> None:
        client = redis.Redis.from_url(redis_url)
        budget = ShardBudget(client, keys.for_shard(shard), ScriptRunner(client), chunk=5,
                             share=120)  # fmt: skip
        while (got := budget.lease_source(source, 1 + shard % 3)) > 0:
            granted[shard, source] += got
        client.close()

    threads = [threading.Thread(target=lease_until_spent, args=key) for key in granted]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    check = redis.Redis.from_url(redis_url, decode_responses=True)
    pool = check.hgetall(keys.budget_pool)
    for src in ("cam-a", "cam-b"):
        limits = [int(check.hget(s.budget, f"limit:{src}") or 0) for s in keys.every_shard()]
        assert sum(limits) == int(pool[f"spent:{src}"]) == 120  # all of the share, never more
        assert limits == [granted[k, src] for k in range(SHARDS)]
        assert limits == [int(pool.get(f"leased:{k}:{src}", 0)) for k in range(SHARDS)]
    assert "limit" not in pool and "spent" not in pool  # the budget itself is untouched
    check.close()


def test_a_shard_asks_and_opens_within_its_lease_of_a_source_share(r: redis.Redis) -> None:
    """On a cluster's shard ``ask.lua`` and ``open_frame.lua`` hold a source's spending under
    what the shard leased of its share; the ingester leases a chunk when it holds none."""
    from gtx_stream.pipeline.ingest.ingester import open_frame
    from gtx_stream.store import frame_scripts as fs
    from gtx_stream.store.keys import shard_of

    keys = _cluster_keys()
    runner = ScriptRunner(r)
    fids = [f"cam-{i}" for i in range(400) if shard_of(f"cam-{i}", SHARDS) == 2][:6]
    shard = keys.for_shard(2)
    common = {"source": "cam", "source_id": "cam", "jpeg": b"x", "ttl": 60,
              "max_open_frames": 800, "reserve_per_frame": 2, "reserved": True,
              "source_share": 40}  # fmt: skip
    # the first open: refused by the shard's empty lease, then leased (what it needs, or up to a
    # chunk but no more than a shard's share of what is left: 40 / 8 shards) and opened
    index = int(fids[0].rsplit("-", 1)[1])
    assert open_frame(r, keys, frame_index=index, **common) == "opened"  # type: ignore[arg-type]
    assert r.hget(shard.budget, "limit:cam") == "5"
    assert r.hget(keys.budget_pool, "spent:cam") == "5"
    for fid in fids[1:]:
        index = int(fid.rsplit("-", 1)[1])
        assert open_frame(r, keys, frame_index=index, **common) == "opened"  # type: ignore[arg-type]
    asks = [fs.Ask(fid, f"lab{j}", f"r{j}", 0, 1e10) for fid in fids for j in range(2)]
    answers = runner.run_one(fs.ask_many(shard, asks, max_inflight=5, source_share=40))
    assert answers == ["ok"] * 5 + ["source_budget"] * 7  # the shard's lease: 5 labels
    assert r.hget(shard.budget, "spent:cam") == "5"
    # the aggregator's cover leases what the asks need, and they go through
    budget = ShardBudget(r, shard, runner, chunk=8, share=40)
    budget.cover_sources({"cam": 7})
    assert r.hget(shard.budget, "limit:cam") == "12"
    retry = [fs.Ask(a.frame_id, a.labeler, a.request_id + "b", 0, 1e10) for a in asks[5:]]
    assert runner.run_one(fs.ask_many(shard, retry, 5, source_share=40)) == ["ok"] * 7
    assert budget.sources_left(["cam"]) == {"cam": 0 + (40 - 12)}  # none held, 28 in the pool
    assert r.hget(keys.budget_pool, "spent:cam") == "12"
