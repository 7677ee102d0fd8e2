"""Dataset folders of crowd labels: the one reader of their CSV files.

The layout (``shared/datasets/README.md``):

- ``answers.csv``, columns ``task,worker,label``: one row per label; a (task, worker) pair once;
- ``truth.csv``, columns ``task,truth``: the gold label of each task, once (with
  ``load_dataset(..., truthless=True)`` a task of ``answers.csv`` may have none: it is labeled,
  not scored);
- optionally a separate assessment set (section 2.2 of the paper), both files or neither:
  ``assessment_answers.csv`` (``task,worker,label``) and ``assessment_truth.csv``
  (``task,truth``).

Labels and truths are ``0`` or ``1``; fields are stripped; blank lines are skipped; columns may
come in any order and extra columns are ignored. Every problem is a :class:`DatasetError` whose
message is one line naming the file, and the line where there is one. The replay
(:mod:`gtx_stream.offline.replay`), the replay labelers, ``gtx-stream ingest --tasks`` (and
the ``frame_index,truth`` file of ``ingest --truth``) and ``gtx-stream labelers assess`` all
read through here; plain ``csv``, no Redis.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ANSWERS = "answers.csv"
TRUTH = "truth.csv"
ASSESSMENT_ANSWERS = "assessment_answers.csv"
ASSESSMENT_TRUTH = "assessment_truth.csv"

Answers = dict[str, dict[str, int]]
"""task -> {worker: label}, in file order (a task's workers in the order of their rows)."""


class DatasetError(ValueError):
    """A dataset file or folder that cannot be used; the message is one line."""


def read_table(path: str | Path, columns: tuple[str, ...]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(line number, the ``columns`` fields) of each non-blank data line of a CSV file.

    The header must name every one of ``columns``; other columns are allowed and ignored.
    """
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"{file}: no such file")
    try:
        with file.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if not set(columns) <= set(header):
                raise DatasetError(
                    f"{file}: expected header {','.join(columns)}, got {','.join(header)}"
                )
            where = [header.index(c) for c in columns]
            for row in reader:
                if not any(field.strip() for field in row):
                    continue
                if len(row) != len(header):
                    raise DatasetError(
                        f"{file}:{reader.line_num}: expected {len(header)} fields, got {len(row)}"
                    )
                yield reader.line_num, tuple(row[i].strip() for i in where)
    except OSError as err:
        raise DatasetError(f"cannot read {file}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"cannot read {file}: not UTF-8 text") from None
    except csv.Error as err:
        raise DatasetError(f"cannot read {file}: {err}") from None


def binary(value: str, column: str, path: str | Path, line: int) -> int:
    """``0`` or ``1`` as an int, else a :class:`DatasetError` naming the file, line and column."""
    if value not in ("0", "1"):
        raise DatasetError(f"{path}:{line}: {column} must be 0 or 1, got {value!r}")
    return int(value)


def read_truth(path: str | Path) -> dict[str, int]:
    """``task,truth`` rows -> {task: truth}, in file order; a task has one row."""
    truth: dict[str, int] = {}
    for line, (task, value) in read_table(path, ("task", "truth")):
        if task in truth:
            raise DatasetError(f"{path}:{line}: task {task} has a second truth row")
        truth[task] = binary(value, "truth", path, line)
    if not truth:
        raise DatasetError(f"{path}: no tasks")
    return truth


def read_answers(
    path: str | Path, truth: Mapping[str, int] | None = None, truth_path: str | Path = TRUTH
) -> Answers:
    """``task,worker,label`` rows -> {task: {worker: label}}, in file order.

    A worker labels a task at most once. With ``truth``, a task it has no row for is an error
    (naming ``truth_path``).
    """
    answers: Answers = {}
    for line, (task, worker, value) in read_table(path, ("task", "worker", "label")):
        if truth is not None and task not in truth:
            raise DatasetError(f"{path}:{line}: task {task} has no row in {truth_path}")
        labels = answers.setdefault(task, {})
        if worker in labels:
            raise DatasetError(f"{path}:{line}: worker {worker} labeled task {task} twice")
        labels[worker] = binary(value, "label", path, line)
    return answers


def by_worker(answers: Mapping[str, Mapping[str, int]]) -> Answers:
    """The same labels the other way round: worker -> {task: label}."""
    out: Answers = {}
    for task, labels in answers.items():
        for worker, label in labels.items():
            out.setdefault(worker, {})[task] = label
    return out


@dataclass(frozen=True)
class Dataset:
    """One dataset folder, read and checked: labels of tasks, most of them with a known truth."""

    name: str
    truth: dict[str, int]
    """Gold label of every task of ``truth.csv``, in file order."""
    answers: Answers
    """Recorded labels: task -> {worker: label}; a worker labels a task at most once."""
    assessment: Dataset | None = None
    """The separate assessment set (its answers and truth), or None when the folder has none."""

    @property
    def workers(self) -> tuple[str, ...]:
        return tuple(sorted({w for labels in self.answers.values() for w in labels}))

    @property
    def n_labels(self) -> int:
        return sum(len(labels) for labels in self.answers.values())

    @property
    def truthless(self) -> tuple[str, ...]:
        """Tasks of ``answers.csv`` without a row in ``truth.csv``, in file order."""
        return tuple(t for t in self.answers if t not in self.truth)


def load_dataset(folder: str | Path, *, truthless: bool = False) -> Dataset:
    """Read and check a dataset folder; raises :class:`DatasetError` with a one-line message.

    A task of ``answers.csv`` without a row in ``truth.csv`` is an error, unless ``truthless``
    (the replay: such tasks are labeled and count for estimation, but are not scored). The
    assessment set always needs a truth for each of its tasks.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder not found: {folder}")
    for name in (TRUTH, ANSWERS):
        if not (folder / name).is_file():
            raise DatasetError(
                f"missing file: {folder / name} (a dataset needs {TRUTH}, {ANSWERS})"
            )
    truth = read_truth(folder / TRUTH)
    answers = read_answers(folder / ANSWERS, None if truthless else truth, folder / TRUTH)
    if not answers:
        raise DatasetError(f"{folder / ANSWERS}: no labels")
    has_answers = (folder / ASSESSMENT_ANSWERS).exists()
    has_truth = (folder / ASSESSMENT_TRUTH).exists()
    if has_answers != has_truth:
        missing = ASSESSMENT_TRUTH if has_answers else ASSESSMENT_ANSWERS
        raise DatasetError(
            f"missing file: {folder / missing} (the assessment set needs both files)"
        )
    name = folder.resolve().name
    if not has_answers:
        return Dataset(name, truth, answers)
    gold = read_truth(folder / ASSESSMENT_TRUTH)
    recorded = read_answers(folder / ASSESSMENT_ANSWERS, gold, folder / ASSESSMENT_TRUTH)
    return Dataset(name, truth, answers, Dataset(f"{name} assessment", gold, recorded))
