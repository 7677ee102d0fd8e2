"""The wire records: each survives its own encoding, and a malformed entry is one reason."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest

from gtx_stream.core.records import (
    MAX_LABEL_PAYLOAD,
    DeadLetter,
    FinalRecord,
    FrameOpened,
    LabelEntry,
    LabelRequest,
    RecordError,
    RequestState,
    decode_fields,
    dumps_list,
    text,
)


def test_a_label_and_a_failure_survive_their_fields() -> None:
    label = LabelEntry("f-1", "alice", "rid", 1, 12.5)
    assert label.to_fields() == {
        "frame_id": "f-1", "labeler": "alice", "request_id": "rid", "labeled_at": "12.5",
        "label": "1",
    }  # fmt: skip
    assert LabelEntry.from_fields(label.to_fields()) == label
    failure = LabelEntry.failure("f-1", "bob", "rid2", "backend raised", at=3.0)
    assert failure.failed and failure.to_fields()["status"] == "failed"
    assert LabelEntry.from_fields(failure.to_fields()) == failure


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"labeler": "a", "label": "1"}, "missing field: frame_id"),
        ({"frame_id": "f", "label": "1"}, "missing field: labeler"),
        ({"frame_id": "f", "labeler": "a"}, "missing field: label"),
        ({"frame_id": "f", "labeler": "a", "label": "7"}, "label must be 0 or 1, got '7'"),
        ({"frame_id": "f", "labeler": "a", "status": "failed"}, "missing field: request_id"),
        ({"frame_id": "f", "labeler": "a", "status": "ok"}, "status must be 'failed' or absent"),
        ({"frame_id": "f", "labeler": "a", "label": "1", "labeled_at": "soon"},
         "labeled_at must be a number"),
        ({"frame_id": "f", "labeler": "a", "label": "1", "x": "y" * MAX_LABEL_PAYLOAD},
         "payload too large"),
    ],
    ids=["no-frame", "no-labeler", "no-label", "bad-label", "failure-without-request",
         "bad-status", "bad-time", "huge"],
)  # fmt: skip
def test_a_malformed_label_entry_says_why(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        LabelEntry.from_fields(fields)


def test_a_final_record_survives_its_fields() -> None:
    rec = FinalRecord(
        frame_id="s-3", label=0, p1=0.01, confidence=0.99, reason="confident", method="gtx",
        labelers=["a", "b"], labels=[0, 0], accuracies=[0.9, 0.8], finalised_at=20.0,
        source="line3.mp4", frame_index=3, opened_at=19.0,
    )  # fmt: skip
    fields = rec.to_fields()
    assert fields["n_labels"] == "2" and fields["labels"] == "[0, 0]"
    back = FinalRecord.from_fields(fields, "1-0")
    assert back == FinalRecord(**{**rec.__dict__, "entry_id": "1-0"})
    assert back.to_json()["n_labels"] == 2


def test_a_two_coin_final_record_carries_its_coins() -> None:
    rec = FinalRecord("s-4", 1, 0.97, 0.97, "confident", "gtx", ["a", "b"], [1, 1], [0.8, 0.75],
                      20.0, model="two_coin", sensitivities=[0.9, 0.6],
                      specificities=[0.7, 0.9])  # fmt: skip
    fields = rec.to_fields()
    assert fields["model"] == "two_coin" and fields["sensitivities"] == "[0.9, 0.6]"
    assert FinalRecord.from_fields(fields) == rec


def test_a_one_coin_final_record_names_its_model_and_has_no_coins() -> None:
    rec = FinalRecord("s-5", 0, 0.1, 0.9, "kappa", "gtx", ["a"], [0], [0.9], 20.0)
    fields = rec.to_fields()
    assert fields["model"] == "one_coin"
    assert "sensitivities" not in fields and "specificities" not in fields
    assert FinalRecord.from_fields(fields) == rec


def test_a_final_record_from_before_models_reads_as_one_coin() -> None:
    old = {k: v for k, v in FinalRecord("s-6", 1, 0.9, 0.9, "kappa", "gtx", ["a"], [1], [0.9],
                                        20.0).to_fields().items() if k != "model"}  # fmt: skip
    back = FinalRecord.from_fields(old)
    assert back.model == "one_coin" and back.sensitivities == back.specificities == []


def test_a_final_record_without_frame_meta_has_json_nulls() -> None:
    rec = FinalRecord("t", 1, 0.6, 0.6, "kappa", "mv", [], [], [], 1.0)
    back = FinalRecord.from_fields(rec.to_fields())
    assert back.frame_index == -1 and math.isnan(back.opened_at)
    assert back.to_json()["opened_at"] is None


def test_a_final_record_with_bad_json_says_so() -> None:
    with pytest.raises(RecordError, match="bad JSON list"):
        FinalRecord.from_fields({"frame_id": "f", "label": "1", "reason": "kappa",
                                 "labels": "[1,"})  # fmt: skip


def test_other_records_survive_their_encoding() -> None:
    assert FrameOpened.from_fields(FrameOpened("f").to_fields()) == FrameOpened("f")
    req = LabelRequest("alice", "f", "rid", "gtx")
    assert LabelRequest.from_job_args(req.to_job_args()) == req
    with pytest.raises(RecordError):
        LabelRequest.from_job_args(["f", "alice", "rid"])
    letter = DeadLetter.of("label", "unknown frame", {"frame_id": "x"}, "2-0")
    assert DeadLetter.from_fields(letter.to_fields()) == letter


@pytest.mark.parametrize("value", ["out:r1", "late:r1", "failed:r1", "done:5-0"])
def test_request_states_round_trip(value: str) -> None:
    state = RequestState.decode(value)
    assert state.encode() == value
    assert state.outstanding == value.startswith("out:")


def test_counting_outstanding_states_counts_what_decoding_each_would() -> None:
    values = ["out:r1", "out:", "late:r2", "failed:r3", "done:5-0", "out", "outr", "asked:r", ""]
    decoded = 0
    for value in values:
        with contextlib.suppress(RecordError):
            decoded += RequestState.decode(value).outstanding
    assert RequestState.count_outstanding(values) == decoded == 2


@pytest.mark.parametrize("value", ["out", "asked:r1", ""])
def test_an_unknown_request_state_is_refused(value: str) -> None:
    with pytest.raises(RecordError):
        RequestState.decode(value)


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    assert text(b"a\xffb") == "a\ufffdb"
    assert decode_fields({b"k": b"\xff", "s": "t"}) == {"k": "\ufffd", "s": "t"}


@pytest.mark.parametrize(
    "values",
    [
        ["a", 'b"\u00e9\n'],
        [1, 0],
        [0.1, 1e-05, math.nan, math.inf],
        [],
        [True, None],
        [np.float64(0.25), np.int64(1).item()],
    ],  # fmt: skip
    ids=["strings", "ints", "floats", "empty", "json-literals", "numpy-float"],
)
def test_the_final_record_lists_are_encoded_as_json_dumps_would(values: list[object]) -> None:
    assert dumps_list(values) == json.dumps(values)


def test_a_list_json_cannot_encode_is_refused_as_json_dumps_refuses_it() -> None:
    with pytest.raises(TypeError):
        dumps_list([object()])
