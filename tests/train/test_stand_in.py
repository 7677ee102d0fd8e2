"""``gtx-stream stand-in``: its refusals and notes (the video: tests/offline/test_standin.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["v.avi", "--fps", "0"], "--fps must be above 0, got 0.0"),
        (["v.mp4"], "v.mp4: the stand-in is MJPG in AVI; give a .avi name"),
        (["nodir/v.avi"], "nodir/v.avi: no folder nodir"),
        (["v.avi", "--strip", "nodir/s.png"], "nodir/s.png: no folder nodir"),
    ],
    ids=["fps", "not-avi", "no-folder", "no-strip-folder"],
)
def test_a_bad_argument_is_one_line_and_writes_nothing(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(["stand-in", *args, "--truth", "t.csv", "--frames", "3"]) == 2
    assert capsys.readouterr().err == f"stand-in: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_video_of_one_class_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["stand-in", "v.avi", "--truth", "t.csv", "--frames", "5"]) == 0
    out = capsys.readouterr().out
    assert "5 touching (100%), 1 run\n" in out
    assert "note: every frame is truth 1" in out
    assert main(["stand-in", "w.avi", "--truth", "u.csv", "--frames", "100"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_a_negative_seed_is_a_usage_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, numpy's 'expected non-negative integer' came out as a traceback."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["stand-in", "v.avi", "--truth", "t.csv", "--frames", "3", "--seed", "-1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "gtx-stream stand-in: error: argument --seed: must be 0 or more, got -1"
    )
    assert list(tmp_path.iterdir()) == []
