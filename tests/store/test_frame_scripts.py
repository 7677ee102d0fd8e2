"""The Lua scripts through their typed wrappers, against a real Redis.

Each test drives one script's contract: what it stores, what it answers, what it refuses.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
import redis

from gtx_stream.core.records import (
    DeadLetter,
    FinalRecord,
    LabelEntry,
    RequestState,
    decode_fields,
)
from gtx_stream.store import frame_scripts as fs
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from tests.aggregator_harness import open_frame, register

BACKOFF = fs.BackoffPolicy(after_failures=3, first_seconds=1.0, max_seconds=4.0)


@pytest.fixture
def run(r: redis.Redis) -> ScriptRunner:
    return ScriptRunner(r)


def _ask(run: ScriptRunner, keys: Keys, fid: str, labeler: str, rid: str, **kw: Any) -> str:
    args: dict[str, Any] = {"n_labels": 0, "max_inflight": 5, "deadline": time.time() + 60}
    return run.run_one(
        fs.ask(keys, frame_id=fid, labeler=labeler, request_id=rid, **{**args, **kw})
    )


def _apply(run: ScriptRunner, keys: Keys, *entries: LabelEntry, now: float = 0.0) -> fs.Applied:
    pairs = [(f"{i + 1}-0", e) for i, e in enumerate(entries)]
    return run.run_one(fs.apply_labels(keys, pairs, BACKOFF, now or time.time()))


def _state(r: redis.Redis, keys: Keys, fid: str, labeler: str) -> RequestState:
    return RequestState.decode(r.hget(keys.frame_requests(fid), labeler))


def _spent(r: redis.Redis, keys: Keys) -> int:
    return int(r.hget(keys.budget, "spent") or 0)


def test_ask_stores_the_request_id_and_counts_only_outstanding_requests(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8, "b": 0.8, "c": 0.8})
    fid = open_frame(r, keys, 0, 1)
    assert _ask(run, keys, fid, "a", "rid-a", max_inflight=1) == "ok"
    assert _state(r, keys, fid, "a") == RequestState("out", "rid-a")
    assert _ask(run, keys, fid, "b", "rid-b", max_inflight=1) == "inflight"
    assert _ask(run, keys, fid, "a", "rid-a2") == "asked"  # never twice the same labeler
    _apply(run, keys, LabelEntry.failure(fid, "a", "rid-a", "boom"))
    # a failed request is not outstanding: the frame may be asked of someone else
    assert _ask(run, keys, fid, "b", "rid-b", max_inflight=1) == "ok"
    assert run.run_one(fs.expire_request(keys, frame_id=fid, labeler="b"))
    assert _state(r, keys, fid, "b") == RequestState("late", "rid-b")  # keeps its request id
    assert _ask(run, keys, fid, "c", "rid-c", max_inflight=1) == "ok"


@pytest.mark.parametrize(
    ("request_id", "status"),
    [("rid-a", "applied"), ("made-up", "mismatch"), ("", "mismatch"), ("rid-b", "mismatch")],
    ids=["its-request", "made-up", "none", "another-labelers"],
)
def test_a_label_is_applied_only_for_its_request(
    r: redis.Redis, keys: Keys, run: ScriptRunner, request_id: str, status: str
) -> None:
    register(r, keys, {"a": 0.8, "b": 0.8})
    fid = open_frame(r, keys, 0, 1)
    _ask(run, keys, fid, "a", "rid-a")
    _ask(run, keys, fid, "b", "rid-b")
    applied = _apply(run, keys, LabelEntry(fid, "a", request_id, 1))
    assert applied.statuses == [status]
    assert r.llen(keys.frame_labels(fid)) == (status == "applied")
    if status == "mismatch":
        assert _state(r, keys, fid, "a") == RequestState("out", "rid-a")  # still outstanding
        assert applied.frames == {}


def test_one_call_counts_each_labelers_labels_and_refuses_an_unknown_one_each_time(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8, "b": 0.8})
    fids = [open_frame(r, keys, i, 1) for i in range(3)]
    for fid in fids:
        for labeler in ("a", "b"):
            _ask(run, keys, fid, labeler, f"{fid}-{labeler}")
    r.hset(keys.stats, mapping={"labels_applied": 5, "labels:a": 2})
    f0, f1, f2 = fids
    entries = [LabelEntry(f0, "a", f"{f0}-a", 1), LabelEntry(f0, "x", "r", 1),
               LabelEntry(f1, "a", f"{f1}-a", 0), LabelEntry(f1, "b", "no", 1),
               LabelEntry(f2, "b", f"{f2}-b", 1), LabelEntry(f2, "x", "r", 0)]  # fmt: skip
    assert _apply(run, keys, *entries).statuses == [
        "applied", "unknown_labeler", "applied", "mismatch", "applied", "unknown_labeler"
    ]  # fmt: skip
    stats = r.hgetall(keys.stats)
    assert (stats["labels_applied"], stats["labels:a"], stats["labels:b"]) == ("8", "4", "1")
    assert "labels:x" not in stats


def test_apply_labels_returns_the_budget_left_after_the_batch(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8, "b": 0.8})
    fid = open_frame(r, keys, 0, 1)
    _ask(run, keys, fid, "a", "rid-a")
    _ask(run, keys, fid, "b", "rid-b")
    assert _apply(run, keys, LabelEntry(fid, "a", "rid-a", 1)).budget_left is None  # no limit
    r.hset(keys.budget, "limit", 10)
    # b's failure gives its label back: 10 - (2 - 1)
    assert _apply(run, keys, LabelEntry.failure(fid, "b", "rid-b", "x")).budget_left == 9
    r.hdel(keys.budget, "spent")
    assert _apply(run, keys, LabelEntry(fid, "a", "rid-a", 1)).budget_left == 10


def test_a_late_label_is_applied_with_its_request_id(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8})
    fid = open_frame(r, keys, 0, 1)
    _ask(run, keys, fid, "a", "rid-a")
    assert run.run_one(fs.expire_request(keys, frame_id=fid, labeler="a"))
    assert _apply(run, keys, LabelEntry(fid, "a", "other", 1)).statuses == ["mismatch"]
    applied = _apply(run, keys, LabelEntry(fid, "a", "rid-a", 1))
    assert applied.statuses == ["applied"]
    state = applied.frames[fid]
    assert state is not None and state.labels == (("a", 1),) and state.outstanding == 0


@pytest.mark.parametrize("lease", ["outstanding", "late"])
def test_a_failure_settles_its_request_once_and_gives_the_budget_back(
    r: redis.Redis, keys: Keys, run: ScriptRunner, lease: str
) -> None:
    register(r, keys, {"a": 0.8, "b": 0.8})
    fid = open_frame(r, keys, 0, 1)
    r.hset(keys.budget, "limit", 10)
    _ask(run, keys, fid, "a", "rid-a")
    _ask(run, keys, fid, "b", "rid-b")
    if lease == "late":
        assert run.run_one(fs.expire_request(keys, frame_id=fid, labeler="a"))
    assert _spent(r, keys) == 2
    failure = LabelEntry.failure(fid, "a", "rid-a", "backend error")
    applied = _apply(run, keys, failure)
    assert applied.statuses == ["failed"]
    assert _state(r, keys, fid, "a") == RequestState("failed", "rid-a")
    assert _spent(r, keys) == 1  # given back: the budget counts labels, never failures
    assert r.hget(keys.load, "a") == "0"
    assert r.zscore(keys.leases, f"{fid}|a") is None
    state = applied.frames[fid]
    assert state is not None and state.outstanding == 1 and state.n_labels == 0
    # the same failure again (redelivered, or posted twice): nothing more happens
    again = _apply(run, keys, failure, LabelEntry.failure(fid, "a", "rid-a", "retry"))
    assert again.statuses == ["redelivered", "redelivered"]
    assert _spent(r, keys) == 1 and r.hget(keys.stats, "requests_failed") == "1"
    # a label for the failed request, or a failure naming another request, is refused
    late = _apply(
        run, keys, LabelEntry(fid, "a", "rid-a", 1), LabelEntry.failure(fid, "b", "x", "")
    )
    assert late.statuses == ["after_failure", "mismatch"]
    assert r.llen(keys.frame_labels(fid)) == 0 and _spent(r, keys) == 1


def test_a_failure_for_a_finalised_frame_gives_the_budget_back(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8})
    fid = open_frame(r, keys, 0, 1)
    _ask(run, keys, fid, "a", "rid-a")
    record = FinalRecord(fid, 1, 0.5, 0.5, "exhausted", "gtx", [], [], [], time.time())
    assert run.run_one(fs.finalise(keys, [record])) != [None]
    assert _apply(run, keys, LabelEntry(fid, "a", "rid-a", 1)).statuses == ["finalised"]
    assert _apply(run, keys, LabelEntry.failure(fid, "a", "rid-a", "x")).statuses == ["failed"]
    assert _spent(r, keys) == 0


def test_backoff_after_failures_in_a_row_doubles_and_a_good_label_resets_it(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8})
    fids = [open_frame(r, keys, i, 1) for i in range(7)]
    for i, fid in enumerate(fids):
        _ask(run, keys, fid, "a", f"rid-{i}")
    now = 1000.0
    waits = []
    for i, fid in enumerate(fids[:6]):
        _apply(run, keys, LabelEntry.failure(fid, "a", f"rid-{i}", "x"), now=now)
        until = r.hget(keys.backoff, "a")
        waits.append(None if until is None else float(until) - now)
        assert r.hget(keys.failures, "a") == str(i + 1)
    # backed off from the third failure in a row: 1 s, doubling, at most 4 s
    assert waits == [None, None, 1.0, 2.0, 4.0, 4.0]
    assert _apply(run, keys, LabelEntry(fids[6], "a", "rid-6", 1)).statuses == ["applied"]
    assert r.hget(keys.failures, "a") is None and r.hget(keys.backoff, "a") is None


def test_open_frame_keeps_a_reserve_of_budget_for_each_open_frame(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    def open_(index: int) -> str:
        return run.run_one(fs.open_frame(
            keys, frame_id=f"src-{index}", frame_index=index, source="test", source_id="src",
            opened_at=time.time(), ttl=60, max_open_frames=100, reserve_per_frame=5, jpeg=b"j",
        ))  # fmt: skip

    r.hset(keys.budget, mapping={"limit": 14, "spent": 0})
    assert open_(0) == "opened"  # 14 left: 5 for this frame
    assert open_(1) == "opened"  # 10 for two
    assert open_(2) == "full"  # 14 < 15: the end of the budget finishes the open frames
    assert not r.exists(keys.frame("src-2"))
    r.hset(keys.budget, "spent", 10)
    r.zrem(keys.open_frames, "src-0", "src-1")
    assert open_(2) == "opened"  # nothing open: opened on what is left (4)
    assert open_(3) == "full"
    r.hset(keys.budget, "spent", 14)
    assert open_(3) == "budget"  # spent: the ingester stops
    r.delete(keys.budget)
    assert open_(3) == "opened"  # no limit, no reserve


def _labeled_by_a(r: redis.Redis, keys: Keys, run: ScriptRunner) -> str:
    """A frame that labeler "a" (accuracy 0.8) was asked about and labeled 1."""
    register(r, keys, {"a": 0.8})
    fid = open_frame(r, keys, 0, 1)
    _ask(run, keys, fid, "a", "rid-a")
    _apply(run, keys, LabelEntry(fid, "a", "rid-a", 1))
    return fid


def test_finalise_publishes_the_record_as_given_once(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    fid = _labeled_by_a(r, keys, run)
    meta = r.hgetall(keys.frame(fid))
    record = FinalRecord(fid, 1, 0.8, 0.8, "exhausted", "gtx", ["a"], [1], [0.8], time.time(),
                         source=meta["source"], frame_index=0,
                         opened_at=float(meta["opened_at"]))  # fmt: skip
    stale = FinalRecord(**{**record.__dict__, "labels": [], "labelers": [], "accuracies": []})
    assert run.run_one(fs.finalise(keys, [stale])) == [None]  # decided on 0 labels: stale
    (entry_id,) = run.run_one(fs.finalise(keys, [record]))
    assert entry_id is not None
    assert run.run_one(fs.finalise(keys, [record])) == [None]  # not open any more
    ((got_id, fields),) = r.xrange(keys.final)
    got = FinalRecord.from_fields(decode_fields(fields), got_id)
    # the image is kept with its TTL, and the record says until when
    ttl = r.pttl(keys.image(fid)) / 1000
    assert abs(got.image_expires_at - (record.finalised_at + ttl)) < 2.0
    assert got == FinalRecord(
        **{**record.__dict__, "entry_id": entry_id, "image_expires_at": got.image_expires_at}
    )
    assert fields["opened_at"] == meta["opened_at"]  # the frame's own text, unchanged
    assert r.hget(keys.frame(fid), "state") == "final"
    assert r.exists(keys.image(fid)) and r.zcard(keys.open_frames) == 0


def test_finalise_keeps_the_image_and_expires_the_frame_keys_after_the_grace(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    fid = _labeled_by_a(r, keys, run)
    image_ttl = r.ttl(keys.image(fid))
    record = FinalRecord(fid, 1, 0.8, 0.8, "exhausted", "gtx", ["a"], [1], [0.8], time.time())
    assert run.run_one(fs.finalise(keys, [record], grace_seconds=50)) != [None]
    for key in (keys.frame(fid), keys.frame_labels(fid), keys.frame_requests(fid)):
        assert 0 < r.ttl(key) <= 50, key
    assert r.ttl(keys.image(fid)) > 50 and r.ttl(keys.image(fid)) <= image_ttl
    r.delete(keys.image(fid))
    fid2 = open_frame(r, keys, 1, 1)
    r.delete(keys.image(fid2))  # gone before finalisation: no expiry in the record
    record2 = FinalRecord(fid2, 1, 0.5, 0.5, "exhausted", "gtx", [], [], [], time.time())
    assert run.run_one(fs.finalise(keys, [record2])) != [None]
    last = FinalRecord.from_fields(decode_fields(r.xrange(keys.final)[-1][1]))
    assert last.frame_id == fid2 and math.isnan(last.image_expires_at)


def test_finalise_answers_for_each_frame_of_one_call_on_its_own(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8})
    fids = [open_frame(r, keys, i, 1) for i in range(4)]
    for fid in fids:
        _ask(run, keys, fid, "a", f"rid-{fid}")
        _apply(run, keys, LabelEntry(fid, "a", f"rid-{fid}", 1))
    now = time.time()

    def record(fid: str, labels: list[int]) -> FinalRecord:
        return FinalRecord(fid, 1, 0.8, 0.8, "exhausted", "gtx", ["a"] * len(labels), labels,
                           [0.8] * len(labels), now)  # fmt: skip

    assert run.run_one(fs.finalise(keys, [record(fids[3], [1])])) != [None]
    # fids[1] decided on no label (stale), fids[3] final already, fids[0] twice in one call
    batch = [record(fids[0], [1]), record(fids[1], []), record(fids[2], [1]),
             record(fids[3], [1]), record(fids[0], [1])]  # fmt: skip
    answers = run.run_one(fs.finalise(keys, batch))
    assert [a is not None for a in answers] == [True, False, True, False, False]
    final = [FinalRecord.from_fields(decode_fields(f), i) for i, f in r.xrange(keys.final)]
    assert [(f.frame_id, f.entry_id) for f in final[1:]] == [
        (fids[0], answers[0]), (fids[2], answers[2])
    ]  # fmt: skip
    assert r.hget(keys.stats, "frames_finalised") == "3"
    assert r.hget(keys.frame(fids[1]), "state") == "open" and r.zcard(keys.open_frames) == 1
    assert run.run_one(fs.finalise(keys, [])) == []


def test_finalise_calls_split_a_long_list_and_records_must_share_their_fields(
    keys: Keys,
) -> None:
    records = [FinalRecord(f"f{i}", 1, 0.8, 0.8, "kappa", "gtx", [], [], [], 1.0)
               for i in range(2 * fs.MAX_FINALS_PER_CALL + 1)]  # fmt: skip
    calls = fs.finalise_calls(keys, records)
    assert [(len(c.keys) - 3) // 4 for c in calls] == [fs.MAX_FINALS_PER_CALL] * 2 + [1]
    with pytest.raises(ValueError, match="at most"):
        fs.finalise(keys, records)
    odd = FinalRecord("g", 1, 0.8, 0.8, "kappa", "gtx", [], [], [], 1.0)
    object.__setattr__(odd, "to_fields", lambda: {"frame_id": "g"})
    with pytest.raises(ValueError, match="other fields"):
        fs.finalise(keys, [records[0], odd])


def test_drop_frame_writes_one_dead_letter_record(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    fid = open_frame(r, keys, 0, 1)
    assert not run.run_one(fs.drop_frame(keys, fid, "why"))  # still there
    r.delete(keys.frame(fid))
    assert run.run_one(fs.drop_frame(keys, fid, "why"))
    assert not run.run_one(fs.drop_frame(keys, fid, "why"))
    ((_, fields),) = r.xrange(keys.dead)
    letter = DeadLetter.from_fields(decode_fields(fields))
    assert (letter.kind, letter.reason, json.loads(letter.payload)) == (
        "frame", "why", {"frame_id": fid}
    )  # fmt: skip


def test_runner_loads_scripts_again_after_a_flush(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.8, "b": 0.8})
    fids = [open_frame(r, keys, i, 1) for i in range(2)]
    r.script_flush()
    calls = [fs.ask(keys, frame_id=f, labeler="a", request_id=f"r{f}", n_labels=0,
                    max_inflight=1, deadline=time.time() + 60) for f in fids]  # fmt: skip
    assert run.run(calls) == ["ok", "ok"]  # NOSCRIPT, loaded, sent again: each ran once
    assert run.run(calls) == ["asked", "asked"]
    assert int(r.hget(keys.budget, "spent")) == 2
