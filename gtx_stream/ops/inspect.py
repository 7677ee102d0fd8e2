"""One frame's whole story, read from Redis alone (``gtx-stream frame ID``).

Everything is decoded where it is decoded for the pipeline: the frame's keys with
:func:`~gtx_stream.store.frames.read_frames`, request states as
:class:`~gtx_stream.core.records.RequestState`, labels-stream entries as ``LabelEntry``, the
final record as ``FinalRecord``, dead letters as ``DeadLetter``.

A finalised frame's own keys expire after a grace period, and a dropped frame has none left;
then the final record and the dead letters are looked for on their streams (newest first, at
most :data:`~gtx_stream.store.dead_letters.SCAN_LIMIT` entries deep).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, cast

import redis

from gtx_stream.core.records import FinalRecord, LabelEntry, RecordError, decode_fields, text
from gtx_stream.store.dead_letters import SCAN_LIMIT, StoredLetter, newest_entries, read_dead
from gtx_stream.store.frames import FrameState, read_frames
from gtx_stream.store.keys import Keys, lease_member
from gtx_stream.store.shards import stored_keys

RECORD_ONLY = frozenset(f.name for f in dataclasses.fields(FinalRecord)) - {
    "frame_id", "source", "frame_index", "opened_at", "file_name", "n_labels",
}  # fmt: skip
"""Fields finalise.lua copies into the frame hash that belong to the final record, not the
frame (shown once, with the record)."""


@dataclass(frozen=True)
class RequestView:
    """One labeler's request on the frame, with what the streams and the leases say of it."""

    labeler: str
    state: str
    """``out``, ``late``, ``failed`` or ``done`` (see RequestState)."""
    request_id: str
    """For ``done``, read from its labels-stream entry (empty when that entry is trimmed)."""
    entry_id: str = ""
    """The labels-stream entry of a ``done`` request."""
    lease_deadline: float = math.nan
    """Unix seconds an ``out`` request's lease ends (NaN: no lease)."""
    label: int | None = None
    """For ``done``: from its labels-stream entry, else from the frame's own labels."""
    labeled_at: float = math.nan
    entry_trimmed: bool = False
    """A ``done`` request whose labels-stream entry retention has trimmed (the aggregator
    trims what it applied within ``retention.every_seconds``): its request id and time are
    gone, its label is the one the frame keeps."""


@dataclass(frozen=True)
class ImageView:
    key: str
    size: int
    """Bytes of JPEG in Redis (0: gone)."""
    ttl_s: float
    """Seconds it is still kept (NaN: gone; inf: no TTL)."""

    @property
    def present(self) -> bool:
        return self.size > 0


@dataclass(frozen=True)
class FrameReport:
    """What Redis knows of one frame."""

    frame_id: str
    state: FrameState | None
    """Its keys (None: expired after finalisation, dropped, or never opened)."""
    requests: list[RequestView]
    image: ImageView
    final: FinalRecord | None
    final_from: str
    """Where the final record was read: ``final stream`` or ``frame hash`` (trimmed)."""
    dead: list[StoredLetter]
    """Oldest first."""
    complete: bool
    """False when a stream scan stopped at SCAN_LIMIT entries."""

    @property
    def found(self) -> bool:
        return bool(self.state or self.final or self.dead or self.image.present)

    @property
    def status(self) -> str:
        """``open``, ``final``, ``dropped`` (a frame dead letter), or the hash's state."""
        if self.state is not None:
            return self.state.meta.get("state", "?")
        if self.final is not None:
            return "final"
        return "dropped" if any(d.letter.kind == "frame" for d in self.dead) else "gone"

    def frame_fields(self) -> dict[str, str]:
        """The frame hash without what belongs to the final record."""
        meta = self.state.meta if self.state else {}
        return {k: v for k, v in sorted(meta.items()) if k not in RECORD_ONLY}

    def to_json(self) -> dict[str, Any]:
        """Plain values (NaN and infinities stay: the command turns them into null)."""
        state = self.state
        return {
            "frame_id": self.frame_id,
            "status": self.status,
            "frame": dict(state.meta) if state else None,
            "labels": [{"labeler": lab, "label": v} for lab, v in state.labels] if state else [],
            "requests": [dataclasses.asdict(r) for r in self.requests],
            "image": {**dataclasses.asdict(self.image), "present": self.image.present},
            "final": self.final.to_json() if self.final else None,
            "final_from": self.final_from or None,
            "dead": [d.to_json() for d in self.dead],
            "complete": self.complete,
        }  # fmt: skip


def inspect_frame(
    client: redis.Redis, keys: Keys, frame_id: str, scan_limit: int = SCAN_LIMIT
) -> FrameReport:
    """Everything about ``frame_id``: four round trips, plus stream scans when its keys are
    gone."""
    # its shard: its leases and labels stream; on a Redis Cluster also its keys, final and
    # dead streams
    keys = shard = stored_keys(client, keys).of_frame(frame_id)
    state = read_frames(client, keys, [frame_id])[frame_id]
    reqs = sorted((state.requests if state else {}).items())
    final_id = state.meta.get("final_id", "") if state else ""
    pipe = client.pipeline(transaction=False)
    pipe.strlen(keys.image(frame_id))
    pipe.pttl(keys.image(frame_id))
    for lab, _ in reqs:
        pipe.zscore(shard.leases, lease_member(frame_id, lab))
    done = [(lab, req.ref) for lab, req in reqs if req.state == "done"]
    for _, entry_id in done:
        pipe.xrange(shard.labels, entry_id, entry_id)
    if final_id:
        pipe.xrange(keys.final, final_id, final_id)
    raw = pipe.execute()
    size, pttl = int(raw[0]), int(raw[1])
    ttl = math.nan if pttl == -2 else math.inf if pttl == -1 else pttl / 1000
    leases = dict(zip((lab for lab, _ in reqs), raw[2 : 2 + len(reqs)], strict=True))
    first = 2 + len(reqs)
    answers = dict(zip((lab for lab, _ in done), raw[first : first + len(done)], strict=True))
    kept = dict(state.labels) if state else {}
    requests = [
        _request(lab, req.state, req.ref, leases[lab], answers.get(lab), kept.get(lab))
        for lab, req in reqs
    ]

    complete = True
    final, final_from = None, ""
    if final_id and raw[-1]:
        final, final_from = _final(cast(Any, raw[-1])[0]), "final stream"
    elif state is not None and state.meta.get("state") == "final":
        final, final_from = _final((final_id, state.meta)), "frame hash"
    elif state is None:
        final, complete = _find_final(client, keys, frame_id, scan_limit)
        final_from = "final stream" if final else ""
    scan = read_dead(client, keys, scan_limit)
    dead = [d for d in scan.letters if d.frame_id == frame_id]
    return FrameReport(frame_id, state, requests, ImageView(keys.image(frame_id), size, ttl),
                       final, final_from, dead, complete and scan.complete)  # fmt: skip


def _request(
    lab: str, state: str, ref: str, lease: Any, answer: Any, kept: int | None
) -> RequestView:
    deadline = math.nan if lease is None else float(lease)
    if state != "done":
        return RequestView(lab, state, ref, lease_deadline=deadline)
    if not answer:  # the labels-stream entry was trimmed
        return RequestView(lab, state, "", entry_id=ref, label=kept, entry_trimmed=True)
    try:
        entry = LabelEntry.from_fields(decode_fields(answer[0][1]))
    except RecordError:
        return RequestView(lab, state, "", entry_id=ref, label=kept)
    return RequestView(lab, state, entry.request_id, ref, deadline, entry.label, entry.labeled_at)


def _final(entry: Any) -> FinalRecord | None:
    entry_id, fields = entry
    try:
        return FinalRecord.from_fields(decode_fields(fields), entry_id=text(entry_id))
    except RecordError:
        return None


def _find_final(
    client: redis.Redis, keys: Keys, frame_id: str, limit: int
) -> tuple[FinalRecord | None, bool]:
    """The frame's record on the final stream, and whether the search read all it had to."""
    seen = 0
    for entry_id, fields in newest_entries(client, keys.final, limit):
        seen += 1
        if fields.get("frame_id") == frame_id:
            return _final((entry_id, fields)), True
    return None, seen < limit
