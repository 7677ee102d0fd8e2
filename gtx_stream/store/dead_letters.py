"""The dead stream read back, and the one script that takes a dead letter off it again.

A :class:`~gtx_stream.core.records.DeadLetter` keeps the refused entry's fields as JSON in
``payload``; :class:`StoredLetter` pairs it with its id on the dead stream and reads the
payload back. Streams are read newest first in chunks and at most ``limit`` entries deep, so
that looking inside a pipeline whose dead or final stream is huge stays bounded; the answer
says when it stopped short.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis

from gtx_stream.core.records import DeadLetter, Fields, LabelEntry, RecordError, decode_fields, text
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptCall
from gtx_stream.store.shards import stored_keys

SCAN_LIMIT = 100_000
"""Entries of a stream read at most, newest first, when looking for something in it."""

_CHUNK = 1000


def newest_entries(
    client: redis.Redis, stream: str, limit: int = SCAN_LIMIT
) -> Iterator[tuple[str, Fields]]:
    """``(entry id, fields)`` of ``stream``, newest first, at most ``limit`` of them."""
    end, seen = "+", 0
    while seen < limit:
        count = min(_CHUNK, limit - seen)
        chunk = cast(list[Any], client.xrevrange(stream, max=end, min="-", count=count))
        for entry_id, fields in chunk:
            yield text(entry_id), decode_fields(fields)
        seen += len(chunk)
        if len(chunk) < count:
            return
        end = "(" + text(chunk[-1][0])


@dataclass(frozen=True)
class StoredLetter:
    """One dead letter as it sits on the dead stream."""

    dead_id: str
    """Its id on the dead stream (``letter.entry_id`` is the refused entry's own id)."""
    letter: DeadLetter
    stream: str = ""
    """The dead stream it sits on (on a Redis Cluster, one per shard)."""

    @functools.cached_property
    def fields(self) -> Fields | None:
        """The refused entry's fields; None when the payload is no JSON object (it was cut at
        ``MAX_LABEL_PAYLOAD``, or the entry was garbage to begin with)."""
        try:
            raw = json.loads(self.letter.payload)
        except ValueError:
            return None
        return decode_fields(raw) if isinstance(raw, dict) else None

    @property
    def frame_id(self) -> str:
        return (self.fields or {}).get("frame_id", "")

    def label_entry(self) -> LabelEntry:
        """The refused label entry, decoded as the aggregator decodes it (RecordError: not one)."""
        if self.letter.kind != "label" or self.fields is None:
            raise RecordError(f"a {self.letter.kind} dead letter with no label entry in it")
        return LabelEntry.from_fields(self.fields)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values; the payload parsed when it parses."""
        out: dict[str, Any] = {"dead_id": self.dead_id, "kind": self.letter.kind,
                               "reason": self.letter.reason, "entry_id": self.letter.entry_id,
                               "at": self.letter.at}  # fmt: skip
        out["payload"] = self.fields if self.fields is not None else self.letter.payload
        return out


@dataclass(frozen=True)
class DeadScan:
    letters: list[StoredLetter]
    """Oldest first."""
    complete: bool
    """False when older letters were left unread (more than ``limit``)."""


def read_dead(client: redis.Redis, keys: Keys, limit: int = SCAN_LIMIT) -> DeadScan:
    """The newest ``limit`` dead letters (a malformed one, which only a hand-written XADD can
    leave, reads as a letter of kind ``?`` saying why). On a Redis Cluster those of every
    shard's dead stream, newest first by id, or of the one shard ``keys`` names."""
    keys = stored_keys(client, keys)
    shards = keys.every_shard() if keys.cluster and keys.shard is None else [keys]
    letters = []
    for stream in [shard.dead for shard in shards]:
        for dead_id, fields in newest_entries(client, stream, limit + 1):
            try:
                letter = DeadLetter.from_fields(fields)
            except RecordError as err:
                letter = DeadLetter("?", f"malformed dead letter: {err}", json.dumps(fields))
            letters.append(StoredLetter(dead_id, letter, stream))
    if len(shards) > 1:
        letters.sort(key=lambda s: _id_key(s.dead_id), reverse=True)
    complete = len(letters) <= limit
    return DeadScan(letters[:limit][::-1], complete)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def requeue_dead(keys: Keys, dead_id: str, entry: LabelEntry) -> ScriptCall[str | None]:
    """Add ``entry`` to the labels stream and delete dead letter ``dead_id``, atomically;
    returns the new labels-stream id, or None when the letter was gone (nothing written)."""
    flat = [x for pair in entry.to_fields().items() for x in pair]

    def decode(reply: Any) -> str | None:
        answer = text(reply)
        return None if answer == "gone" else answer

    return ScriptCall(
        "requeue_dead",
        (keys.dead, keys.of_frame(entry.frame_id).labels, keys.stats),
        (dead_id, *flat),
        decode,
    )
