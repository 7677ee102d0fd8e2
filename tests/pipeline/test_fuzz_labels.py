"""Generated label messages against a real aggregator (hypothesis, a real Redis).

Each example starts from the same state: labelers A, B, C, D registered (Z is not); frame
``src-0`` open, with A asked (outstanding), B asked (lease expired: late), D asked and already
answered, C never asked; frame ``src-1`` finalised (A was asked about it, and its request is
still outstanding). Then a batch of generated entries (any field set; names and values as text
or bytes, not always UTF-8; label values of every kind; huge ones; frame ids open, finalised,
unknown or arbitrary; labelers asked, late, answered, never asked, unknown or arbitrary;
request ids right, of the other frame, made up or missing; labels and failure reports) goes
through one ``Aggregator.step``. The step must not raise; :func:`_expect` is the contract: a
rejected entry must change no frame (hash, labels list, requests hash), create no key and
leave one dead letter; an accepted label (A or B on the open frame with its request's id,
label 0 or 1, the first of its labeler) must change its frame exactly once; an accepted failure
report (A or B with its request's id, on either frame) settles that request once and gives its
label of budget back; a failure report of a request already reported failed changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gtx_stream.core.records import FinalRecord, LabelEntry
from gtx_stream.pipeline.aggregate.aggregator import GROUP, Aggregator
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from tests.aggregator_harness import Capture, make_aggregator, open_frame, register

KEYS = Keys("gtx")
OPEN, FINAL = "src-0", "src-1"
REGISTERED = {"A": 0.7, "B": 0.7, "C": 0.7, "D": 0.7}
MAIN_FIELDS = ("frame_id", "labeler", "label", "request_id", "status")
RID, RID_FINAL = "<rid>", "<rid of src-1>"
"""Placeholders for the request id of the entry's labeler on the open / the finalised frame."""

Requests = dict[tuple[str, str], str]


def _s(x: Any) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def _ask(runner: ScriptRunner, fid: str, labeler: str, requests: Requests) -> None:
    rid = f"rid-{fid}-{labeler}-{time.monotonic_ns()}"
    status = runner.run_one(
        frame_scripts.ask(KEYS, frame_id=fid, labeler=labeler, request_id=rid, n_labels=0,
                          max_inflight=10, deadline=time.time() + 3600)
    )  # fmt: skip
    assert status == "ok"
    requests[(fid, labeler)] = rid


def _setup(raw: redis.Redis) -> tuple[Aggregator, Requests]:
    """The starting state described in the module docstring (registered, none live)."""
    raw.flushdb()
    k = KEYS
    runner = ScriptRunner(raw)
    register(raw, k, REGISTERED, live=False)  # nobody live: the aggregator asks no one more
    open_frame(raw, k, 0, 1)
    open_frame(raw, k, 1, 0)
    requests: Requests = {}
    for labeler in ("A", "B", "D"):
        _ask(runner, OPEN, labeler, requests)
    _ask(runner, FINAL, "A", requests)
    agg = make_aggregator(raw, k, Capture(), tau=0.999999, kappa=10, max_inflight=10,
                          sweep_seconds=3600.0)  # fmt: skip
    good = LabelEntry(OPEN, "D", requests[(OPEN, "D")], 1)
    raw.xadd(k.labels, good.to_fields())  # type: ignore[arg-type]
    agg.step(block_ms=1)
    assert raw.llen(k.frame_labels(OPEN)) == 1
    assert runner.run_one(frame_scripts.expire_request(k, frame_id=OPEN, labeler="B"))
    record = FinalRecord(FINAL, 0, 0.5, 0.5, "test", "gtx", [], [], [], time.time())
    assert runner.run_one(frame_scripts.finalise(k, [record])) != [None]
    return agg, requests


def _frame_state(raw: redis.Redis, fid: str) -> tuple[Any, ...]:
    k = KEYS
    return (
        raw.hgetall(k.frame(fid)),
        raw.lrange(k.frame_labels(fid), 0, -1),
        raw.hgetall(k.frame_requests(fid)),
    )


# --- the generated entries --------------------------------------------------------------------

any_value = st.text(max_size=24) | st.binary(max_size=12)
frame_ids = st.sampled_from([OPEN, FINAL, "src-404", f"{OPEN} ", ""]) | any_value
labelers = st.sampled_from(["A", "B", "C", "D", "Z", "a", ""]) | any_value
label_values = (
    st.sampled_from(["0", "1"])
    | st.sampled_from(["2", "-1", "1.0", " 1", "0 ", "true", "01", "", "１", "\x00"])
    | st.integers(-3, 3).map(str)
    | any_value
)
request_ids = st.sampled_from([RID, RID_FINAL, "made-up", ""]) | any_value
statuses = st.sampled_from(["failed", "", "ok", "FAILED"]) | any_value
extra_names = (st.text(min_size=1, max_size=10) | st.binary(min_size=1, max_size=10)).filter(
    lambda n: _s(n) not in (*MAIN_FIELDS, "reason")
)
KINDS = dict(zip(MAIN_FIELDS, (frame_ids, labelers, label_values, request_ids, statuses),
                 strict=True))  # fmt: skip


@st.composite
def entries(draw: st.DrawFn) -> dict[Any, Any]:
    fields: dict[Any, Any] = draw(st.dictionaries(extra_names, any_value, max_size=3))
    # the same name given as text and as bytes is one field in Redis: keep one of them
    fields = {_s(k): v for k, v in fields.items()}
    if draw(st.booleans()):  # a good label or failure, then perhaps one field changed or left out
        fields["frame_id"] = draw(st.sampled_from([OPEN, OPEN, FINAL]))
        fields["labeler"] = draw(st.sampled_from(["A", "B"]))
        fields["request_id"] = RID_FINAL if fields["frame_id"] == FINAL else RID
        if draw(st.booleans()):
            fields["label"] = draw(st.sampled_from(["0", "1"]))
        else:
            fields["status"] = "failed"
            fields["reason"] = draw(any_value)
        changed = draw(st.sampled_from([None, *MAIN_FIELDS]))
        if changed is not None:
            value = draw(st.none() | KINDS[changed])
            if value is None:
                fields.pop(changed, None)
            else:
                fields[changed] = value
    else:
        for name in MAIN_FIELDS:
            if draw(st.integers(0, 9)) >= (1 if name in ("frame_id", "labeler", "label") else 6):
                fields[name] = draw(KINDS[name])
    if draw(st.integers(0, 7)) == 0:  # now and then a huge one
        where = draw(st.sampled_from(["pad", *MAIN_FIELDS]))
        fields[where] = draw(st.sampled_from(["x", "é", "0"])) * draw(st.integers(5000, 70000))
    return fields or {"empty": ""}


def _with_request_ids(fields: dict[Any, Any], requests: Requests) -> dict[Any, Any]:
    """The entry as XADDed: placeholders replaced by the labeler's real request ids."""
    labeler = _s(fields.get("labeler", ""))
    rid = fields.get("request_id")
    if rid == RID:
        return {**fields, "request_id": requests.get((OPEN, labeler), RID)}
    if rid == RID_FINAL:
        return {**fields, "request_id": requests.get((FINAL, labeler), RID_FINAL)}
    return fields


Outcome = (
    str  # "label", "failure" (accepted), "ignored" (changes nothing, no dead letter), "rejected"
)


def _expect(
    fields: dict[Any, Any], states: dict[tuple[str, str], str], requests: Requests
) -> Outcome:
    """The aggregator's contract for one entry (payload limits well away: < 2k, > 5k); updates
    ``states`` ((frame, labeler) -> out, late, done, failed) as the aggregator must."""
    text = {_s(k): _s(v) for k, v in fields.items()}
    if sum(len(k) + len(v) for k, v in text.items()) > 4096:
        return "rejected"
    fid, labeler = text.get("frame_id", ""), text.get("labeler", "")
    status, rid = text.get("status", ""), text.get("request_id", "")
    failure = status == "failed"
    if not fid or not labeler or status not in ("", "failed"):
        return "rejected"
    if failure and not rid:
        return "rejected"
    if not failure and text.get("label") not in ("0", "1"):
        return "rejected"
    state = states.get((fid, labeler))
    matches = rid != "" and rid == requests.get((fid, labeler))
    if state == "done":
        return "rejected"  # duplicate
    if state == "failed" and failure and matches:
        return "ignored"  # that request's failure was applied already
    if fid not in (OPEN, FINAL) or labeler not in REGISTERED:
        return "rejected"
    if failure and state in ("out", "late") and matches:
        states[(fid, labeler)] = "failed"
        return "failure"
    if fid == FINAL or state is None or not (state in ("out", "late") and matches):
        return "rejected"  # finalised, unsolicited, request mismatch
    states[(fid, labeler)] = "done"
    return "label"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)  # bytes, as the services use
    yield client
    client.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(entries(), min_size=1, max_size=6))
def test_rejected_labels_change_no_frame(raw: redis.Redis, batch: list[dict[Any, Any]]) -> None:
    agg, requests = _setup(raw)
    k = KEYS
    before = {fid: _frame_state(raw, fid) for fid in (OPEN, FINAL)}
    spent_before = int(raw.hget(k.budget, "spent") or 0)
    keys_before = set(raw.keys("*"))
    sent = [_with_request_ids(fields, requests) for fields in batch]
    ids = [_s(raw.xadd(k.labels, fields)) for fields in sent]

    agg.step(block_ms=1)  # must not raise

    states = {(OPEN, "A"): "out", (OPEN, "B"): "late", (OPEN, "D"): "done", (FINAL, "A"): "out"}
    outcomes = [_expect(fields, states, requests) for fields in sent]
    labels_in = [(_s(f["labeler"]), _s(f["label"]), e)
                 for f, e, o in zip(sent, ids, outcomes, strict=True) if o == "label"]  # fmt: skip
    failures = [(_s(f["frame_id"]), _s(f["labeler"]))
                for f, o in zip(sent, outcomes, strict=True) if o == "failure"]  # fmt: skip
    rejected = [e for e, o in zip(ids, outcomes, strict=True) if o == "rejected"]

    event(f"labels {len(labels_in)}, failures {len(failures)}, rejected {len(rejected)}")
    meta, labels, reqs = before[OPEN]
    if labels_in:
        meta = {**meta, b"n_labels": str(int(meta[b"n_labels"]) + len(labels_in)).encode()}
        labels = labels + [f'["{lab}",{val}]'.encode() for lab, val, _ in labels_in]
        reqs = {**reqs, **{lab.encode(): f"done:{e}".encode() for lab, _, e in labels_in}}
    settled = {
        fid: {lab.encode(): f"failed:{requests[(fid, lab)]}".encode()
              for f, lab in failures if f == fid}
        for fid in (OPEN, FINAL)
    }  # fmt: skip
    assert _frame_state(raw, OPEN) == (meta, labels, {**reqs, **settled[OPEN]})
    final_meta, final_labels, final_reqs = before[FINAL]
    # a finalised frame never changes, but for a request of it reported failed
    assert _frame_state(raw, FINAL) == (final_meta, final_labels, {**final_reqs, **settled[FINAL]})
    for lab, _, _ in labels_in:
        assert raw.zscore(k.leases, f"{OPEN}|{lab}") is None  # its lease is settled
    for fid, lab in failures:
        assert raw.zscore(k.leases, f"{fid}|{lab}") is None
    assert int(raw.hget(k.budget, "spent") or 0) == spent_before - len(failures)

    dead = [{_s(a): _s(b) for a, b in f.items()} for _, f in cast(Any, raw.xrange(k.dead))]
    assert sorted(d["entry_id"] for d in dead) == sorted(rejected)
    assert all(d["kind"] == "label" and d["reason"] for d in dead)
    created = ({k.dead.encode()} if rejected else set()) | (
        {k.failures.encode()} if failures else set()
    )
    assert set(raw.keys("*")) - keys_before <= created
    assert raw.xpending(k.labels, GROUP)["pending"] == 0  # every entry handled and acknowledged

    # and the same entries once more (a worker's retry): nothing changes, all refused (a
    # failure report of a request reported failed changes nothing and is no dead letter)
    after = {fid: _frame_state(raw, fid) for fid in (OPEN, FINAL)}
    again = [_expect(fields, states, requests) for fields in sent]
    assert set(again) <= {"rejected", "ignored"}
    for fields in sent:
        raw.xadd(k.labels, fields)
    agg.step(block_ms=1)
    assert {fid: _frame_state(raw, fid) for fid in (OPEN, FINAL)} == after
    assert raw.xlen(k.dead) == len(rejected) + again.count("rejected")
