"""Typed records for every message that crosses Redis, with their stream fields.

Each class is one message and the only code that encodes (``to_fields``) or decodes
(``from_fields``) it; the Lua scripts that write some of them by hand say so in their
contract. Stream fields are strings; a decoder raises :class:`RecordError` with a one-line
reason (dead-lettered as is) instead of an exception from deep inside.

| record | where | written by |
|---|---|---|
| :class:`FrameOpened` | ``<prefix>:opened`` | ``open_frame.lua`` (ingester) |
| :class:`LabelRequest` | RQ job arguments on ``<prefix>.labeler.<id>`` | aggregator |
| :class:`LabelEntry` | ``<prefix>:labels`` | labeler worker |
| :class:`FinalRecord` | ``<prefix>:final`` | ``finalise.lua`` (aggregator) |
| :class:`DeadLetter` | ``<prefix>:dead`` | aggregator, ``drop_frame.lua`` |
| :class:`RequestState` | values of ``<prefix>:{f:<id>}:requests`` | ``ask.lua`` and others |
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gtx_stream.core.fields import Fields as Fields
from gtx_stream.core.fields import RecordError as RecordError
from gtx_stream.core.fields import decode_fields as decode_fields
from gtx_stream.core.fields import dumps_list as dumps_list
from gtx_stream.core.fields import float_field as _float
from gtx_stream.core.fields import int_field as _int
from gtx_stream.core.fields import required as _required
from gtx_stream.core.fields import text as text

MAX_LABEL_PAYLOAD = 4096
"""Bytes of fields a labels-stream entry may carry; anything bigger is garbage, not a label."""

SKIPPED_REASON = "skipped: can't tell"
"""The reason of a person's "Can't tell" (:meth:`LabelEntry.skip`): a failure report, refunded
and asked of someone else at once, that never counts towards the person's backoff."""


@dataclass(frozen=True)
class FrameOpened:
    """A frame was opened for labeling (wakes the aggregator up)."""

    frame_id: str

    def to_fields(self) -> Fields:
        return {"frame_id": self.frame_id}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> FrameOpened:
        _required(fields, "frame_id")
        return cls(fields["frame_id"])


@dataclass(frozen=True)
class LabelRequest:
    """Ask ``labeler_id`` for a label of ``frame_id``; ``request_id`` comes back with the label.

    It travels as the JSON arguments of an RQ job, in the order of :meth:`to_job_args`.
    """

    labeler_id: str
    frame_id: str
    request_id: str
    prefix: str = "gtx"

    def to_job_args(self) -> list[str]:
        return [self.frame_id, self.labeler_id, self.request_id, self.prefix]

    @classmethod
    def from_job_args(cls, args: list[Any] | tuple[Any, ...]) -> LabelRequest:
        if len(args) != 4 or not all(isinstance(a, str) and a for a in args):
            raise RecordError(f"a label request takes 4 strings, got {args!r:.120}")
        frame_id, labeler_id, request_id, prefix = args
        return cls(labeler_id, frame_id, request_id, prefix)


@dataclass(frozen=True)
class LabelEntry:
    """A labeler's answer to one request: a label, or the reason the request failed.

    Fields: ``frame_id``, ``labeler``, ``request_id``, ``labeled_at`` and either ``label``
    (``0`` or ``1``) or ``status = failed`` with a ``reason``.
    """

    frame_id: str
    labeler: str
    request_id: str
    label: int | None
    labeled_at: float = field(default_factory=time.time)
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.label is None

    @classmethod
    def failure(
        cls, frame_id: str, labeler: str, request_id: str, reason: str, at: float | None = None
    ) -> LabelEntry:
        """A failed request (backend error, timeout, garbage answer), reported at once."""
        return cls(frame_id, labeler, request_id, None, time.time() if at is None else at,
                   reason[: MAX_LABEL_PAYLOAD // 2])  # fmt: skip

    @classmethod
    def skip(cls, frame_id: str, labeler: str, request_id: str) -> LabelEntry:
        """A person could not tell: the request goes back, nothing is counted or charged."""
        return cls.failure(frame_id, labeler, request_id, SKIPPED_REASON)

    @property
    def skipped(self) -> bool:
        return self.label is None and self.reason == SKIPPED_REASON

    def to_fields(self) -> Fields:
        out = {
            "frame_id": self.frame_id,
            "labeler": self.labeler,
            "request_id": self.request_id,
            "labeled_at": repr(self.labeled_at),
        }
        if self.label is None:
            out.update(status="failed", reason=self.reason or "failed")
        else:
            out["label"] = str(self.label)
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> LabelEntry:
        """Checks that need no frame state; raises :class:`RecordError` with the reason."""
        # one call per labels-stream entry: the checks of _required and _float, written out
        if sum(map(len, fields)) + sum(map(len, fields.values())) > MAX_LABEL_PAYLOAD:
            raise RecordError("payload too large")
        get = fields.get
        frame_id, labeler = get("frame_id"), get("labeler")
        if not frame_id:
            raise RecordError("missing field: frame_id")
        if not labeler:
            raise RecordError("missing field: labeler")
        at = _float(fields, "labeled_at", default=0.0) if "labeled_at" in fields else 0.0
        status = get("status")
        if status == "failed":
            request_id = get("request_id")
            if not request_id:
                raise RecordError("missing field: request_id")
            return cls(frame_id, labeler, request_id, None, at, get("reason") or "failed")
        if status:
            raise RecordError(f"status must be 'failed' or absent, got {status[:40]!r}")
        label = get("label")
        if label == "1" or label == "0":
            return cls(frame_id, labeler, get("request_id", ""), int(label), at)
        if not label:
            raise RecordError("missing field: label")
        raise RecordError(f"label must be 0 or 1, got {label[:40]!r}")


_JSON_LISTS = ("labelers", "labels", "accuracies", "sensitivities", "specificities")


@dataclass(frozen=True)
class FinalRecord:
    """A finalised frame, once on ``<prefix>:final``.

    ``labels[j]`` came from ``labelers[j]``, whose accuracy at the decision was
    ``accuracies[j]``; ``reason`` is the decision (``confident``, ``kappa``, ``exhausted``,
    ``budget``). ``entry_id`` is the stream id (empty before it is written).

    ``model`` is the labeler model of the posterior (``one_coin``, or ``two_coin``: then
    ``sensitivities[j]`` and ``specificities[j]`` are the coins ``labelers[j]`` was weighed
    with, and ``accuracies[j]`` their mean). A one-coin record has no coins, and its stream
    entry no ``sensitivities`` or ``specificities`` field; a record written before models
    were named has no ``model`` field and reads as ``one_coin``.

    The frame's JPEG stays in Redis after finalisation: ``image_key`` names it and
    ``image_expires_at`` says until when it is kept (its TTL; ``finalise.lua`` fills it in,
    NaN when the image was already gone). An exporter deletes it once it is on disk.
    ``file_name`` is the image's name in a folder source (empty for video and cameras).
    """

    frame_id: str
    label: int
    p1: float
    confidence: float
    reason: str
    method: str
    labelers: list[str]
    labels: list[int]
    accuracies: list[float]
    finalised_at: float
    source: str = ""
    frame_index: int = -1
    opened_at: float = math.nan
    file_name: str = ""
    image_key: str = ""
    image_expires_at: float = math.nan
    entry_id: str = ""
    model: str = "one_coin"
    sensitivities: list[float] = field(default_factory=list)
    specificities: list[float] = field(default_factory=list)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def to_fields(self) -> Fields:
        out: Fields = {
            "frame_id": self.frame_id,
            "source": self.source,
            "frame_index": "" if self.frame_index < 0 else str(self.frame_index),
            "opened_at": "" if math.isnan(self.opened_at) else repr(self.opened_at),
            "n_labels": str(self.n_labels),
            "label": str(self.label),
            "confidence": repr(self.confidence),
            "p1": repr(self.p1),
            "reason": self.reason,
            "method": self.method,
            "labelers": dumps_list(self.labelers),
            "labels": dumps_list(self.labels),
            "accuracies": dumps_list(self.accuracies),
            "finalised_at": repr(self.finalised_at),
            "file_name": self.file_name,
            "image_key": self.image_key,
            "image_expires_at": "" if math.isnan(self.image_expires_at)
            else repr(self.image_expires_at),
            "model": self.model,
        }  # fmt: skip
        if self.sensitivities or self.specificities:
            out["sensitivities"] = dumps_list(self.sensitivities)
            out["specificities"] = dumps_list(self.specificities)
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[str, str], entry_id: str = "") -> FinalRecord:
        _required(fields, "frame_id", "label", "reason")
        try:
            lists = {name: json.loads(fields.get(name) or "[]") for name in _JSON_LISTS}
        except ValueError as err:
            raise RecordError(f"final record {fields['frame_id']}: bad JSON list: {err}") from None
        return cls(
            frame_id=fields["frame_id"],
            label=_int(fields, "label"),
            p1=_float(fields, "p1"),
            confidence=_float(fields, "confidence"),
            reason=fields["reason"],
            method=fields.get("method", ""),
            labelers=[str(x) for x in lists["labelers"]],
            labels=[int(x) for x in lists["labels"]],
            accuracies=[float(x) for x in lists["accuracies"]],
            finalised_at=_float(fields, "finalised_at"),
            source=fields.get("source", ""),
            frame_index=_int(fields, "frame_index"),
            opened_at=_float(fields, "opened_at"),
            file_name=fields.get("file_name", ""),
            image_key=fields.get("image_key", ""),
            image_expires_at=_float(fields, "image_expires_at"),
            entry_id=entry_id,
            model=fields.get("model") or "one_coin",
            sensitivities=[float(x) for x in lists["sensitivities"]],
            specificities=[float(x) for x in lists["specificities"]],
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (``tail --json``, the README's consumer); NaN becomes null."""
        out = asdict(self)
        out["n_labels"] = self.n_labels
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


@dataclass(frozen=True)
class DeadLetter:
    """Something that could not be applied, with why: ``kind`` is ``label`` or ``frame``."""

    kind: str
    reason: str
    payload: str
    entry_id: str = ""
    at: float = field(default_factory=time.time)

    @classmethod
    def of(
        cls, kind: str, reason: str, payload: Mapping[str, Any], entry_id: str = ""
    ) -> DeadLetter:
        return cls(kind, reason, json.dumps(dict(payload))[:MAX_LABEL_PAYLOAD], entry_id)

    def to_fields(self) -> Fields:
        return {"kind": self.kind, "reason": self.reason, "payload": self.payload,
                "entry_id": self.entry_id, "at": repr(self.at)}  # fmt: skip

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> DeadLetter:
        _required(fields, "kind", "reason")
        return cls(fields["kind"], fields["reason"], fields.get("payload", ""),
                   fields.get("entry_id", ""), _float(fields, "at"))  # fmt: skip


State = Literal["out", "late", "failed", "done"]


@dataclass(frozen=True)
class RequestState:
    """One labeler's request on one frame, as stored in the frame's requests hash.

    Encoded ``out:<request id>`` (outstanding), ``late:<request id>`` (lease expired; a late
    label is still applied once), ``failed:<request id>`` (the worker reported a failure) or
    ``done:<labels-stream entry id>`` (applied; a redelivered entry is recognised).
    """

    state: State
    ref: str
    """The request id, or for ``done`` the labels-stream entry id."""

    def encode(self) -> str:
        return f"{self.state}:{self.ref}"

    @classmethod
    def decode(cls, value: str) -> RequestState:
        state, sep, ref = value.partition(":")
        if not sep or state not in ("out", "late", "failed", "done"):
            raise RecordError(f"not a request state: {value[:60]!r}")
        return cls(state, ref)  # type: ignore[arg-type]

    @property
    def outstanding(self) -> bool:
        return self.state == "out"

    @staticmethod
    def count_outstanding(encoded: Iterable[str]) -> int:
        """How many of these encoded states are outstanding: the count that decoding each
        gives (one that does not decode is not outstanding), without a record per request."""
        return len([value for value in encoded if value.startswith("out:")])
