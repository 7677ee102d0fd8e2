"""FrameState: one frame's state decoded from Redis replies (no server needed)."""

from __future__ import annotations

import json
import math

from gtx_stream.core.records import RequestState
from gtx_stream.store.frames import SETTLED, FrameState

META = {"state": "open", "source": "cam", "frame_index": "7", "opened_at": "12.5", "n_labels": "2"}
LABELS = [json.dumps(["a", 1]), json.dumps(["b", 0])]
REQUESTS = {"a": "done:1-0", "b": "done:2-0", "c": "out:r-c", "d": "late:r-d", "e": "failed:r-e"}


def _flat(mapping: dict[str, str]) -> list[bytes]:
    return [x.encode() for kv in mapping.items() for x in kv]


def test_decodes_dicts_and_flat_lists_alike() -> None:
    from_dicts = FrameState.decode("f", META, LABELS, REQUESTS)
    from_lua = FrameState.decode("f", _flat(META), [x.encode() for x in LABELS], _flat(REQUESTS))
    assert from_dicts == from_lua
    assert from_dicts is not None
    assert from_dicts.labels == (("a", 1), ("b", 0))
    assert from_dicts.requests["c"] == RequestState("out", "r-c")
    assert from_dicts.requests["e"] == RequestState("failed", "r-e")


def test_counts_and_fields() -> None:
    f = FrameState.decode("f", META, LABELS, REQUESTS)
    assert f is not None
    assert (f.is_open, f.n_labels, f.outstanding) == (True, 2, 1)  # a late request is not
    assert (f.source, f.frame_index, f.opened_at, f.order_key) == ("cam", 7, 12.5, "f")
    bare = FrameState.decode("g", {"state": "final", "task": "t9"}, [], {})
    assert bare is not None and not bare.is_open
    assert (bare.frame_index, math.isnan(bare.opened_at), bare.order_key) == (-1, True, "t9")


def test_a_gone_frame_is_none() -> None:
    assert FrameState.decode("f", {}, [], {}) is None
    assert FrameState.decode("f", [], [], []) is None


def test_whoever_was_asked_is_not_asked_again() -> None:
    f = FrameState.decode("f", META, LABELS, REQUESTS)
    assert f is not None
    assert f.not_asked(["a", "c", "d", "e", "x", "y"]) == ["x", "y"]


def test_allowed_labelers_are_the_registered_ones_a_task_names() -> None:
    f = FrameState.decode("f", {**META, "eligible": json.dumps(["b", "z"])}, [], {})
    assert f is not None and f.allowed(["a", "b", "c"]) == ["b"]
    garbage = FrameState.decode("f", {**META, "eligible": "not json"}, [], {})
    assert garbage is not None and garbage.allowed(["a"]) == []  # ends exhausted, no crash


def test_a_request_state_that_does_not_decode_counts_as_settled() -> None:
    f = FrameState.decode("f", META, [], {"a": "out", "b": b"\xff"})
    assert f is not None
    assert f.requests == {"a": SETTLED, "b": SETTLED} and f.outstanding == 0


def test_labels_parse_alike_each_time_and_escaped_labeler_ids_too() -> None:
    odd = r'["a\/b \u00e9\"q",0]'  # escapes cjson writes, or another JSON encoder
    labels = [*LABELS, odd]
    first = FrameState.decode("f", META, labels, {})
    again = FrameState.decode("f", META, [x.encode() for x in labels], {})
    assert first is not None and again is not None
    assert first.labels == again.labels == (("a", 1), ("b", 0), ('a/b \u00e9"q', 0))


def test_a_frame_built_from_records_equals_the_decoded_one() -> None:
    decoded = FrameState.decode("f", META, LABELS, REQUESTS)
    built = FrameState("f", META, (("a", 1), ("b", 0)),
                       {lab: RequestState.decode(v) for lab, v in REQUESTS.items()})  # fmt: skip
    assert built == decoded
    assert (built.outstanding, built.n_labels, built.is_open) == (1, 2, True)
    assert built.not_asked(["a", "x"]) == decoded.not_asked(["a", "x"]) == ["x"]
