"""One typed wrapper per Lua script: it alone knows the script's KEYS and ARGV and its reply.

Each function returns a :class:`~gtx_stream.store.scripts.ScriptCall`; a
:class:`~gtx_stream.store.scripts.ScriptRunner` sends any number of them in one round trip::

    runner.run([ask(keys, frame_id=fid, labeler=lab, ...) for ...])  # -> list of AskResult

The contract of each script (its KEYS, ARGV and return values) opens its ``.lua`` file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from gtx_stream.core.records import DeadLetter, FinalRecord, LabelEntry, text
from gtx_stream.store.frames import FrameState
from gtx_stream.store.keys import Keys, lease_member
from gtx_stream.store.scripts import ScriptCall

OpenResult = Literal["opened", "duplicate", "budget", "full"]
AskResult = Literal["ok", "not_open", "stale", "asked", "inflight", "budget", "source_budget"]
ApplyStatus = Literal[
    "applied", "failed", "redelivered", "duplicate", "unknown_frame", "unknown_labeler",
    "finalised", "unsolicited", "mismatch", "after_failure",
]  # fmt: skip


def _str(reply: Any) -> Any:
    return text(reply)


# --- open_frame.lua (ingester, client.submit) ------------------------------------------------


def open_frame(
    keys: Keys,
    *,
    frame_id: str,
    frame_index: int,
    source: str,
    source_id: str,
    opened_at: float,
    ttl: int,
    max_open_frames: int,
    reserve_per_frame: int,
    jpeg: bytes,
    fields: Mapping[str, str] | None = None,
    reserved: bool = False,
    max_open_per_source: int = 0,
    source_share: int = 0,
) -> ScriptCall[OpenResult]:
    """Open one frame; ``reserve_per_frame`` labels of budget are kept for each open frame.

    ``max_open_per_source``: at most this many frames of ``source_id`` open at once (0: only
    ``max_open_frames`` in all bounds it). ``source_share``: "budget" once ``source_id`` has
    spent this many labels (``aggregator.budget_per_source``; 0: no share of its own; on a
    Redis Cluster, once the shard spent what it leased of the share: :func:`share_arg`).

    ``reserved``: the index came from :func:`reserve_index`, so it is this caller's alone and
    need not lie above the source's high-water mark (submitters of one source race).
    """
    extra = [x for pair in (fields or {}).items() for x in pair]
    shard = keys.of_frame(frame_id)  # the opened stream and waiting set of the frame's shard
    if keys.cluster:  # every shard bounds its own open sets (its keys are all in one slot)
        max_open_frames = -(-max_open_frames // keys.shards)
        max_open_per_source = -(-max_open_per_source // keys.shards)
    return ScriptCall(
        "open_frame",
        (keys.frame(frame_id), keys.image(frame_id), shard.open_frames, shard.source(source_id),
         shard.budget, shard.stats, shard.opened, shard.waiting, shard.source_open(source_id)),
        (frame_id, frame_index, source, source_id, repr(opened_at), ttl, max_open_frames, jpeg,
         reserve_per_frame, "reserved" if reserved else "ordered", max_open_per_source,
         share_arg(keys, source_share), *extra),
        _str,
    )  # fmt: skip


# --- reserve_index.lua (client.submit) -----------------------------------------------------


def reserve_index(keys: Keys, source_id: str) -> ScriptCall[int]:
    """The next frame index of ``source_id``, handed out once, above its high-water mark."""
    return ScriptCall("reserve_index", (keys.source_index(source_id),), (), int)


# --- apply_labels.lua ----------------------------------------------------------------------


@dataclass(frozen=True)
class BackoffPolicy:
    """When a labeler that keeps failing is backed off, and for how long."""

    after_failures: int = 3
    first_seconds: float = 1.0
    max_seconds: float = 60.0


@dataclass(frozen=True)
class Applied:
    """What ``apply_labels.lua`` did with each entry, and the frames it touched afterwards."""

    statuses: list[ApplyStatus]
    frames: dict[str, FrameState | None]
    """The state of each frame an entry was applied to (None: its hash is gone)."""
    budget_left: int | None = None
    """Labels of budget left after the batch (None: no limit)."""


def budget_left(limit: Any, spent: Any) -> int | None:
    """Labels of budget left from the ``limit`` and ``spent`` fields of the budget hash."""
    return None if limit is None else int(limit) - int(spent or 0)


def apply_labels(
    keys: Keys,
    entries: Sequence[tuple[str, LabelEntry]],
    backoff: BackoffPolicy,
    now: float,
) -> ScriptCall[Applied]:
    """Apply ``(labels-stream entry id, entry)`` pairs, in order, in one script call."""
    call_keys: list[str] = [keys.script_labelers, keys.leases, keys.load, keys.stats, keys.budget,
                            keys.failures, keys.backoff]  # fmt: skip
    args: list[Any] = [repr(now), backoff.after_failures, repr(backoff.first_seconds),
                       repr(backoff.max_seconds)]  # fmt: skip
    frame_ids: list[str] = []
    for entry_id, entry in entries:
        fid = entry.frame_id
        call_keys += [keys.frame(fid), keys.frame_labels(fid), keys.frame_requests(fid)]
        label = (
            str(entry.label)
            if entry.label is not None
            else ("skipped" if entry.skipped else "failed")
        )
        args += [entry.labeler, label, entry_id, lease_member(fid, entry.labeler),
                 entry.request_id]  # fmt: skip
        frame_ids.append(fid)

    call_keys.append(keys.waiting)  # after the frames' keys (the script's contract)

    def decode(reply: Any) -> Applied:
        statuses, views, (limit, spent) = reply
        state = FrameState.decode
        frames: dict[str, FrameState | None] = {}
        for j in range(0, len(views), 4):
            fid = frame_ids[int(views[j]) - 1]
            frames[fid] = state(fid, views[j + 1], views[j + 2], views[j + 3])
        return Applied(cast(list[ApplyStatus], list(map(text, statuses))), frames,
                       budget_left(limit, spent))  # fmt: skip

    return ScriptCall("apply_labels", tuple(call_keys), tuple(args), decode)


# --- ask.lua -------------------------------------------------------------------------------


MAX_ASKS_PER_CALL = 256
"""Asks one ``ask.lua`` call takes at most (:func:`ask_calls` splits more)."""


@dataclass(frozen=True)
class Ask:
    """One request to record: ask ``labeler`` about ``frame_id`` under ``request_id``."""

    frame_id: str
    labeler: str
    request_id: str
    n_labels: int
    """The frame's labels when the decision to ask was made (else the ask is ``stale``)."""
    deadline: float
    """Unix seconds the request's lease runs out."""


def share_arg(keys: Keys, source_share: int) -> int:
    """What ``ask.lua`` and ``open_frame.lua`` get for a source's share: the share itself on one
    Redis; on a Redis Cluster -1, "what this shard leased of it" (its budget hash's
    ``limit:<source id>``, :mod:`gtx_stream.store.budget_lease`), since a shard's scripts see
    its own spending only."""
    return -1 if keys.cluster and source_share > 0 else source_share


def ask_many(
    keys: Keys,
    asks: Sequence[Ask],
    max_inflight: int,
    source_share: int = 0,
    journal: str = "",
    now: float | None = None,
) -> ScriptCall[list[AskResult]]:
    """Record each request (``out:<request_id>``) and take one label of budget for each, in
    order, in one call; one answer per ask. At most :data:`MAX_ASKS_PER_CALL` asks.
    ``source_share``: labels one source may spend at most (0: no share of its own);
    ``journal``: a token under which the granted requests are also written to ``unsent``
    until they are enqueued (:mod:`gtx_stream.store.unsent`; empty: not written), with
    ``now`` (default: the time of the call) as the entry's time."""
    if len(asks) > MAX_ASKS_PER_CALL:
        raise ValueError(f"{len(asks)} asks in one ask call, at most {MAX_ASKS_PER_CALL}")
    call_keys: list[str] = [keys.budget, keys.leases, keys.load, keys.stats, keys.waiting,
                            keys.unsent]  # fmt: skip
    args: list[Any] = [max_inflight, share_arg(keys, source_share), journal,
                       repr(time.time() if now is None else now)]  # fmt: skip
    for a in asks:
        call_keys += [keys.frame(a.frame_id), keys.frame_requests(a.frame_id)]
        args += [a.labeler, a.n_labels, repr(a.deadline), lease_member(a.frame_id, a.labeler),
                 a.request_id, a.frame_id]  # fmt: skip
    return ScriptCall(
        "ask", tuple(call_keys), tuple(args),
        lambda reply: [cast(AskResult, text(answer)) for answer in reply],
    )  # fmt: skip


def ask_calls(
    keys: Keys,
    asks: Sequence[Ask],
    max_inflight: int,
    source_share: int = 0,
    journal: Sequence[str] = (),
    now: float | None = None,
) -> list[ScriptCall[list[AskResult]]]:
    """The :func:`ask_many` calls for any number of asks, in order; ``journal``: one token
    per call (:func:`calls_needed` of them; none: no journal)."""
    step = MAX_ASKS_PER_CALL
    starts = range(0, len(asks), step)
    tokens = list(journal) or [""] * len(starts)
    if len(tokens) != len(starts):
        raise ValueError(f"{len(tokens)} journal tokens for {len(starts)} ask calls")
    return [ask_many(keys, asks[i : i + step], max_inflight, source_share, token, now)
            for i, token in zip(starts, tokens, strict=True)]  # fmt: skip


def calls_needed(asks: int) -> int:
    """How many ``ask.lua`` calls :func:`ask_calls` makes for ``asks`` asks."""
    return -(-asks // MAX_ASKS_PER_CALL)


def ask(
    keys: Keys,
    *,
    frame_id: str,
    labeler: str,
    request_id: str,
    n_labels: int,
    max_inflight: int,
    deadline: float,
) -> ScriptCall[AskResult]:
    """Record one request (``out:<request_id>``) and take one label of budget for it."""
    many = ask_many(keys, [Ask(frame_id, labeler, request_id, n_labels, deadline)], max_inflight)
    return ScriptCall("ask", many.keys, many.args, lambda reply: many.decode(reply)[0])


# --- expire_request.lua --------------------------------------------------------------------


def expire_request(
    keys: Keys, *, frame_id: str, labeler: str, now: float | None = None
) -> ScriptCall[bool]:
    """Turn an outstanding request whose lease ran out into a late one; True if it was. A
    frame left open with nothing outstanding goes into ``waiting``, due from ``now``
    (default: the time of the call)."""
    now = time.time() if now is None else now
    return ScriptCall(
        "expire_request",
        (keys.frame_requests(frame_id), keys.leases, keys.load, keys.stats,
         keys.frame(frame_id), keys.waiting),
        (labeler, lease_member(frame_id, labeler), frame_id, repr(now)),
        lambda reply: text(reply) == "expired",
    )  # fmt: skip


# --- finalise.lua --------------------------------------------------------------------------


MAX_FINALS_PER_CALL = 256
"""Frames one ``finalise.lua`` call takes at most (a long sweep is split into several calls,
so no single call holds Redis up for long)."""


def finalise(
    keys: Keys, records: Sequence[FinalRecord], grace_seconds: int = 3600
) -> ScriptCall[list[str | None]]:
    """Publish each record once, if its frame is open with ``record.n_labels`` labels.

    The image is kept (its TTL runs on, ``image_expires_at`` is filled in); the frame's own
    keys expire ``grace_seconds`` later. Returns, per record, the final-stream entry id, or
    None when the frame was not open any more or got another label meanwhile (``not_open``,
    ``stale``). The field names go once per call; at most :data:`MAX_FINALS_PER_CALL` records
    (:func:`finalise_calls` splits more).
    """
    if len(records) > MAX_FINALS_PER_CALL:
        raise ValueError(f"{len(records)} records in one finalise call, at most "
                         f"{MAX_FINALS_PER_CALL}")  # fmt: skip
    call_keys: list[str] = [keys.open_frames, keys.final, keys.stats, keys.waiting]
    values: list[Any] = []
    names: tuple[str, ...] = ()
    for record in records:
        fid = record.frame_id
        call_keys += [keys.frame(fid), keys.image(fid), keys.frame_labels(fid),
                      keys.frame_requests(fid)]  # fmt: skip
        fields = record.to_fields()
        if not names:
            names = tuple(fields)
        elif tuple(fields) != names:
            raise ValueError(f"final record of {fid} has other fields than the first")
        values += [fid, record.n_labels, *fields.values()]
    args = (grace_seconds, len(names), *names, *values)
    return ScriptCall("finalise", tuple(call_keys), args, _final_entry_ids)


def finalise_calls(
    keys: Keys, records: Sequence[FinalRecord], grace_seconds: int = 3600
) -> list[ScriptCall[list[str | None]]]:
    """The :func:`finalise` calls for any number of records, in order."""
    step = MAX_FINALS_PER_CALL
    return [finalise(keys, records[i : i + step], grace_seconds)
            for i in range(0, len(records), step)]  # fmt: skip


def _final_entry_ids(reply: Any) -> list[str | None]:
    answers = [text(answer) for answer in reply]
    return [None if answer in ("not_open", "stale") else answer for answer in answers]


# --- drop_frame.lua ------------------------------------------------------------------------


def drop_frame(keys: Keys, frame_id: str, reason: str) -> ScriptCall[bool]:
    """Take a frame whose state expired out of the open set, once, with a dead letter."""
    letter = DeadLetter.of("frame", reason, {"frame_id": frame_id})
    shard = keys.of_frame(frame_id)
    flat = [x for pair in letter.to_fields().items() for x in pair]
    return ScriptCall(
        "drop_frame",
        (keys.frame(frame_id), shard.open_frames, shard.dead, shard.stats, shard.waiting),
        (frame_id, *flat),
        lambda reply: int(reply) == 1,
    )
