"""``gtx-stream labelers``: what it says beside its tables (the store: tests/store/test_params)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.cli import main
from gtx_stream.cli.labelers import unknown_ids
from tests.cli.conftest import Cli


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


def test_load_warns_of_ids_the_config_lacks(tmp_path: Path, cli: Cli) -> None:
    """Before, a typo's accuracy was stored without a word, and the count said '1 labeler
    accuracies'."""
    (tmp_path / "config.toml").write_text(
        "".join(f'[[labelers]]\nid = "{lid}"\naccuracy = 0.8\n' for lid in ("alice", "bob"))
    )
    (tmp_path / "acc.csv").write_text("id,accuracy\nalcie,0.92\n")
    code, out, err = cli("labelers", "load", "acc.csv")
    assert code == 0 and out.splitlines()[-1] == "stored 1 labeler accuracy in gtx:labelers"
    assert err == (
        "warning: labeler 'alcie' (did you mean 'alice'?) is not in the config (its labelers: "
        "alice, bob); stored anyway (redis-cli HDEL gtx:labelers ID removes one)\n"
    )
    (tmp_path / "acc.csv").write_text("id,accuracy\nbob,0.7\nalice,0.9\n")
    code, out, err = cli("labelers", "load", "acc.csv")
    assert (code, err) == (0, "") and out.endswith("stored 2 labeler accuracies in gtx:labelers\n")


def test_unknown_ids_are_one_line_however_many() -> None:
    known = [f"w{i}" for i in range(20)]
    assert unknown_ids(["w3", "w19"], known) is None
    assert unknown_ids(["x"], []) == "labeler 'x' is not in the config (it has no labelers)"
    line = unknown_ids([f"q{i}" for i in range(30)], known)
    assert line is not None and "\n" not in line
    assert line.startswith("30 labelers are not in the config (its labelers: w0, w1, w2, w3, "
                           "w4, w5, w6, w7, ... (20 in all)): 'q0', 'q1',")  # fmt: skip
    assert line.endswith(", ... (30 in all)")
