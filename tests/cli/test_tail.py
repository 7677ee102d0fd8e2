"""`gtx-stream tail`: final records decoded by ``core.records.FinalRecord``, --count checked."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.core.records import FinalRecord, text
from gtx_stream.store.keys import Keys

RECORDS = [
    FinalRecord(
        frame_id="cam-0", label=1, p1=0.995, confidence=0.995, reason="confident", method="gtx",
        labelers=["a", "b"], labels=[1, 1], accuracies=[0.9, 0.85], finalised_at=1700000001.5,
        source="/videos/cam.avi", frame_index=0, opened_at=1700000000.25,
    ),
    # no frame index and no opening time (a frame opened by a client): null in JSON
    FinalRecord(
        frame_id="task-7", label=0, p1=0.3, confidence=0.7, reason="kappa", method="mv",
        labelers=["c"], labels=[0], accuracies=[0.8], finalised_at=1700000002.0,
    ),
]  # fmt: skip


@pytest.mark.parametrize("count", ["-1", "-5", "x"])
def test_count_refuses_what_is_not_a_count(capsys: pytest.CaptureFixture[str], count: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(["tail", "--count", count])
    assert done.value.code == 2
    assert "argument --count" in capsys.readouterr().err


@pytest.fixture
def final_stream(
    r: redis.Redis, keys: Keys, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    monkeypatch.setenv("GTX_REDIS__URL", redis_url)
    return [str(r.xadd(keys.final, rec.to_fields())) for rec in RECORDS]  # type: ignore[arg-type]


def test_json_is_the_records_to_json(
    final_stream: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = [
        dataclasses.replace(rec, entry_id=entry_id).to_json()
        for rec, entry_id in zip(RECORDS, final_stream, strict=True)
    ]
    assert printed == expected
    assert printed[1]["frame_index"] == -1 and printed[1]["opened_at"] is None


def test_text_lines_and_count(final_stream: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--count", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "cam-0  label=1  confidence=0.9950  labels=2  reason=confident"
    ]
    assert main(["tail", "--from", final_stream[0]]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "task-7  label=0  confidence=0.7000  labels=1  reason=kappa"
    ]


def test_a_malformed_entry_is_skipped_with_one_line(
    final_stream: list[str], r: redis.Redis, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = text(r.xadd(keys.final, {"frame_id": "broken", "labels": "[1"}))
    after = r.xadd(keys.final, RECORDS[0].to_fields())  # type: ignore[arg-type]
    assert main(["tail", "--from", final_stream[-1]]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == ["cam-0  label=1  confidence=0.9950  labels=2  reason=confident"]
    assert out.err.strip().splitlines() == [
        f"gtx-stream tail: entry {bad} skipped: missing field: label"
    ], after


@pytest.mark.parametrize("start", ["xyz", "$", "12-", "-1"])
def test_from_refuses_what_is_not_a_stream_id(
    capsys: pytest.CaptureFixture[str], start: str
) -> None:
    """Before, Redis said 'Invalid stream ID specified as stream command argument' (exit 1)."""
    with pytest.raises(SystemExit) as done:
        main(["tail", "--from", start])
    assert done.value.code == 2
    said = capsys.readouterr().err.splitlines()[-1]
    assert said.endswith(
        f"argument --from: not a stream id (like 1796319689259-0, or 0 for the beginning): "
        f"{start!r}"
    )


def test_nothing_to_show_is_said_on_stderr(
    final_stream: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a wrong prefix or a --from past the end printed nothing at all."""
    assert main(["tail", "--from", final_stream[-1]]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"gtx-stream tail: no finalised frame on gtx:final after {final_stream[-1]}\n"
    monkeypatch.setenv("GTX_REDIS__PREFIX", "elsewhere")
    assert main(["tail"]) == 0
    assert capsys.readouterr().err == "gtx-stream tail: no finalised frame on elsewhere:final\n"
