"""The labels EM learns from: those of the latest finalised frames, read from the final stream.

A sliding window of whole frames holding at most ``capacity`` labels keeps each fit's cost
bounded however long the pipeline runs. The first :meth:`LabelWindow.fill` reads the stream
backwards from its newest entry until the window is full; every later one reads only what was
added since. The estimator reads the stream without a consumer group (it needs no
acknowledgement: a restarted estimator reads the window again), so retention is not held up by
it. Frames that retention trimmed before the estimator read them are not in any fit.

On a Redis Cluster each shard has a final stream of its own: the window is over all of them,
merged by entry id (the time each node added the record, in milliseconds), newest first on the
first fill and oldest first after it. A shard's stream that appears after the first fill (the
shard count stored by an aggregator started later) is read from its start.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from gtx_stream.core.models import IntArray
from gtx_stream.core.records import text
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import stored_keys

CHUNK = 1000  # stream entries per XRANGE / XREVRANGE


@dataclass(frozen=True)
class FrameLabels:
    """One finalised frame's labels, in the order they were applied."""

    labelers: tuple[str, ...]
    labels: tuple[int, ...]
    frame_id: str = ""


def frame_labels(fields: Mapping[bytes | str, bytes | str]) -> FrameLabels | None:
    """The labels of a final-stream entry; None for an entry without any (or unreadable)."""
    got = {text(k): text(v) for k, v in fields.items()}
    try:
        labelers, labels = json.loads(got["labelers"]), json.loads(got["labels"])
    except (KeyError, ValueError):
        return None
    if not labelers or len(labelers) != len(labels):
        return None
    return FrameLabels(tuple(str(x) for x in labelers), tuple(int(x) for x in labels),
                       got.get("frame_id", ""))  # fmt: skip


@dataclass(frozen=True)
class LabelArrays:
    """The window as EM's flat arrays (task = frame index in the window)."""

    task: IntArray
    labeler: IntArray
    label: IntArray
    n_tasks: int


class LabelWindow:
    def __init__(self, client: redis.Redis, keys: Keys, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the window holds at least 1 label, got {capacity}")
        self.r = client
        self.keys = keys
        self.capacity = capacity
        self.frames: deque[FrameLabels] = deque()
        self.n_labels = 0
        self.last_ids: dict[str, str] = {}
        """Per final stream, the newest entry read; empty before the first fill."""

    def streams(self) -> list[str]:
        """The final streams: one, or one per shard on a Redis Cluster."""
        return [shard.final for shard in stored_keys(self.r, self.keys).state_shards()]

    def _add(self, frames: Iterable[FrameLabels]) -> int:
        added = 0
        for f in frames:
            self.frames.append(f)
            self.n_labels += len(f.labels)
            added += len(f.labels)
        while self.n_labels > self.capacity and self.frames:
            self.n_labels -= len(self.frames.popleft().labels)
        return added

    def fill(self) -> int:
        """Read what the final streams gained since the last call; returns the labels read (the
        first call: the labels of the newest whole frames that fit in the window)."""
        streams = self.streams()
        if not self.last_ids:
            return self._first_fill(streams)
        for stream in streams:
            self.last_ids.setdefault(stream, "0-0")  # a shard's stream new since: all of it
        return self._add(
            f for _, f in heapq.merge(*(self._since(s) for s in streams), key=lambda e: e[0])
        )

    def _since(self, stream: str) -> Iterator[tuple[tuple[int, int], FrameLabels]]:
        """(entry id, labels) of ``stream`` after its last entry read, oldest first."""
        while True:
            entries = self.r.xrange(stream, f"({self.last_ids[stream]}", "+", count=CHUNK)
            if not entries:
                return
            self.last_ids[stream] = text(entries[-1][0])
            yield from _keyed(entries)
            if len(entries) < CHUNK:
                return

    def _newest(self, stream: str) -> Iterator[tuple[tuple[int, int], FrameLabels]]:
        """(negated entry id, labels) of ``stream``, newest first, one chunk at a time;
        records the newest entry as read."""
        top, self.last_ids[stream] = "+", "0-0"
        while True:
            entries = self.r.xrevrange(stream, top, "-", count=CHUNK)
            if not entries:
                return
            if top == "+":
                self.last_ids[stream] = text(entries[0][0])
            for (ms, seq), f in _keyed(entries):
                yield (-ms, -seq), f
            if len(entries) < CHUNK:
                return
            top = f"({text(entries[-1][0])}"

    def _first_fill(self, streams: Sequence[str]) -> int:
        newest: list[FrameLabels] = []  # newest first
        n = 0
        # the merge takes each stream's first item before the first it yields, so every
        # stream's newest entry is recorded even where the window fills from the others
        for _, f in heapq.merge(*(self._newest(s) for s in streams), key=lambda e: e[0]):
            if n + len(f.labels) > self.capacity:
                break
            newest.append(f)
            n += len(f.labels)
        return self._add(reversed(newest))

    def arrays(self, index: Mapping[str, int]) -> LabelArrays:
        """The window's labels with each labeler as ``index[labeler]``."""
        sizes = np.fromiter((len(f.labels) for f in self.frames), np.int64, len(self.frames))
        task = np.repeat(np.arange(len(self.frames), dtype=np.int64), sizes)
        who = [index[lab] for f in self.frames for lab in f.labelers]
        labels = [x for f in self.frames for x in f.labels]
        return LabelArrays(
            task, np.asarray(who, dtype=np.int64), np.asarray(labels, dtype=np.int64),
            len(self.frames),
        )  # fmt: skip

    def labelers(self) -> set[str]:
        return {lab for f in self.frames for lab in f.labelers}


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _keyed(entries: Sequence[Any]) -> Iterator[tuple[tuple[int, int], FrameLabels]]:
    """(entry id as numbers, labels) of XRANGE entries, leaving out those without labels."""
    for entry_id, fields in entries:
        if fields and (f := frame_labels(fields)) is not None:
            yield _order(text(entry_id)), f
