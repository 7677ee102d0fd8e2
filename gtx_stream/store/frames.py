"""The state of one open frame as the aggregator decides on it, decoded in one place.

A frame's state is three keys of one hash slot: the frame hash (``state``, ``source``,
``frame_index``, ``opened_at``, ``n_labels``, ``truth``, ``task``, ``eligible``, ...), the
labels list (JSON ``[labeler, label]`` in arrival order) and the requests hash (labeler ->
:class:`~gtx_stream.core.records.RequestState`). ``apply_labels.lua`` returns them for the
frames it touched; :func:`read_frames` reads the others in one round trip.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from gtx_stream.core.records import RecordError, RequestState, decode_fields, text
from gtx_stream.store.keys import Keys

SETTLED = RequestState("failed", "")
"""What a request state that cannot be decoded counts as: asked, and nothing outstanding."""


@dataclass(frozen=True)
class FrameState:
    """One frame: its hash, its labels in arrival order, and who was asked about it."""

    frame_id: str
    meta: Mapping[str, str]
    labels: tuple[tuple[str, int], ...]
    """``(labeler, label)`` in arrival order."""
    requests: Mapping[str, RequestState]
    """Every labeler asked about the frame (whatever became of the request)."""

    @property
    def is_open(self) -> bool:
        return self.meta.get("state") == "open"

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def outstanding(self) -> int:
        """Requests whose label is still expected within their lease."""
        return sum(1 for req in self.requests.values() if req.outstanding)

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
        return [lab for lab in labelers if lab not in self.requests]

    @classmethod
    def decode(
        cls, frame_id: str, meta: Any, labels: Sequence[Any], requests: Any
    ) -> FrameState | None:
        """From Redis replies (a hash as a dict or a flat list); None when the frame is gone."""
        meta_map = _hash(meta)
        if not meta_map:
            return None
        return cls(
            frame_id=frame_id,
            meta=meta_map,
            labels=_labels(labels),
            requests={lab: _request(v) for lab, v in _hash(requests).items()},
        )


def read_frames(
    client: redis.Redis, keys: Keys, frame_ids: Sequence[str]
) -> dict[str, FrameState | None]:
    """The state of each frame (None when gone), in one round trip."""
    if not frame_ids:
        return {}
    pipe = client.pipeline(transaction=False)
    for fid in frame_ids:
        pipe.hgetall(keys.frame(fid))
        pipe.lrange(keys.frame_labels(fid), 0, -1)
        pipe.hgetall(keys.frame_requests(fid))
    raw = pipe.execute()
    return {fid: FrameState.decode(fid, *raw[3 * i : 3 * i + 3]) for i, fid in enumerate(frame_ids)}


def _hash(raw: Any) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return decode_fields(raw)
    return decode_fields(dict(zip(raw[::2], raw[1::2], strict=True)))


def _labels(raw: Sequence[Any]) -> tuple[tuple[str, int], ...]:
    """The labels list, JSON ``[labeler, label]`` each (written by apply_labels.lua only),
    parsed as one JSON array: a frame is decided on every step that touches it."""
    if not raw:
        return ()
    pairs = json.loads("[" + ",".join(text(x) for x in raw) + "]")
    return tuple((str(labeler), int(label)) for labeler, label in pairs)


def _request(raw: Any) -> RequestState:
    try:
        return RequestState.decode(text(raw))
    except RecordError:
        return SETTLED
