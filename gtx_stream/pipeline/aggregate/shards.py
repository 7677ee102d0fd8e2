"""Aggregators that scale out by shard: each shard is owned by one aggregator at a time.

With ``aggregator.shards`` above 1 every frame belongs to one shard (``shard_of``: a CRC-32 of
its id), and the keys an aggregator consumes and sweeps (the ``labels`` and ``opened`` streams,
``leases``, ``waiting``) are one set per shard. A :class:`ShardedAggregator` holds one plain
:class:`~gtx_stream.pipeline.aggregate.aggregator.Aggregator` per shard it owns, built around
that shard's keys, and steps each in turn; so N aggregators split the frames instead of all
reading one group and sweeping the same sets.

Ownership, once per ``min(1 s, shard_lease_seconds / 3)``:

- every aggregator beats in ``<prefix>:aggregators`` (score: the time); one silent for
  ``shard_lease_seconds`` is not counted live;
- its share is ``ceil(shards / live aggregators)``: it renews the owner keys of the shards it
  keeps (``shard_owner.lua``: only by their owner), gives up those above its share, and takes
  unowned ones (``SET NX PX``) up to it, so a second aggregator started later gets half;
- an aggregator killed outright stops renewing: its owner keys expire after
  ``shard_lease_seconds`` and the others take its shards. The new owner claims the shard's
  pending entries at once (XAUTOCLAIM, however briefly idle); its first step sweeps the
  shard's leases and waiting set. Applying is idempotent (a label counts once, a stale ask
  or finalise is refused), so an old owner still finishing a batch is safe.

An aggregator that stops (SIGTERM) gives its shards up, so the others take them at once.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import zlib
from collections.abc import Mapping, Sequence

import redis

from gtx_stream.config import AggregatorSettings, ConfigError, RetentionSettings
from gtx_stream.core.records import LabelRequest, text
from gtx_stream.pipeline.aggregate.aggregator import (
    RECONNECT_FIRST,
    RECONNECT_MAX,
    Aggregator,
    rq_enqueue,
    rq_sent,
)
from gtx_stream.pipeline.aggregate.consumer import GroupConsumer
from gtx_stream.pipeline.aggregate.report import BatchReport
from gtx_stream.pipeline.aggregate.requester import Enqueue
from gtx_stream.store.budget_lease import set_limit
from gtx_stream.store.budget_watch import PoolWatch
from gtx_stream.store.cluster import UNAVAILABLE, is_cluster
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import mirror_labelers
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.shards import check_shard_count, shard_owner

log = logging.getLogger(__name__)

LINGER = 2.0
"""After a step that read less than a full batch, wait this many times as long as the step
took (its read's blocking left out; at most ``block_ms``) before the next read. A labeler's
batch of answers splits over the shards, so each of N aggregators sees 1/N of the arrivals:
stepping at once, it would make about N times as many steps, each with its fixed cost (a
script call's counters, the decision's numpy, one RQ enqueue per labeler) spread over 1/N of
the labels. Measured with benchmarks/bench_shards.py (BENCHMARKS.md): aggregator CPU per label
with 2 aggregators 1.21 to 1.40 times one aggregator's without the wait; latency grows by at
most twice a step (milliseconds)."""
IDLE_WAIT = 0.2
"""Seconds an aggregator that owns no shard waits before it looks again."""


class ShardedAggregator:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: AggregatorSettings,
        consumer: str | None = None,
        lease_seconds: float | None = None,
        enqueue: Enqueue | None = None,
        retention: RetentionSettings | None = None,
        labeler_leases: Mapping[str, float] | None = None,
        queue_client: redis.Redis | None = None,
    ) -> None:
        """The arguments of :class:`Aggregator`; ``keys`` get ``settings.shards``."""
        if settings.strategy == "uncertainty" and settings.shards > 1:
            raise ConfigError(
                f"aggregator.strategy uncertainty ranks every open frame at once: "
                f"it needs aggregator.shards = 1, not {settings.shards}"
            )
        self.r = client
        self.keys = Keys(keys.prefix, shards=settings.shards, cluster=is_cluster(client))
        self.s = settings
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.runner = ScriptRunner(client)
        self.lease_ms = int(settings.shard_lease_seconds * 1000)
        self.balance_every = min(1.0, settings.shard_lease_seconds / 3)
        self._enqueue = enqueue or rq_enqueue()
        sent = rq_sent() if enqueue is None else None
        self._held: dict[float, tuple[redis.Redis, list[LabelRequest]]] = {}
        pool = PoolWatch(client, self.keys)  # one read of the budget pool for all owned shards
        self._build = lambda shard_keys: Aggregator(
            client, shard_keys, settings, consumer=self.consumer, lease_seconds=lease_seconds,
            enqueue=self._hold, retention=retention, labeler_leases=labeler_leases,
            queue_client=queue_client, sent=sent, defer_confirm=True, pool=pool,
        )  # fmt: skip
        self.owned: dict[int, Aggregator] = {}
        self._last_balance = 0.0
        self._mirrored: set[str] = set()
        self._busy = True  # the last round read something: the next one does not block
        self.work_seconds = 0.0
        """How long the last round's steps took, their reads' blocking left out."""

    # --- setup and ownership -------------------------------------------------------------------

    def setup(self, budget: int | None = None) -> None:
        """Check (or store) the shard count, create each shard's consumer group, mark each
        shard's waiting set seeded (no shard predates it) and set the budget limit."""
        check_shard_count(self.r, self.keys)
        for shard in self.keys.every_shard():
            GroupConsumer(self.r, shard, self.consumer, 1, 1.0).create_group()
            if self.keys.shards > 1:
                self.r.set(shard.waiting_seeded, repr(time.time()), nx=True)
        set_limit(self.r, self.keys, self.s.budget if budget is None else budget)
        if self.keys.cluster:  # each shard's copy of the labelers hash, for apply_labels.lua
            self.mirror_new_labelers()

    def mirror_new_labelers(self) -> None:
        """On a Redis Cluster, add the labelers registered since the last look to every shard's
        copy of the registry (one HKEYS a balance round). Whoever registers one adds it too;
        this closes the race where the label server qualified a person before the shard count
        was stored (it wrote shard 0's copy alone) while this aggregator's setup read the
        registry just before the person was in it."""
        ids = {text(k) for k in self.r.hkeys(self.keys.labelers)}
        new = sorted(ids - self._mirrored)
        if new:
            mirror_labelers(self.r, self.keys, new)
        self._mirrored = ids

    def share(self, live: int) -> int:
        """Shards one of ``live`` aggregators owns at most."""
        return math.ceil(self.keys.shards / max(1, live))

    def balance(self) -> None:
        """Beat, renew the shards kept, give up those above the share, take unowned ones; on a
        Redis Cluster, mirror newly registered labelers."""
        if self.keys.cluster:
            self.mirror_new_labelers()
        keys, now = self.keys, time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(keys.aggregators, {self.consumer: now})
        pipe.zremrangebyscore(keys.aggregators, "-inf", now - self.s.shard_lease_seconds)
        pipe.zcard(keys.aggregators)
        for k in range(keys.shards):  # one GET each: on a cluster the owner keys' slots differ
            pipe.get(keys.shard_owner(k))
        _, _, live, *raw = pipe.execute()
        owners = [None if o is None else o.decode() if isinstance(o, bytes) else o for o in raw]
        share = self.share(int(live))
        mine = [k for k, o in enumerate(owners) if o == self.consumer]
        keep, extra = mine[:share], mine[share:]
        calls = [shard_owner(keys, k, self.consumer, self.lease_ms) for k in keep]
        calls += [shard_owner(keys, k, self.consumer, 0) for k in extra]
        renewed = self.runner.run(calls)
        kept = {k for k, ok in zip(keep, renewed, strict=False) if ok}
        for k in extra:
            log.info("shard %d given up: over this aggregator's share of %d", k, share)
        for k in sorted(set(self.owned) - kept):
            self._drop(k)
        for k in sorted(kept - set(self.owned)):  # owned under this name by a process before
            self._take(k)  # it (restarted within the lease): its pending entries are claimed
        free = [k for k, o in enumerate(owners) if o is None]
        want = share - len(kept)
        if want > 0 and free:
            # start at a place of its own: aggregators starting together take different shards
            start = zlib.crc32(self.consumer.encode()) % keys.shards
            free.sort(key=lambda k: (k - start) % keys.shards)
            pipe = self.r.pipeline(transaction=False)
            for k in free[:want]:
                pipe.set(keys.shard_owner(k), self.consumer, nx=True, px=self.lease_ms)
            for k, got in zip(free[:want], pipe.execute(), strict=True):
                if got:
                    self._take(k)
        self._last_balance = time.time()

    def _take(self, shard: int) -> None:
        agg = self._build(self.keys.for_shard(shard))
        agg.group.take_over()  # what the last owner read and never acknowledged, at once
        self.owned[shard] = agg
        self._busy = True
        log.info("shard %d taken by %s (%d owned)", shard, self.consumer, len(self.owned))

    def _drop(self, shard: int) -> None:
        if self.owned.pop(shard, None) is not None:
            log.info("shard %d no longer owned by %s", shard, self.consumer)

    def release(self) -> None:
        """Give every owned shard up and leave the live set (on a clean stop)."""
        calls = [shard_owner(self.keys, k, self.consumer, 0) for k in sorted(self.owned)]
        self.runner.run(calls)
        self.r.zrem(self.keys.aggregators, self.consumer)
        self.owned.clear()

    # --- the loop ------------------------------------------------------------------------------

    def _hold(
        self, queue: redis.Redis, keys: Keys, requests: Sequence[LabelRequest], lease: float
    ) -> None:
        """A shard's requests of this round, enqueued with every shard's at the round's end
        (:meth:`_flush`): a labeler's batch gathers what all shards asked of it. Enqueued
        shard by shard, its worker took each shard's few requests as they came, and with 16
        shards batches of 16 carried 3 to 4 labels (BENCHMARKS.md, Redis Cluster)."""
        self._held.setdefault(lease, (queue, []))[1].extend(requests)

    def _flush(self) -> None:
        """Enqueue the round's requests, then delete their shards' journal entries (an
        enqueue that raises leaves them for a sweep: :mod:`gtx_stream.store.unsent`)."""
        held, self._held = self._held, {}
        try:
            for lease, (queue, requests) in held.items():
                self._enqueue(queue, self.keys, requests, lease)
        except BaseException:
            for agg in self.owned.values():
                agg.requester.enqueued.clear()
            raise
        for agg in self.owned.values():
            agg.requester.confirm_sent()

    def step(self) -> BatchReport:
        """Balance when due, then one step of each owned shard. One shard: its read blocks up
        to ``block_ms``, as a plain aggregator's; several: the reads block (splitting
        ``block_ms`` between the shards) only when the last round read nothing."""
        if time.time() - self._last_balance >= self.balance_every:
            self.balance()
        total = BatchReport()
        if not self.owned:
            return total
        if len(self.owned) == 1:  # as a plain aggregator: a blocking read returns on arrival
            block = self.s.block_ms
        else:  # no shard's block may hold up another's entries
            block = 0 if self._busy else max(1, self.s.block_ms // len(self.owned))
        work = 0.0
        for agg in list(self.owned.values()):
            began = time.perf_counter()
            report = agg.step(block_ms=block)
            work += time.perf_counter() - began - agg.group.read_seconds
            for name in ("labels_read", "applied", "failed", "dead", "finalised", "asked"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            for status, n in report.counts.items():
                total.counts[status] = total.counts.get(status, 0) + n
        self._flush()  # a crash before it: a sweep sends the requests (store/unsent.py)
        self._busy = bool(total.labels_read or total.progress)
        self.work_seconds = work
        return total

    def splits_arrivals(self) -> bool:
        """Whether other aggregators own some shards (this one sees only part of the labels
        arriving, and lingers after a short step, :data:`LINGER`). One that owns every shard
        sees them all, as a plain aggregator, and does not: lingering there took its labels/s
        from 0.95 to 0.68 of one aggregator on one shard, for the same CPU per label
        (BENCHMARKS.md, Sharded aggregators)."""
        return len(self.owned) < self.keys.shards

    def run(self, stop: threading.Event | None = None) -> None:
        """Step until ``stop`` is set, then give the shards up."""
        stop = stop or threading.Event()
        wait = RECONNECT_FIRST
        try:
            while not stop.is_set():
                try:
                    report = self.step()
                except UNAVAILABLE as err:
                    log.warning("redis unavailable (%s): retrying in %.1f s", err, wait)
                    stop.wait(wait)
                    wait = min(wait * 2, RECONNECT_MAX)
                    continue
                wait = RECONNECT_FIRST
                if not self.owned:
                    stop.wait(IDLE_WAIT)
                elif 0 < report.labels_read < self.s.batch_size and self.splits_arrivals():
                    stop.wait(min(self.work_seconds * LINGER, self.s.block_ms / 1000))
        finally:
            try:
                self.release()
            except redis.RedisError as err:  # the owner keys expire by themselves
                log.warning("shards not given up (%s): they expire in %.1f s", err,
                            self.s.shard_lease_seconds)  # fmt: skip
