"""Labeler backends: where a label comes from, behind one small interface.

A backend serves one labeler identity and answers :meth:`Backend.label` for one frame with 0
or 1, and :meth:`Backend.label_batch` for up to ``batch`` frames at once
(:mod:`~gtx_stream.pipeline.label.base`). Anything else (no answer, a wrong answer, a
timeout, a crash) is a :class:`LabelError` with a message that says which labeler and which
frame; the worker reports it at once as a failed entry on the labels stream
(:mod:`gtx_stream.pipeline.label.job`).

- ``simulated``: a label drawn from the frame's known truth with the labeler's accuracy,
  seeded by (seed, frame id, labeler id) so every process draws the same label; a frame
  opened without a truth (no ``ingest --truth CSV``) is a failed request saying so;
- ``replay``: the label a real crowd worker gave to a real task (``answers.csv`` of a dataset
  folder); the labeler id is the worker id and the frame's ``task`` field selects the row;
- ``python``: any ``module:function`` taking ``(image, metadata)`` and returning 0 or 1 (with
  ``batch > 1``: lists of both, one label per frame); the module is imported as ``python -m``
  would, so a module in the current directory is found (:mod:`.python_backend`);
- ``http``: POST the JPEG to a URL and read ``{"label": 0|1}`` from the JSON answer (with
  ``batch > 1``: one JSON POST per batch, :mod:`.http_backend`).
  (``human`` is none: a person answers on the label server's page, :mod:`gtx_stream.server`.)

What ``python`` and ``http`` labelers are handed as ``metadata`` (:meth:`Frame.describe`), all
strings: ``frame_id``; ``source`` (the video path, camera or stream URL, password
redacted), ``source_id`` and ``frame_index`` (the frame's position in its source);
``opened_at`` (unix seconds); and ``task``, for frames opened from a crowd dataset
(``ingest --tasks``). Nothing else of the frame: not its truth (only ``simulated`` uses it),
not the pipeline's own fields (state, label counts, eligible labelers).
"""

from __future__ import annotations

import functools
from pathlib import Path

from gtx_stream.config import LabelerSettings
from gtx_stream.core.datasets import DatasetError, by_worker, read_answers
from gtx_stream.core.draws import simulated_label
from gtx_stream.pipeline.label.base import (
    DESCRIBED_FIELDS,
    Backend,
    Frame,
    LabelError,
    Outcome,
    check_label,
)
from gtx_stream.pipeline.label.http_backend import HttpBackend
from gtx_stream.pipeline.label.python_backend import PythonBackend, import_function

__all__ = [
    "DESCRIBED_FIELDS",
    "Backend",
    "Frame",
    "HttpBackend",
    "LabelError",
    "Outcome",
    "PythonBackend",
    "ReplayBackend",
    "SimulatedBackend",
    "build_backend",
    "check_label",
    "import_function",
]


class SimulatedBackend(Backend):
    kind = "simulated"
    needs_image = False  # draws from the frame's truth

    def __init__(self, labeler_id: str, accuracy: float, seed: int = 0, batch: int = 1) -> None:
        super().__init__(labeler_id, batch)
        if not 0.0 <= accuracy <= 1.0:
            raise LabelError(f"simulated labeler {labeler_id}: accuracy {accuracy} not in [0, 1]")
        self.accuracy = accuracy
        self.seed = seed

    def label(self, frame: Frame) -> int:
        raw = frame.metadata.get("truth")
        if raw is None or raw == "":
            raise self._error(
                frame,
                "the frame has no truth: a simulated labeler draws its label from the frame's "
                "truth (open frames with ingest --truth CSV or --tasks DATASET_DIR)",
            )
        try:
            truth = int(raw)
        except ValueError:
            truth = -1
        if truth not in (0, 1):
            raise self._error(frame, f"truth must be 0 or 1, got {raw!r}")
        return simulated_label(self.seed, frame.frame_id, self.labeler_id, truth, self.accuracy)


@functools.lru_cache(maxsize=8)
def _answers_by_worker(answers_csv: Path) -> dict[str, dict[str, int]]:
    """worker -> {task: label} of an answers.csv, read and checked by :mod:`core.datasets`."""
    try:
        return by_worker(read_answers(answers_csv))
    except DatasetError as err:
        raise LabelError(str(err)) from None


class ReplayBackend(Backend):
    kind = "replay"
    needs_image = False  # looks the frame's task up

    def __init__(self, labeler_id: str, dataset_dir: str | Path, batch: int = 1) -> None:
        super().__init__(labeler_id, batch)
        folder = Path(dataset_dir)
        answers_csv = (folder / "answers.csv").resolve()
        if not answers_csv.is_file():
            raise LabelError(f"replay labeler {labeler_id}: no answers.csv in {str(folder)!r}")
        answers = _answers_by_worker(answers_csv).get(labeler_id)
        if not answers:
            raise LabelError(
                f"replay labeler {labeler_id}: worker {labeler_id!r} has no answers "
                f"in {answers_csv}"
            )
        self.answers = answers

    def label(self, frame: Frame) -> int:
        task = frame.metadata.get("task", "").strip()
        if not task:
            raise self._error(frame, "the frame has no 'task' field to look the answer up")
        try:
            return self.answers[task]
        except KeyError:
            raise self._error(frame, f"worker gave no answer to task {task!r}") from None


def build_backend(settings: LabelerSettings) -> Backend:
    """The backend that ``settings.backend`` names, built from the labeler's settings."""
    lid = settings.id
    if settings.backend == "simulated":
        if settings.accuracy is None:
            raise LabelError(f"simulated labeler {lid}: needs an accuracy in its settings")
        return SimulatedBackend(lid, settings.accuracy, settings.seed, settings.batch)
    if settings.backend == "replay":
        if not settings.target:
            raise LabelError(f"replay labeler {lid}: target must be a dataset folder")
        return ReplayBackend(lid, settings.target, settings.batch)
    if settings.backend == "python":
        return PythonBackend(lid, settings.target, settings.timeout, settings.batch)
    if settings.backend == "http":
        return HttpBackend(lid, settings.target, settings.timeout, settings.batch)
    why = "a person: the label server serves it" if settings.backend == "human" else "unknown"
    raise LabelError(f"labeler {lid}: backend {settings.backend!r} is {why}")
