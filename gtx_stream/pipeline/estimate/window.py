"""The labels EM learns from: those of the latest finalised frames, read from the final stream.

A sliding window of whole frames holding at most ``capacity`` labels keeps each fit's cost
bounded however long the pipeline runs. The first :meth:`LabelWindow.fill` reads the stream
backwards from its newest entry until the window is full; every later one reads only what was
added since. The estimator reads the stream without a consumer group (it needs no
acknowledgement: a restarted estimator reads the window again), so retention is not held up by
it. Frames that retention trimmed before the estimator read them are not in any fit.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from gtx_stream.core.models import IntArray
from gtx_stream.core.records import text
from gtx_stream.store.keys import Keys

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
        self.last_id: str | None = None  # newest entry read; None before the first fill

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
        """Read what the final stream gained since the last call; returns the labels read (the
        first call: the labels of the newest whole frames that fit in the window)."""
        if self.last_id is None:
            return self._first_fill()
        added = 0
        while True:
            entries = self.r.xrange(self.keys.final, f"({self.last_id}", "+", count=CHUNK)
            if not entries:
                return added
            self.last_id = text(entries[-1][0])
            added += self._add(_labels_of(entries))
            if len(entries) < CHUNK:
                return added

    def _first_fill(self) -> int:
        newest: list[FrameLabels] = []  # newest first
        n, top = 0, "+"
        self.last_id = "0-0"
        while n < self.capacity:
            entries = self.r.xrevrange(self.keys.final, top, "-", count=CHUNK)
            if not entries:
                break
            if top == "+":
                self.last_id = text(entries[0][0])
            for f in _labels_of(entries):
                if n + len(f.labels) > self.capacity:
                    break
                newest.append(f)
                n += len(f.labels)
            else:
                top = f"({text(entries[-1][0])}"
                if len(entries) == CHUNK:
                    continue
            break
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


def _labels_of(entries: Sequence[Any]) -> list[FrameLabels]:
    """The labels of XRANGE entries (id, fields), leaving out those without any."""
    return [f for _, fields in entries if fields and (f := frame_labels(fields)) is not None]
