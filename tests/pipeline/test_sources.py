"""The crowd-dataset and truth-file sources read through core.datasets: same checks, same lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.pipeline.ingest.sources import SourceError, TaskSource, read_truth_csv


def _folder(tmp_path: Path, answers: str, truth: str = "task,truth\n10,1\n11,0\n") -> Path:
    (tmp_path / "truth.csv").write_text(truth)
    (tmp_path / "answers.csv").write_text(answers)
    return tmp_path


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            "task,worker,label\n10,w1,1\n10,w1,0\n",
            r"answers.csv:3: worker w1 labeled task 10 twice",
        ),
        ("task,worker,label\n10,w1,1\n12,w2,0\n", r"answers.csv:3: task 12 has no row in"),
        ("task,worker,label\n10,w1,x\n", r"answers.csv:2: label must be 0 or 1"),
        ("task,worker\n10,w1\n", r"answers.csv: expected header task,worker,label"),
    ],
    ids=["duplicate-pair", "task-without-truth", "bad-label", "no-label-column"],
)
def test_a_task_folder_the_replay_refuses_is_refused(
    tmp_path: Path, answers: str, message: str
) -> None:
    source = TaskSource(_folder(tmp_path, answers))
    with pytest.raises(SourceError, match=message) as info:
        source.open()
    assert "\n" not in str(info.value)


def test_a_task_folder_keeps_file_order(tmp_path: Path) -> None:
    source = TaskSource(_folder(tmp_path, "task,worker,label\n11,w2,0\n10,w3,1\n10,w1,1\n"))
    source.open()
    frames = list(source.frames(lambda index, t: True))
    assert [(f.fields["task"], f.fields["truth"], f.fields["eligible"]) for f in frames] == [
        ("10", "1", '["w3", "w1"]'),
        ("11", "0", '["w2"]'),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frame_index,truth\n0,2\n", r"truth.csv:2: truth must be 0 or 1"),
        ("frame_index,truth\n0,1\n0,0\n", r"truth.csv:3: frame 0 has a second truth row"),
        ("frame_index,truth\nfirst,1\n", r"truth.csv:2: frame_index must be a whole number"),
        ("index,truth\n0,1\n", r"truth.csv: expected header frame_index,truth"),
    ],
)
def test_a_bad_truth_file_is_one_line_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "truth.csv"
    path.write_text(text)
    with pytest.raises(SourceError, match=message) as info:
        read_truth_csv(path)
    assert "\n" not in str(info.value)


def test_a_truth_file(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    path.write_text("frame_index,truth\n0,1\n\n2, 0\n")
    assert read_truth_csv(path) == {0: 1, 2: 0}
