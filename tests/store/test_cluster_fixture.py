"""The local Redis Cluster of :mod:`tests.cluster_fixtures`, and a client riding out the
SIGKILL of a master without losing a write it was told had succeeded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from tests import cluster_fixtures
from tests.cluster_fixtures import SLOTS, LocalCluster, on_master_of, retry_through_failover

local_cluster = cluster_fixtures.local_cluster

INCR_LUA = "-- KEYS[1] = counter\nreturn redis.call('INCR', KEYS[1])"
KEY = "gtx:{f:failover}:n"


@pytest.mark.redis
def test_the_cluster_has_three_masters_three_replicas_and_every_slot(
    local_cluster: LocalCluster,
) -> None:
    assert len(local_cluster.ports) == 6
    masters = [port for port, _ in local_cluster.masters()]
    assert len(masters) == 3
    assert all(len(local_cluster.replicas_of(port)) == 1 for port in masters)
    assert all(local_cluster.state_ok(port) for port in local_cluster.ports)
    with local_cluster.node(masters[0]) as r:
        covered = sum(int(end) - int(start) + 1 for start, end, *_ in r.cluster("slots"))
    assert covered == SLOTS

    client = local_cluster.client(decode_responses=True)
    try:
        keys = [f"gtx:{{f:{i}}}:x" for i in range(12)]
        for key in keys:
            client.set(key, key)
        assert len({local_cluster.master_of_key(k) for k in keys}) == 3
        assert client.mget_nonatomic(keys) == keys
    finally:
        client.close()


@dataclass
class Writes:
    """What the writer loop was told: values acknowledged, and where each call failed."""

    incr: list[int] = field(default_factory=list)  # durable: on a replica too, or on the end master
    script: list[int] = field(default_factory=list)
    set_: list[int] = field(default_factory=list)
    sha: str = ""
    errors: list[tuple[float, str]] = field(default_factory=list)
    slowest_s: float = 0.0
    ok_at: list[float] = field(default_factory=list)


def write_loop(
    client: RedisCluster, stop: threading.Event, writes: Writes, replicated: threading.Event
) -> None:
    """SET, INCR and EVALSHA on one key's slot, each followed by ``WAIT 1`` on its connection.

    Replication is asynchronous: a write the master acknowledged can die with it. A write
    counts as durable when WAIT says a replica has it, or (once the old master is dead)
    when the master that wrote it is the one that stays up to the end of the test.
    """
    i = 0
    while not stop.is_set():
        i += 1
        op = i % 3
        t = time.monotonic()

        def queue(pipe: Pipeline, op: int = op, i: int = i) -> None:
            if op == 0:
                pipe.set(KEY + ":last", i)
            elif op == 1:
                pipe.incr(KEY)
            else:
                pipe.evalsha(writes.sha, 1, KEY + ":script")
            pipe.execute_command("WAIT", 1, 200)

        def call() -> list[Any]:
            return on_master_of(client, KEY, queue, scripts=(INCR_LUA,))

        try:
            value, acked_by = retry_through_failover(client, call, deadline_s=15.0)
        except Exception as e:  # a failure is recorded; the test judges it
            writes.errors.append((t, f"{type(e).__name__}: {e}"))
            continue
        finally:
            writes.slowest_s = max(writes.slowest_s, time.monotonic() - t)
        writes.ok_at.append(time.monotonic())
        if acked_by < 1 and not replicated.is_set():
            continue  # acknowledged by the old master alone: it may die with it
        if op == 0:
            writes.set_.append(i)
        elif op == 1:
            writes.incr.append(int(value))
        else:
            writes.script.append(int(value))


@pytest.mark.redis
def test_writes_ride_out_the_kill_of_their_master(local_cluster: LocalCluster) -> None:
    client = local_cluster.client(decode_responses=True)
    writes = Writes()
    writes.sha = client.script_load(INCR_LUA)
    stop, after_failover = threading.Event(), threading.Event()
    writer = threading.Thread(target=write_loop, args=(client, stop, writes, after_failover))
    try:
        writer.start()
        time.sleep(1.0)
        old = local_cluster.master_of_key(KEY)
        local_cluster.kill_master(old)
        killed_at = time.monotonic()
        failover_s = local_cluster.wait_failover(old, timeout=20)
        after_failover.set()
        time.sleep(2.0)
    finally:
        stop.set()
        writer.join(timeout=30)
    try:
        assert not writer.is_alive(), "the writer hangs"
        new = local_cluster.master_of_key(KEY)
        assert new != old
        assert client.get_node_from_key(KEY).port == new

        assert writes.errors == []
        assert writes.slowest_s < failover_s + 2.0, (writes.slowest_s, failover_s)
        first_ok = min(t for t in writes.ok_at if t > killed_at) - killed_at
        assert first_ok < failover_s + 1.0, (first_ok, failover_s)
        assert len([t for t in writes.ok_at if t > killed_at + failover_s]) >= 6

        # nothing acknowledged was lost: each counter is at least its highest durable value
        assert writes.incr and writes.script and writes.set_
        assert int(str(client.get(KEY))) >= max(writes.incr)
        assert int(str(client.get(KEY + ":script"))) >= max(writes.script)
        assert int(str(client.get(KEY + ":last"))) == writes.set_[-1]
    finally:
        client.close()


@pytest.mark.redis
def test_a_bare_client_fails_fast_while_the_master_is_dead_and_gets_noscript_after(
    local_cluster: LocalCluster,
) -> None:
    """Why :func:`retry_through_failover` and the NOSCRIPT reload are needed.

    RedisCluster's own retries (10, ``Retry`` in its constructor) follow each other without
    a pause, so they are spent long before a replica is promoted. The promoted replica
    never got the ``SCRIPT LOAD`` (Redis 7 does not replicate its script cache).
    """
    client = local_cluster.client(decode_responses=True)
    try:
        sha = client.script_load(INCR_LUA)
        # on the replica too (WAIT on the same connection), so the kill cannot take it along
        queue = lambda p: (p.evalsha(sha, 1, KEY), p.execute_command("WAIT", 1, 1000))  # noqa: E731
        assert on_master_of(client, KEY, queue) == [1, 1]
        old = local_cluster.master_of_key(KEY)
        local_cluster.kill_master(old)
        t = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            client.incr(KEY)
        assert time.monotonic() - t < 1.0
        local_cluster.wait_failover(old, timeout=20)
        assert client.incr(KEY) == 2  # the replica had it; the client re-read the slots
        assert client.get_node_from_key(KEY).port == local_cluster.master_of_key(KEY) != old
        with pytest.raises(NoScriptError):
            client.evalsha(sha, 1, KEY)
        client.script_load(INCR_LUA)  # loads on every master
        assert client.evalsha(sha, 1, KEY) == 3
    finally:
        client.close()
