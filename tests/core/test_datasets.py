"""The one reader of dataset folders: what it accepts, and a one-line error for what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.core.datasets import (
    DatasetError,
    by_worker,
    load_dataset,
    read_answers,
    read_table,
    read_truth,
)


def _file(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_columns_in_any_order_extra_columns_blank_lines_and_spaces(tmp_path: Path) -> None:
    path = _file(tmp_path, "\ufefflabel, when ,worker,task\n1,9:00,w1 , t1\n\n0,9:01,w2,t1\n")
    assert list(read_table(path, ("task", "worker", "label"))) == [
        (2, ("t1", "w1", "1")),
        (4, ("t1", "w2", "0")),
    ]
    assert read_answers(path) == {"t1": {"w1": 1, "w2": 0}}


def test_answers_keep_file_order_and_turn_round() -> None:
    answers = {"t2": {"b": 1, "a": 0}, "t1": {"a": 1}}
    assert by_worker(answers) == {"b": {"t2": 1}, "a": {"t2": 0, "t1": 1}}
    assert list(by_worker(answers)["a"]) == ["t2", "t1"]


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        ("answers", "task,labeler,label\nt1,a,1\n", r"f.csv: expected header task,worker,label"),
        ("answers", "task,worker,label\nt1,a,2\n", r"f.csv:2: label must be 0 or 1, got '2'"),
        ("answers", "task,worker,label\nt1,a\n", r"f.csv:2: expected 3 fields, got 2"),
        ("answers", "task,worker,label\nt1,a,1\n\nt1,a,0\n", r"f.csv:4: worker a labeled task t1"),
        ("truth", "task,truth\nt1,yes\n", r"f.csv:2: truth must be 0 or 1, got 'yes'"),
        ("truth", "task,truth\nt1,1\nt1,0\n", r"f.csv:3: task t1 has a second truth row"),
        ("truth", "task,truth\n", r"f.csv: no tasks"),
        ("truth", "", r"f.csv: expected header task,truth, got $"),
    ],
)
def test_bad_files_are_one_line_errors_naming_file_and_line(
    tmp_path: Path, reader: str, text: str, message: str
) -> None:
    path = _file(tmp_path, text)
    read = read_answers if reader == "answers" else read_truth
    with pytest.raises(DatasetError, match=message) as info:
        read(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing.csv: no such file"):
        read_truth(tmp_path / "missing.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"task,truth\n\xe9t\xe9,1\n")
    with pytest.raises(DatasetError, match="latin.csv: not UTF-8"):
        read_truth(latin)


def test_answers_to_a_task_without_truth(tmp_path: Path) -> None:
    path = _file(tmp_path, "task,worker,label\nt1,a,1\nt9,a,0\n")
    assert read_answers(path) == {"t1": {"a": 1}, "t9": {"a": 0}}  # alone: any task
    with pytest.raises(DatasetError, match=r"f.csv:3: task t9 has no row in truth.csv"):
        read_answers(path, {"t1": 1}, "truth.csv")


def test_load_dataset_with_and_without_an_assessment_set(tmp_path: Path) -> None:
    _file(tmp_path, "task,truth\nt2,0\nt1,1\n", "truth.csv")
    _file(tmp_path, "task,worker,label\nt1,b,1\nt1,a,0\nt2,a,0\n", "answers.csv")
    ds = load_dataset(tmp_path)
    assert list(ds.truth) == ["t2", "t1"] and ds.workers == ("a", "b") and ds.n_labels == 3
    assert list(ds.answers["t1"]) == ["b", "a"] and ds.assessment is None
    _file(tmp_path, "task,truth\nq,1\n", "assessment_truth.csv")
    with pytest.raises(DatasetError, match="assessment_answers.csv .*needs both files"):
        load_dataset(tmp_path)
    _file(tmp_path, "task,worker,label\nq,a,1\nq,c,0\n", "assessment_answers.csv")
    gold = load_dataset(tmp_path).assessment
    assert gold is not None and gold.truth == {"q": 1} and gold.answers == {"q": {"a": 1, "c": 0}}


def test_load_dataset_names_the_missing_part(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")
    _file(tmp_path, "task,truth\nt1,1\n", "truth.csv")
    with pytest.raises(DatasetError, match="missing file: .*answers.csv"):
        load_dataset(tmp_path)
    _file(tmp_path, "task,worker,label\n", "answers.csv")
    with pytest.raises(DatasetError, match="answers.csv: no labels"):
        load_dataset(tmp_path)


def test_the_shared_datasets_load(datasets: Path) -> None:
    sizes = {"rte": (800, 164, 8000), "temp": (462, 76, 4620), "bluebirds": (108, 39, 4212)}
    for name, (tasks, workers, labels) in {**sizes, "possent": (1000, 85, 20000)}.items():
        ds = load_dataset(datasets / name)
        assert (len(ds.truth), len(ds.workers), ds.n_labels) == (tasks, workers, labels), name
        assert (ds.assessment is not None) == (name == "possent")
