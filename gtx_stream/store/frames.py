"""The state of one open frame as the aggregator decides on it, decoded in one place.

A frame's state is three keys of one hash slot: the frame hash (``state``, ``source``,
``frame_index``, ``opened_at``, ``n_labels``, ``truth``, ``task``, ``eligible``, ...), the
labels list (JSON ``[labeler, label]`` in arrival order) and the requests hash (labeler ->
:class:`~gtx_stream.core.records.RequestState`). ``apply_labels.lua`` returns them for the
frames it touched; :func:`read_frames` reads the others in one round trip.

The aggregator decodes every frame it touches on every step (thousands a second), and of the
requests it needs only who was asked and how many are outstanding: :meth:`FrameState.decode`
keeps the requests hash as it came and decodes its :class:`RequestState` values only when
:attr:`FrameState.requests` is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from gtx_stream.core.records import RecordError, RequestState, decode_fields, text
from gtx_stream.store.keys import Keys

SETTLED = RequestState("failed", "")
"""What a request state that cannot be decoded counts as: asked, and nothing outstanding."""


class FrameState:
    """One frame: its hash, its labels in arrival order, and who was asked about it.

    Read-only once built (``__slots__``, plain attributes: the decider reads them per frame).
    """

    __slots__ = ("_asked", "_requests", "frame_id", "is_open", "labels", "meta", "n_labels",
                 "outstanding")  # fmt: skip

    frame_id: str
    meta: Mapping[str, str]
    labels: tuple[tuple[str, int], ...]
    """``(labeler, label)`` in arrival order."""
    is_open: bool
    n_labels: int
    outstanding: int
    """Requests whose label is still expected within their lease."""
    _asked: Mapping[str, object]
    _requests: Mapping[str, RequestState] | None

    def __init__(
        self,
        frame_id: str,
        meta: Mapping[str, str],
        labels: tuple[tuple[str, int], ...],
        requests: Mapping[str, RequestState],
    ) -> None:
        self._set(frame_id, meta, labels, requests,
                  sum(1 for req in requests.values() if req.outstanding))  # fmt: skip
        self._requests = requests

    def _set(
        self,
        frame_id: str,
        meta: Mapping[str, str],
        labels: tuple[tuple[str, int], ...],
        asked: Mapping[str, object],
        outstanding: int,
    ) -> None:
        self.frame_id = frame_id
        self.meta = meta
        self.labels = labels
        self.is_open = meta.get("state") == "open"
        self.n_labels = len(labels)
        self.outstanding = outstanding
        self._asked = asked

    @property
    def requests(self) -> Mapping[str, RequestState]:
        """Every labeler asked about the frame (whatever became of the request)."""
        if self._requests is None:
            self._requests = {lab: _request(v) for lab, v in self._asked.items()}
        return self._requests

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameState):
            return NotImplemented
        return (self.frame_id, self.meta, self.labels, self.requests) == (
            other.frame_id, other.meta, other.labels, other.requests,
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # as the dataclass it was: its maps are not

    def __repr__(self) -> str:
        return (f"FrameState(frame_id={self.frame_id!r}, meta={self.meta!r}, "
                f"labels={self.labels!r}, requests={self.requests!r})")  # fmt: skip

    @property
    def order_key(self) -> str:
        """What the frame's dispatch order is drawn from: its task (a replayed dataset's item,
        so that replay and the offline run walk the same labelers), else its id."""
        return self.meta.get("task") or self.frame_id

    @property
    def source(self) -> str:
        return self.meta.get("source", "")

    @property
    def frame_index(self) -> int:
        try:
            return int(self.meta.get("frame_index", ""))
        except ValueError:
            return -1

    @property
    def opened_at(self) -> float:
        try:
            return float(self.meta.get("opened_at", ""))
        except ValueError:
            return math.nan

    @property
    def restricted(self) -> bool:
        """Whether the frame names the labelers allowed on it (a replayed task)."""
        return "eligible" in self.meta

    def allowed(self, registered: Iterable[str]) -> list[str]:
        """Registered labelers allowed on this frame (a replayed task: those who labeled it)."""
        allowed = set(registered)
        if "eligible" in self.meta:
            try:
                allowed &= {str(x) for x in json.loads(self.meta["eligible"])}
            except (ValueError, TypeError):
                allowed = set()  # garbage: nobody is allowed, the frame ends as exhausted
        return sorted(allowed)

    def not_asked(self, labelers: Iterable[str]) -> list[str]:
        """Those of ``labelers`` never asked about this frame (labelers are drawn without
        replacement: one who failed or was late is not asked again)."""
        asked = self._asked
        return [lab for lab in labelers if lab not in asked]

    @classmethod
    def decode(
        cls, frame_id: str, meta: Any, labels: Sequence[Any], requests: Any
    ) -> FrameState | None:
        """From Redis replies (a hash as a dict or a flat list); None when the frame is gone."""
        meta_map = _hash(meta)
        if not meta_map:
            return None
        encoded = _hash(requests)
        self = cls.__new__(cls)
        self._set(frame_id, meta_map, _labels(labels), encoded,
                  RequestState.count_outstanding(encoded.values()))  # fmt: skip
        self._requests = None
        return self


def read_frames(
    client: redis.Redis, keys: Keys, frame_ids: Sequence[str]
) -> dict[str, FrameState | None]:
    """The state of each frame (None when gone), in one round trip."""
    if not frame_ids:
        return {}
    pipe = client.pipeline(transaction=False)
    for fid in frame_ids:
        pipe.hgetall(keys.frame(fid))
        pipe.hgetall(keys.frame_requests(fid))
    raw = pipe.execute()
    # the labels list changes with n_labels (apply_labels.lua): a frame at 0 has none, and
    # the lists of the others (in a second round trip) are read after their hashes, so a
    # label applied meanwhile is seen in the list at worst, never missed by it
    labeled = [i for i, fid in enumerate(frame_ids) if _labeled(raw[2 * i])]
    lists: dict[int, Any] = {}
    if labeled:
        pipe = client.pipeline(transaction=False)
        for i in labeled:
            pipe.lrange(keys.frame_labels(frame_ids[i]), 0, -1)
        lists = dict(zip(labeled, pipe.execute(), strict=True))
    decode = FrameState.decode
    return {fid: decode(fid, raw[2 * i], lists.get(i, ()), raw[2 * i + 1])
            for i, fid in enumerate(frame_ids)}  # fmt: skip


def _labeled(meta: Mapping[Any, Any]) -> bool:
    """Whether a frame hash may have labels: its n_labels is not 0 (or it is missing)."""
    n = meta.get(b"n_labels", meta.get("n_labels"))
    return n is None or text(n) != "0"


def _hash(raw: Any) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return decode_fields(raw)
    pairs = iter(raw)
    return decode_fields(dict(zip(pairs, pairs, strict=True)))


_PAIRS: dict[Any, tuple[str, int]] = {}
"""Labels-list items already parsed. An item is ``[labeler, label]`` and nothing else: two
per labeler, while a frame's labels are parsed again on every step that decides it."""
MAX_PAIRS = 65536
"""Items :data:`_PAIRS` keeps (twice the labelers of a very large crowd); further ones are
parsed each time."""


def _labels(raw: Sequence[Any]) -> tuple[tuple[str, int], ...]:
    """The labels list, JSON ``[labeler, label]`` each (written by apply_labels.lua only)."""
    try:
        return tuple([_PAIRS[x] for x in raw])
    except KeyError:
        return tuple([_pair(x) for x in raw])


def _pair(item: Any) -> tuple[str, int]:
    found = _PAIRS.get(item)
    if found is None:
        labeler, label = json.loads(text(item))
        found = (str(labeler), int(label))
        if len(_PAIRS) < MAX_PAIRS:
            _PAIRS[item] = found
    return found


def _request(raw: Any) -> RequestState:
    try:
        return RequestState.decode(text(raw))
    except RecordError:
        return SETTLED


def high_water_mark(client: redis.Redis, keys: Keys, source_id: str) -> int:
    """The highest frame index of ``source_id`` opened so far (-1: none)."""
    if keys.cluster:  # one mark per shard: resume after the lowest (a frame above it may be
        # missing from its shard; those opened already are refused as duplicates)
        pipe = client.pipeline(transaction=False)
        for shard in keys.every_shard():
            pipe.hget(shard.source(source_id), "last_index")
        marks = [int(m) for m in pipe.execute() if m is not None]
        return min(marks) if marks else -1
    last = client.hget(keys.source(source_id), "last_index")
    return int(last) if last is not None else -1
