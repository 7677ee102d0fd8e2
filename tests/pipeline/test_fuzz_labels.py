"""Generated label messages against a real aggregator (hypothesis, a real Redis).

Each example starts from the same state: labelers A, B, C, D registered (Z is not); frame
``src-0`` open, with A asked (outstanding), B asked (lease expired: late), D asked and already
answered, C never asked; frame ``src-1`` finalised (A was asked about it). Then a batch of
generated entries (any field set; names and values as text or bytes, not always UTF-8; label
values of every kind; huge ones; frame ids open, finalised, unknown or arbitrary; labelers
asked, late, answered, never asked, unknown or arbitrary) goes through one
``Aggregator.step``. The step must not raise; a rejected entry must change no frame (hash,
labels list, requests hash), create no key and leave one dead letter; an accepted entry (A or B
on the open frame, label 0 or 1, the first of its labeler) must change its frame exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gtx_stream.pipeline.aggregate.aggregator import GROUP, Aggregator
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import load_script
from tests.aggregator_harness import Capture, make_aggregator, open_frame, register

KEYS = Keys("gtx")
OPEN, FINAL = "src-0", "src-1"
REGISTERED = {"A": 0.7, "B": 0.7, "C": 0.7, "D": 0.7}
MAIN_FIELDS = ("frame_id", "labeler", "label")


def _s(x: Any) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def _ask(raw: redis.Redis, fid: str, labeler: str) -> None:
    k = KEYS
    member = f"{fid}|{labeler}"
    status = load_script(raw, "ask")(
        keys=[k.frame(fid), k.frame_requests(fid), k.budget, k.leases, k.load, k.stats],
        args=[labeler, 0, 10, repr(time.time() + 3600), member],
    )
    assert _s(status) == "ok"


def _setup(raw: redis.Redis) -> Aggregator:
    """The starting state described in the module docstring (registered, none live)."""
    raw.flushdb()
    k = KEYS
    register(raw, k, REGISTERED, live=False)  # nobody live: the aggregator asks no one more
    open_frame(raw, k, 0, 1)
    open_frame(raw, k, 1, 0)
    for labeler in ("A", "B", "D"):
        _ask(raw, OPEN, labeler)
    _ask(raw, FINAL, "A")
    agg = make_aggregator(raw, k, Capture(), tau=0.999999, kappa=10, max_inflight=10,
                          sweep_seconds=3600.0)  # fmt: skip
    raw.xadd(k.labels, {"frame_id": OPEN, "labeler": "D", "label": "1"})
    agg.step(block_ms=1)
    assert raw.llen(k.frame_labels(OPEN)) == 1
    expired = load_script(raw, "expire_request")(
        keys=[k.frame_requests(OPEN), k.leases, k.load, k.stats], args=["B", f"{OPEN}|B"]
    )
    assert _s(expired) == "expired"
    final = load_script(raw, "finalise")(
        keys=[k.frame(FINAL), k.image(FINAL), k.open_frames, k.final, k.stats],
        args=[FINAL, 0, "label", "0", "reason", "test"],
    )
    assert _s(final).count("-") == 1  # a stream entry id
    return agg


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
extra_names = (st.text(min_size=1, max_size=10) | st.binary(min_size=1, max_size=10)).filter(
    lambda n: _s(n) not in MAIN_FIELDS
)


@st.composite
def entries(draw: st.DrawFn) -> dict[Any, Any]:
    fields: dict[Any, Any] = draw(st.dictionaries(extra_names, any_value, max_size=3))
    # the same name given as text and as bytes is one field in Redis: keep one of them
    fields = {_s(k): v for k, v in fields.items()}
    if draw(st.booleans()):  # a good label, then perhaps one field changed or left out
        fields["frame_id"] = OPEN
        fields["labeler"] = draw(st.sampled_from(["A", "B"]))
        fields["label"] = draw(st.sampled_from(["0", "1"]))
        changed = draw(st.sampled_from([None, *MAIN_FIELDS]))
        if changed is not None:
            kinds = dict(zip(MAIN_FIELDS, (frame_ids, labelers, label_values), strict=True))
            value = draw(st.none() | kinds[changed])
            if value is None:
                del fields[changed]
            else:
                fields[changed] = value
    else:
        for name, values in zip(MAIN_FIELDS, (frame_ids, labelers, label_values), strict=True):
            if draw(st.integers(0, 9)):  # present nine times in ten
                fields[name] = draw(values)
    if draw(st.integers(0, 7)) == 0:  # now and then a huge one
        where = draw(st.sampled_from(["pad", *MAIN_FIELDS]))
        fields[where] = draw(st.sampled_from(["x", "é", "0"])) * draw(st.integers(5000, 70000))
    return fields or {"empty": ""}


def _accepted(fields: dict[Any, Any], answered: set[str]) -> bool:
    """The aggregator's contract: who may label what (payload limits well away: < 2k, > 5k)."""
    text = {_s(k): _s(v) for k, v in fields.items()}
    if sum(len(k) + len(v) for k, v in text.items()) > 4096:
        return False
    return (
        text.get("frame_id") == OPEN
        and text.get("labeler") in ("A", "B")
        and text["labeler"] not in answered
        and text.get("label") in ("0", "1")
    )


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
    agg = _setup(raw)
    k = KEYS
    before = {fid: _frame_state(raw, fid) for fid in (OPEN, FINAL)}
    keys_before = set(raw.keys("*"))
    ids = [_s(raw.xadd(k.labels, fields)) for fields in batch]

    agg.step(block_ms=1)  # must not raise

    answered: set[str] = set()
    accepted: list[tuple[str, str, str]] = []  # (labeler, label, entry id)
    rejected: list[str] = []
    for fields, entry_id in zip(batch, ids, strict=True):
        if _accepted(fields, answered):
            labeler, label = _s(fields["labeler"]), _s(fields["label"])
            answered.add(labeler)
            accepted.append((labeler, label, entry_id))
        else:
            rejected.append(entry_id)

    event(f"accepted {len(accepted)}, rejected {len(rejected)}")
    meta, labels, requests = before[OPEN]
    if accepted:
        meta = {**meta, b"n_labels": str(int(meta[b"n_labels"]) + len(accepted)).encode()}
        labels = labels + [f'["{lab}",{val}]'.encode() for lab, val, _ in accepted]
        requests = {**requests, **{lab.encode(): f"done:{e}".encode() for lab, _, e in accepted}}
    assert _frame_state(raw, OPEN) == (meta, labels, requests)
    assert _frame_state(raw, FINAL) == before[FINAL]  # a finalised frame never changes
    for lab, _, _ in accepted:
        assert raw.zscore(k.leases, f"{OPEN}|{lab}") is None  # its lease is settled

    dead = [{_s(a): _s(b) for a, b in f.items()} for _, f in cast(Any, raw.xrange(k.dead))]
    assert sorted(d["entry_id"] for d in dead) == sorted(rejected)
    assert all(d["kind"] == "label" and d["reason"] for d in dead)
    assert set(raw.keys("*")) - keys_before <= ({k.dead.encode()} if rejected else set())
    assert raw.xpending(k.labels, GROUP)["pending"] == 0  # every entry handled and acknowledged

    # and the same entries once more (a worker's retry): nothing changes, all refused
    after = _frame_state(raw, OPEN)
    for fields in batch:
        raw.xadd(k.labels, fields)
    agg.step(block_ms=1)
    assert _frame_state(raw, OPEN) == after
    assert raw.xlen(k.dead) == len(rejected) + len(batch)
