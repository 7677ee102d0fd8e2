"""``gtx-stream labelers``: what it says beside its tables (the store: tests/store/test_params)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.cli import main


def test_assess_says_how_many_answers_had_no_truth_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, answers to tasks missing from TRUTH were dropped without a word."""
    answers, truth = tmp_path / "answers.csv", tmp_path / "truth.csv"
    truth.write_text("task,truth\n1,1\n2,0\n")
    answers.write_text("task,worker,label\n1,w1,1\n2,w1,0\n3,w1,1\n3,w2,0\n4,w2,1\n2,w2,0\n")
    assert main(["labelers", "assess", str(answers), str(truth), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert err == f"note: 3 answers to 2 tasks without a row in {truth} not counted\n"
    assert out.splitlines()[1].split()[:2] == ["w1", "0.7500"]  # (2 + 1) / (2 + 2)
    truth.write_text("task,truth\n1,1\n2,0\n3,1\n4,0\n")
    assert main(["labelers", "assess", str(answers), str(truth), "--dry-run"]) == 0
    assert capsys.readouterr().err == ""
