"""``final_labels``: the final stream through a consumer group, as typed records.

Acknowledgement is implicit: a record is acknowledged once the caller asks for the next one
(its loop body is done with it), in one XACK per batch sent before the next read. The record in
hand when the loop ends by ``break`` or an exception is not acknowledged: it comes again. So
delivery is at least once: after a crash, what was processed since the last read (at most one
batch) comes again too; key what you store by ``frame_id``.

A restarted consumer first gets its own unacknowledged entries again (XREADGROUP from 0); what
a dead consumer of the group left pending is claimed after ``claim_idle_seconds``
(:class:`~gtx_stream.pipeline.aggregate.consumer.GroupConsumer`, as the aggregator claims).

A Redis restart (or outage) while it iterates is ridden out (:mod:`.reconnect`). A call that
failed is where the iteration stood between batches, with every record handed out processed:
once Redis answers again, those not acknowledged yet are (XACK again: it is idempotent), then
this consumer's pending entries are read again from 0 (a read whose reply the outage cut off,
or entries claimed then, are pending here and were never handed out), then it reads on. So an
outage hands out nothing twice and loses nothing, on a Redis that keeps its data over a restart
(``--appendonly yes``); one that keeps nothing lost the group with it: :class:`StateLost`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import redis

from gtx_stream.client.reconnect import UNAVAILABLE, Reconnect, check_reconnect_seconds
from gtx_stream.core.records import FinalRecord, RecordError, decode_fields, text
from gtx_stream.pipeline.aggregate.consumer import GroupConsumer, StateLost, StreamEntry
from gtx_stream.store.cluster import is_cluster
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import stored_keys

log = logging.getLogger(__name__)

BLOCK_MAX_SECONDS = 5.0


def check_arguments(
    group: str,
    consumer: str,
    exporter_group: str,
    batch_size: int,
    claim_idle_seconds: float,
    reconnect_seconds: float | None = 0.0,
) -> None:
    """ValueError, in one line, for what Redis would take silently (an empty name, the
    exporter's group) or refuse with a message about XREADGROUP."""
    for what, name in (("group", group), ("consumer", consumer)):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"final_labels: the {what} name must be a non-empty string")
    if group == exporter_group:
        raise ValueError(
            f"final_labels: group {group!r} is the exporter's (export.group): what this loop "
            "acknowledged would never reach the dataset; give your application a group of its own"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"final_labels: batch_size must be an int >= 1, got {batch_size!r}")
    if not claim_idle_seconds >= 0:
        raise ValueError(
            f"final_labels: claim_idle_seconds must be >= 0, got {claim_idle_seconds!r}"
        )
    check_reconnect_seconds("final_labels", reconnect_seconds)


def final_labels(
    client: redis.Redis,
    keys: Keys,
    group: str,
    consumer: str,
    *,
    socket_timeout: float,
    link: Reconnect | None = None,
    batch_size: int = 100,
    claim_idle_seconds: float = 60.0,
    idle_seconds: float | None = None,
) -> Iterator[FinalRecord]:
    """Every final record, once per group (at least once: see the module's docstring).

    A new group starts at the first entry the final stream still holds. The iteration runs
    for ever, or ends after ``idle_seconds`` without a new record (the clock starts again
    when Redis is back after an outage). A malformed entry is logged, acknowledged and
    skipped. While Redis is unreachable it tries again as ``link`` says (:mod:`.reconnect`;
    without one, redis-py's error is raised at once).
    """
    link = link if link is not None else Reconnect("redis", 0)
    reader: GroupConsumer | None = None
    block_ms = int(1000 * max(0.001, min(BLOCK_MAX_SECONDS, socket_timeout / 2)))
    done: list[StreamEntry] = []
    replay = True  # this consumer's own pending entries first: at the start, after an outage
    idle_since = 0.0
    try:
        while True:
            try:
                if reader is None:
                    reader = _reader(client, keys, group, consumer, batch_size,
                                     claim_idle_seconds)  # fmt: skip
                if replay:
                    reader.ack(done, progress=False)
                    done.clear()
                    for entry in _own_pending(client, reader.streams, group, consumer,
                                              batch_size):  # fmt: skip
                        record = _record(entry)
                        if record is not None:
                            yield record
                        done.append(entry)
                    replay = False
                    link.back()
                    idle_since = time.monotonic()
                wait_ms = block_ms
                if idle_seconds is not None:
                    left = idle_seconds - (time.monotonic() - idle_since)
                    if left <= 0:
                        return
                    wait_ms = max(1, min(block_ms, int(left * 1000)))
                reader.ack(done, progress=False)
                done.clear()
                batch = reader.read(wait_ms)
            except UNAVAILABLE as err:
                link.lost(err)  # sleeps a step, or raises once reconnecting is over
                replay = True
                continue
            if batch:
                idle_since = time.monotonic()
            for entry in batch:
                record = _record(entry)
                if record is not None:
                    yield record
                done.append(entry)
    finally:
        # the loop ended (idle, break, exception): what was processed is acknowledged, the
        # record in hand is not
        if reader is not None and done:
            try:
                reader.ack(done, progress=False)
            except redis.RedisError as err:
                log.warning("could not acknowledge %d final records (they come again): %s",
                            len(done), err)  # fmt: skip


def _reader(
    client: redis.Redis,
    keys: Keys,
    group: str,
    consumer: str,
    batch_size: int,
    claim_idle_seconds: float,
) -> GroupConsumer:
    """The group's reader of every shard's final stream, the group created if new."""
    if is_cluster(client):  # one final stream per shard, as many as the pipeline stored
        keys = stored_keys(client, keys)
    reader = GroupConsumer(
        client, keys, consumer, batch_size, claim_idle_seconds, group=group,
        streams=[shard.final for shard in keys.state_shards()],
    )  # fmt: skip
    reader.create_group()
    return reader


def _own_pending(
    client: redis.Redis, streams: Sequence[str], group: str, consumer: str, batch_size: int
) -> Iterator[StreamEntry]:
    """What this consumer read before and never acknowledged (it was restarted), in order of
    each stream."""
    for stream in streams:
        after = "0"
        while True:
            try:
                reply = client.xreadgroup(group, consumer, {stream: after}, count=batch_size)
            except redis.ResponseError as err:
                if not str(err).startswith("NOGROUP"):
                    raise
                # after a restart of a Redis that keeps nothing (or a flush)
                raise StateLost(
                    f"Redis lost the consumer group {group!r} of {stream} ({err}): it restarted "
                    "without persistence (run it with --appendonly yes), was flushed, or the "
                    "stream was deleted; call final_labels again to start the group anew"
                ) from err
            items = cast(list[Any], reply)[0][1] if reply else []
            if not items:
                break
            for entry_id, fields in items:
                after = text(entry_id)
                # an entry trimmed from the stream meanwhile comes with no fields: acknowledged
                yield StreamEntry(stream, after, decode_fields(fields or {}))


def _record(entry: StreamEntry) -> FinalRecord | None:
    if not entry.fields:
        return None
    try:
        return FinalRecord.from_fields(entry.fields, entry.entry_id)
    except RecordError as err:
        log.warning("final entry %s skipped: %s", entry.entry_id, err)
        return None
