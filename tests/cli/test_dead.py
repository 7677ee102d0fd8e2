"""`gtx-stream dead`: dead letters by reason, and `--requeue` of the labels that apply now.

The labels are dead-lettered by a real aggregator (tests/aggregator_harness.py) against a
real Redis; re-queued labels are applied by it like any other (invariant 3 still holds).
"""

from __future__ import annotations

import json

import pytest
import redis

from gtx_stream.core.records import DeadLetter, LabelEntry, LabelRequest, RequestState
from gtx_stream.ops.dead import why_not
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.pipeline.aggregate.intake import DEAD_REASONS
from gtx_stream.store.dead_letters import read_dead, requeue_dead
from gtx_stream.store.frames import FrameState
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from tests.aggregator_harness import (
    Capture,
    dead_records,
    final_records,
    make_aggregator,
    open_frame,
    post_label,
    register,
    run_until_idle,
)
from tests.cli.conftest import Cli

ACC = {"alice": 0.9, "bob": 0.8, "carol": 0.85}
UNKNOWN = DEAD_REASONS["unknown_labeler"]


def _asked(r: redis.Redis, keys: Keys, n_frames: int = 1) -> tuple[Aggregator, Capture]:
    """Frames opened and a first request made for each (captured, not answered)."""
    register(r, keys, ACC)
    for i in range(n_frames):
        open_frame(r, keys, i, truth=1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.999, kappa=3, seed=5)
    agg.step(block_ms=1)
    assert len(cap.pending) == n_frames
    return agg, cap


def _refused_as_unknown(r: redis.Redis, keys: Keys, agg: Aggregator, cap: Capture) -> LabelRequest:
    """The first captured request's label arrives while its labeler is not registered."""
    req = cap.pending.pop(0)
    r.hdel(keys.labelers, req.labeler_id)
    post_label(r, keys, req, ACC)
    agg.step(block_ms=1)
    assert [d["reason"] for d in dead_records(r, keys)] == [UNKNOWN]
    return req


def test_a_label_refused_before_its_labeler_was_registered_is_requeued_and_applied_once(
    r: redis.Redis, keys: Keys, cli: Cli
) -> None:
    agg, cap = _asked(r, keys)
    req = _refused_as_unknown(r, keys, agg, cap)

    # still unregistered: left where it is, with why
    code, out, _ = cli("dead", "--requeue")
    assert code == 0
    assert out.splitlines()[:2] == ["re-queued 0 of 1 dead letters",
                                    "not re-queued 1: labeler still not registered"]  # fmt: skip
    assert r.xlen(keys.dead) == 1

    register(r, keys, {req.labeler_id: ACC[req.labeler_id]})
    n_labels = r.xlen(keys.labels)
    code, out, _ = cli("dead", "--requeue", "--json")
    assert code == 0
    doc = json.loads(out)
    [moved] = doc["requeued"]
    assert doc["not_requeued"] == []
    assert moved["reason"] == UNKNOWN and moved["payload"]["labeler"] == req.labeler_id
    assert r.xlen(keys.dead) == 0 and r.xlen(keys.labels) == n_labels + 1
    assert int(r.hget(keys.stats, "requeued") or 0) == 1
    # the entry on the labels stream is the refused one, re-encoded by LabelEntry
    [(new_id, fields)] = r.xrange(keys.labels, moved["labels_id"], moved["labels_id"])
    assert LabelEntry.from_fields(fields) == LabelEntry.from_fields(moved["payload"])

    # a second run finds nothing to re-queue
    code, out, _ = cli("dead", "--requeue")
    assert (code, out.strip()) == (0, "re-queued 0 of 0 dead letters")

    # the aggregator applies it like any other label: once, for its request
    agg.step(block_ms=1)
    state = r.hget(keys.frame_requests(req.frame_id), req.labeler_id)
    assert state == RequestState("done", new_id).encode()
    run_until_idle(agg, r, keys, cap, ACC)
    [record] = final_records(r, keys)
    assert json.loads(record["labelers"]).count(req.labeler_id) == 1
    assert dead_records(r, keys) == []


def test_requeue_leaves_what_would_be_refused_again_each_with_why(
    r: redis.Redis, keys: Keys, cli: Cli
) -> None:
    agg, cap = _asked(r, keys, n_frames=2)
    first = _refused_as_unknown(r, keys, agg, cap)
    # a labeler never asked about the frame, refused while unregistered, registered since
    r.xadd(keys.labels, LabelEntry(first.frame_id, "dave", "made-up", 1).to_fields())
    # a made-up request id of a labeler that is asked about the other frame
    other = cap.pending[0]
    r.hdel(keys.labelers, other.labeler_id)
    r.xadd(keys.labels, LabelEntry(other.frame_id, other.labeler_id, "made-up", 1).to_fields())
    # garbage: refused for good
    r.xadd(keys.labels, {"frame_id": first.frame_id, "labeler": "alice", "label": "7"})
    agg.step(block_ms=1)
    assert len(dead_records(r, keys)) == 4
    register(r, keys, {**ACC, "dave": 0.7})

    code, out, _ = cli("dead", "--requeue", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [m["payload"]["labeler"] for m in doc["requeued"]] == [first.labeler_id]
    whys = {g["why"]: g["count"] for g in doc["not_requeued"]}
    assert whys == {
        "labeler was never asked about the frame": 1,
        "request id is not the labeler's request on the frame": 1,
        "refused for good (only unknown-labeler and unknown-frame refusals can change)": 1,
    }
    assert r.xlen(keys.dead) == 3
    # applied, then the same entry re-queued by hand once more: a duplicate, refused for good
    agg.step(block_ms=1)
    [(_, again)] = r.xrevrange(keys.labels, count=1)
    r.xadd(keys.labels, again)
    agg.step(block_ms=1)
    assert DEAD_REASONS["duplicate"] in [d["reason"] for d in dead_records(r, keys)]


def test_the_script_moves_a_dead_letter_once(r: redis.Redis, keys: Keys) -> None:
    entry = LabelEntry("src-0", "alice", "rid-1", 1, 1700000000.5)
    letter = DeadLetter.of("label", UNKNOWN, entry.to_fields(), "1-0")
    dead_id = str(r.xadd(keys.dead, letter.to_fields()))  # type: ignore[arg-type]
    runner = ScriptRunner(r)
    moved = runner.run_one(requeue_dead(keys, dead_id, entry))
    assert moved is not None and r.xlen(keys.dead) == 0
    assert runner.run_one(requeue_dead(keys, dead_id, entry)) is None  # gone: nothing written
    assert [LabelEntry.from_fields(f) for _, f in r.xrange(keys.labels)] == [entry]


def test_listing_groups_by_reason_newest_first_and_filters(
    r: redis.Redis, keys: Keys, cli: Cli
) -> None:
    for i in range(5):
        letter = DeadLetter.of("label", UNKNOWN, {"frame_id": f"f-{i}", "labeler": "x"}, f"{i}-1")
        r.xadd(keys.dead, letter.to_fields())  # type: ignore[arg-type]
    r.xadd(keys.dead, DeadLetter.of("frame", "frame state expired", {"frame_id": "f-9"})
           .to_fields())  # type: ignore[arg-type]  # fmt: skip
    r.xadd(keys.dead, {"kind": "label", "reason": "payload too large", "payload": '{"frame_'})

    code, out, _ = cli("dead", "--limit", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "dead letters  7  (prefix gtx)"
    assert lines[1] == f"     5  {UNKNOWN}  (5 labels)"  # the kind's count, not a label value
    assert '"f-4"' in lines[2] and '"f-3"' in lines[3]  # the newest two of five
    assert lines[4].startswith("     1  frame state expired  (1 frame)")

    code, out, _ = cli("dead", "--reason", "nothing like it")
    # before, 'dead letters  0' alone, with 7 dead letters there
    assert out == "dead letters  0 of 7 with a reason containing 'nothing like it'  (prefix gtx)\n"
    code, out, _ = cli("dead", "--json", "--reason", "LARGE", "--limit", "0")
    doc = json.loads(out)
    assert doc["dead_letters"] == 1 and doc["complete"] is True
    assert (doc["read"], doc["reason_contains"]) == (7, "LARGE")
    [group] = doc["reasons"]
    assert group["reason"] == "payload too large"
    assert group["newest"][0]["payload"] == '{"frame_'  # cut: shown as it is

    scan = read_dead(r, keys, limit=3)
    assert len(scan.letters) == 3 and not scan.complete
    assert scan.letters[-1].letter.reason == "payload too large"  # the newest, last


def _frame(state: str = "open", **requests: str) -> FrameState:
    meta = {"state": state, "source": "s", "frame_index": "0", "opened_at": "1.0"}
    return FrameState("f", meta, (), {k: RequestState.decode(v) for k, v in requests.items()})


LABEL = LabelEntry("f", "alice", "rid", 1)
FAILURE = LabelEntry.failure("f", "alice", "rid", "boom")


@pytest.mark.parametrize(
    ("entry", "frame", "registered", "why"),
    [
        (LABEL, _frame(alice="out:rid"), True, None),
        (LABEL, _frame(alice="late:rid"), True, None),
        (FAILURE, _frame("final", alice="late:rid"), True, None),
        (LABEL, None, True, "frame does not exist"),
        (LABEL, _frame(alice="out:rid"), False, "labeler still not registered"),
        (LABEL, _frame("final", alice="out:rid"), True, "frame is not open any more"),
        (LABEL, _frame(), True, "labeler was never asked about the frame"),
        (LABEL, _frame(alice="done:1-0"), True, "labeler already labeled the frame"),
        (LABEL, _frame(alice="failed:rid"), True, "its request was reported failed"),
        (LABEL, _frame(alice="out:other"), True,
         "request id is not the labeler's request on the frame"),
        (LabelEntry("f", "alice", "", 1), _frame(alice="out:"), True,
         "request id is not the labeler's request on the frame"),
    ],
    ids=["out", "late", "failure-of-final-frame", "no-frame", "unregistered", "final",
         "never-asked", "done", "failed", "other-request", "no-request-id"],
)  # fmt: skip
def test_why_not_follows_apply_labels(
    entry: LabelEntry, frame: FrameState | None, registered: bool, why: str | None
) -> None:
    assert why_not(entry, frame, registered) == why
