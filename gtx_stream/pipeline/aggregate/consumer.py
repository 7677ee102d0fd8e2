"""The aggregator's side of its consumer group on the ``labels`` and ``opened`` streams.

:class:`GroupConsumer` also serves other groups on other streams (the exporter's on ``final``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import redis
from redis.cluster import key_slot

from gtx_stream.core.records import Fields, decode_fields, text
from gtx_stream.store.cluster import is_cluster
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)

GROUP = "aggregator"
POLL_SECONDS = 0.05
"""On a Redis Cluster, how often a reader of streams in several slots looks again while all are
empty (the exporter's and ``final_labels``' reads of the final streams of every shard)."""


class StateLost(redis.ResponseError):
    """The consumer group is gone from Redis: a restart without persistence, a FLUSHALL or a
    deleted stream. With it went everything the pipeline kept (open frames, requests, the
    budget spent), so reading on would only wait for entries that cannot come; the service
    stops with one line instead (a restart starts the pipeline over)."""


def _lost(err: redis.ResponseError, group: str, streams: Sequence[str]) -> StateLost | None:
    """``err`` as :class:`StateLost` when it says the group or its stream is gone (NOGROUP;
    "UNBLOCKED the stream key no longer exists": deleted while a read blocked on it), else
    None (a CLIENT UNBLOCK's "UNBLOCKED force unblock" is not a loss)."""
    message = str(err)
    if not (message.startswith("NOGROUP") or message.startswith("UNBLOCKED the stream key")):
        return None
    return StateLost(
        f"Redis lost the pipeline's state: the consumer group {group!r} of "
        f"{', '.join(streams)} is gone ({message}). Redis restarted without persistence "
        f"(run it with --appendonly yes), was flushed, or the stream was deleted; what it held "
        f"(open frames, requests, the budget spent) is lost with it. Start the services again "
        f"to begin anew."
    )


class StreamEntry(NamedTuple):
    """One entry read through the group (a tuple: a batch holds hundreds)."""

    stream: str
    entry_id: str
    fields: Fields


class GroupConsumer:
    """Reads batches through the group, takes over what a dead consumer left pending, and
    acknowledges each batch in one round trip."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        consumer: str,
        batch_size: int,
        claim_idle_seconds: float,
        group: str = GROUP,
        streams: Sequence[str] | None = None,
    ) -> None:
        self.r = client
        self.keys = keys
        self.consumer = consumer
        self.batch_size = batch_size
        self.claim_idle_seconds = claim_idle_seconds
        self.group = group
        self.streams = tuple(streams) if streams is not None else (keys.labels, keys.opened)
        self._last_claim = 0.0
        self._claim_cursor = dict.fromkeys(self.streams, "0-0")
        self._taking_over: set[str] = set()
        self.one_by_one = (
            is_cluster(client) and len({key_slot(st.encode()) for st in self.streams}) > 1
        )
        self.read_seconds = 0.0
        """How long the last XREADGROUP took (its block included)."""

    def create_group(self) -> None:
        for stream in self.streams:
            try:
                self.r.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise

    def read(self, block_ms: int) -> list[StreamEntry]:
        """The next batch (with, now and then, entries claimed from dead consumers first);
        ``block_ms`` 0: do not block. :class:`StateLost` when the group is gone."""
        try:
            return self._read(block_ms)
        except redis.ResponseError as err:
            lost = _lost(err, self.group, self.streams)
            if lost is not None:
                raise lost from err
            raise

    def _read(self, block_ms: int) -> list[StreamEntry]:
        entries: list[StreamEntry] = []
        now = time.time()
        if self._taking_over:
            entries += self._claim(0, sorted(self._taking_over))
        elif now - self._last_claim >= self.claim_idle_seconds / 2:
            entries += self._claim()
            self._last_claim = now
        began = time.perf_counter()
        resp: Any
        if self.one_by_one:
            resp = self._read_each(block_ms)
        else:
            resp = self.r.xreadgroup(
                self.group,
                self.consumer,
                dict.fromkeys(self.streams, ">"),
                count=self.batch_size,
                block=block_ms if block_ms > 0 else None,
            )
        self.read_seconds = time.perf_counter() - began
        for stream, items in cast(list[Any], resp or []):
            name = text(stream)
            entries += [StreamEntry(name, text(entry_id), decode_fields(fields))
                        for entry_id, fields in items]  # fmt: skip
        return entries

    def _read_each(self, block_ms: int) -> list[Any]:
        """On a Redis Cluster, streams of several slots: one XREADGROUP per stream, in one
        pipeline (a node each); while all are empty, again every :data:`POLL_SECONDS`, until
        ``block_ms`` have passed (one command cannot block on keys of several slots)."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            pipe = self.r.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xreadgroup(self.group, self.consumer, {stream: ">"}, count=self.batch_size)
            found = [item for reply in pipe.execute() for item in cast(list[Any], reply or [])]
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            time.sleep(min(POLL_SECONDS, left))

    def take_over(self) -> None:
        """Claim every entry pending in the group, however briefly idle, from the next reads
        on (a batch per read, until each stream's pending list was walked once): a sharded
        aggregator that takes a shard over takes what its last owner had read at once."""
        self._taking_over = set(self.streams)
        self._claim_cursor = dict.fromkeys(self.streams, "0-0")

    def _claim(self, idle_ms: int | None = None,
               streams: Sequence[str] | None = None) -> list[StreamEntry]:  # fmt: skip
        """Take over entries that a dead consumer read but never acknowledged."""
        out = []
        if idle_ms is None:
            idle_ms = int(self.claim_idle_seconds * 1000)
        for stream in self.streams if streams is None else streams:
            cursor, items, *_ = self.r.xautoclaim(
                stream, self.group, self.consumer, idle_ms, self._claim_cursor[stream],
                count=self.batch_size,
            )  # fmt: skip
            self._claim_cursor[stream] = text(cursor)
            if text(cursor) == "0-0":
                self._taking_over.discard(stream)
            for entry_id, fields in items:
                if fields is None:  # deleted from the stream meanwhile
                    continue
                out.append(StreamEntry(stream, text(entry_id), decode_fields(fields)))
        if out:
            log.info("claimed %d pending entries from dead consumers", len(out))
        return out

    def ack(self, entries: Sequence[StreamEntry], progress: bool) -> None:
        """One round trip: XACK per stream, and the progress stamp that ``status --check``
        reads when the step applied, finalised or asked anything."""
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.entry_id)
        if not by_stream and not progress:
            return
        pipe = self.r.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        if progress:
            pipe.hset(self.keys.stats, "last_progress_at", repr(time.time()))
        pipe.execute()
