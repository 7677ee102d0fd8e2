"""Dead letters by reason, and the labels among them that can be applied now
(``gtx-stream dead``, ``--requeue``).

A label refused because its labeler was not registered (or its frame did not exist) is
refused for something that can change: once the labeler is registered, the same entry would
be applied. Re-queueing adds the entry back to the labels stream (``requeue_dead.lua``: added
and dead letter deleted in one step) and the aggregator applies it like any other, with every
check of ``apply_labels.lua`` again: a label for a request already answered or failed is
refused again (invariant 3). Only letters that would be applied now are re-queued, so a run
never sends a letter round in a loop; every other says why not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from gtx_stream.core.records import LabelEntry, RecordError
from gtx_stream.pipeline.aggregate.intake import DEAD_REASONS
from gtx_stream.store.dead_letters import StoredLetter, requeue_dead
from gtx_stream.store.frames import FrameState, read_frames
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.shards import stored_keys

REQUEUABLE = frozenset({DEAD_REASONS["unknown_labeler"], DEAD_REASONS["unknown_frame"]})
"""Reasons that can stop being true: every other refusal would be made again."""

FOR_GOOD = "refused for good (only unknown-labeler and unknown-frame refusals can change)"


@dataclass(frozen=True)
class ReasonGroup:
    """The dead letters of one reason: how many, of which kinds, and the newest few."""

    reason: str
    count: int
    kinds: dict[str, int]
    newest: list[StoredLetter]
    """Newest first."""


def with_reason(letters: Sequence[StoredLetter], text: str) -> list[StoredLetter]:
    """Those whose reason contains ``text`` (case-insensitive; empty: all)."""
    needle = text.casefold()
    return [s for s in letters if needle in s.letter.reason.casefold()]


def by_reason(letters: Sequence[StoredLetter], limit: int) -> list[ReasonGroup]:
    """Letters (oldest first) grouped by reason, most frequent first, ``limit`` newest each
    (0: all)."""
    groups: dict[str, list[StoredLetter]] = {}
    for stored in letters:
        groups.setdefault(stored.letter.reason, []).append(stored)
    out = []
    for reason, members in groups.items():
        newest = members[::-1][:limit] if limit else members[::-1]
        kinds = dict(Counter(s.letter.kind for s in members))
        out.append(ReasonGroup(reason, len(members), kinds, newest))
    return sorted(out, key=lambda g: (-g.count, g.reason))


def why_not(entry: LabelEntry, frame: FrameState | None, registered: bool) -> str | None:
    """Why ``apply_labels.lua`` would refuse ``entry`` again now; None when it would apply it.

    The checks are the script's, in its order; the script decides again when the entry comes
    back, so a state that changes in between costs one more dead letter, never a wrong label.
    """
    if frame is None:
        return "frame does not exist"
    if not registered:
        return "labeler still not registered"
    req = frame.requests.get(entry.labeler)
    matches = bool(entry.request_id) and req is not None and req.ref == entry.request_id
    pending = matches and req is not None and req.state in ("out", "late")
    if entry.failed and pending:
        return None  # a failure report settles its request whether or not the frame is open
    if not frame.is_open:
        return "frame is not open any more"
    if req is None:
        return "labeler was never asked about the frame"
    if req.state == "done":
        return "labeler already labeled the frame"
    if pending:
        return None
    if req.state == "failed" and matches:
        return "its request was reported failed"
    return "request id is not the labeler's request on the frame"


@dataclass(frozen=True)
class Outcome:
    """What ``--requeue`` did with one dead letter."""

    stored: StoredLetter
    entry: LabelEntry | None
    new_id: str = ""
    """Its labels-stream id when re-queued."""
    why: str = ""
    """Why not, when not re-queued."""

    @property
    def requeued(self) -> bool:
        return bool(self.new_id)


def requeue(client: redis.Redis, keys: Keys, letters: Sequence[StoredLetter]) -> list[Outcome]:
    """Re-queue, oldest first, each of ``letters`` that the aggregator would apply now; the
    others come back with why not. Three round trips, whatever the number of letters."""
    keys = stored_keys(client, keys)
    outcomes: dict[tuple[str, str], Outcome] = {}  # by dead stream and id
    candidates: list[tuple[StoredLetter, LabelEntry]] = []
    for stored in letters:
        if stored.letter.kind == "frame":
            outcomes[stored.stream, stored.dead_id] = Outcome(
                stored, None, why="a dropped frame: nothing to apply"
            )
        elif stored.letter.reason not in REQUEUABLE:
            outcomes[stored.stream, stored.dead_id] = Outcome(stored, None, why=FOR_GOOD)
        else:
            try:
                candidates.append((stored, stored.label_entry()))
            except RecordError as err:
                outcomes[stored.stream, stored.dead_id] = Outcome(
                    stored, None, why=f"not a label entry: {err}"
                )
    frames = read_frames(client, keys, sorted({e.frame_id for _, e in candidates}))
    registered = _registered(client, keys, [e for _, e in candidates])
    todo: list[tuple[StoredLetter, LabelEntry]] = []
    for stored, entry in candidates:
        known = (keys.of_frame(entry.frame_id).script_labelers, entry.labeler) in registered
        why = why_not(entry, frames[entry.frame_id], known)
        if why is None:
            todo.append((stored, entry))
        else:
            outcomes[stored.stream, stored.dead_id] = Outcome(stored, entry, why=why)
    # each entry goes back to its frame's shard (on a Redis Cluster: the shard of the dead
    # stream it sits on, its frame's; the script touches that shard's keys only)
    calls = [requeue_dead(keys.shard_of_stream(stored.stream) if keys.cluster else keys,
                          stored.dead_id, entry) for stored, entry in todo]  # fmt: skip
    for (stored, entry), new_id in zip(todo, ScriptRunner(client).run(calls), strict=True):
        outcomes[stored.stream, stored.dead_id] = (
            Outcome(stored, entry, new_id=new_id)
            if new_id
            else Outcome(stored, entry, why="re-queued by another run meanwhile")
        )
    return [outcomes[s.stream, s.dead_id] for s in letters]


def _registered(
    client: redis.Redis, keys: Keys, entries: Sequence[LabelEntry]
) -> set[tuple[str, str]]:
    """(hash, labeler) for each entry's labeler found in the hash ``apply_labels.lua`` checks
    for its frame (:attr:`Keys.script_labelers`: the labelers hash, or on a Redis Cluster the
    frame's shard's copy of it, which lags the hash where a registration was cut short
    between its two writes). One pipeline, one HMGET per hash."""
    wanted: dict[str, set[str]] = {}
    for e in entries:
        wanted.setdefault(keys.of_frame(e.frame_id).script_labelers, set()).add(e.labeler)
    if not wanted:
        return set()
    asked = {key: sorted(labs) for key, labs in wanted.items()}
    pipe = client.pipeline(transaction=False)
    for key, labs in asked.items():
        pipe.hmget(key, labs)
    return {(key, lab)
            for (key, labs), found in zip(asked.items(), pipe.execute(), strict=True)
            for lab, value in zip(labs, found, strict=True) if value is not None}  # fmt: skip


def not_requeued(outcomes: Sequence[Outcome], limit: int) -> list[tuple[str, int, list[Outcome]]]:
    """``(why, how many, the newest limit of them)`` of the letters left where they are, most
    frequent why first (limit 0: all)."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if not o.requeued:
            groups.setdefault(o.why, []).append(o)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [(why, len(g), g[::-1][:limit] if limit else g[::-1]) for why, g in ordered]
