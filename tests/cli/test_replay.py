"""``gtx-stream replay``: what it refuses and notes before a run (the replay itself:
tests/offline/test_replay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.cli import main

# w1 always right, w2 always wrong, on 10 tasks; no assessment set
TRUTH = "task,truth\n" + "".join(f"t{i},{i % 2}\n" for i in range(10))
ANSWERS = "task,worker,label\n" + "".join(
    f"t{i},w1,{i % 2}\nt{i},w2,{1 - i % 2}\n" for i in range(10)
)


def _folder(tmp_path: Path, **extra: str) -> Path:
    folder = tmp_path / "plain"
    folder.mkdir()
    for name, text in {"answers.csv": ANSWERS, "truth.csv": TRUTH, **extra}.items():
        (folder / name).write_text(text)
    return folder


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["replay", *argv, "--trials", "1", "--quiet"])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("fraction", ["0", "0.01"])
def test_no_gold_task_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fraction: str
) -> None:
    """Before, every worker weighed 0.5 and GTX and SV scored like coin flips, silently."""
    folder = _folder(tmp_path)
    rc, out, err = _run([str(folder), "--assess-fraction", fraction], capsys)
    assert rc == 2 and out == ""
    assert err == (
        f"gtx-stream replay: error: plain: it has no assessment set, and --assess-fraction "
        f"{fraction} draws none of its 10 tasks as gold, so every worker would weigh 0.5 and "
        "GTX and SV would only break ties: give a larger --assess-fraction, or --estimate em\n"
    )
    # EM learns the accuracies from the labels: no gold needed
    rc, out, _ = _run([str(folder), "--assess-fraction", fraction, "--estimate", "em"], capsys)
    assert rc == 0 and out.startswith("replay plain: 10 tasks")
    rc, _, _ = _run([str(folder), "--assess-fraction", "0.2"], capsys)
    assert rc == 0


def test_gold_no_worker_answered_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(
        tmp_path,
        **{"assessment_answers.csv": "task,worker,label\nq1,w9,1\n",
           "assessment_truth.csv": "task,truth\nq1,1\n"},
    )  # fmt: skip
    rc, _, err = _run([str(folder)], capsys)
    assert rc == 2
    assert err.startswith(
        "gtx-stream replay: error: plain: no worker answered an item of its assessment set, "
    )


def test_assess_fraction_beside_an_assessment_set_is_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, it was ignored without a word."""
    folder = _folder(
        tmp_path,
        **{"assessment_answers.csv": "task,worker,label\nq1,w1,1\nq1,w2,0\n",
           "assessment_truth.csv": "task,truth\nq1,1\n"},
    )  # fmt: skip
    rc, out, err = _run([str(folder), "--assess-fraction", "0.3"], capsys)
    assert rc == 0 and "scored tasks: 10;" in out
    assert err == (
        "note: plain has an assessment set, so --assess-fraction is not used (every task of "
        "truth.csv is scored)\n"
    )
    rc, _, err = _run([str(folder)], capsys)
    assert rc == 0 and err == ""
