"""Labeler backends: where a label comes from, behind one small interface.

A backend serves one labeler identity and answers :meth:`Backend.label` for one frame with 0
or 1. Anything else (no answer, a wrong answer, a timeout, a crash) is a :class:`LabelError`
with a message that says which labeler and which frame; the worker reports it at once as a
failed entry on the labels stream (:mod:`gtx_stream.pipeline.label.job`).

- ``simulated``: a label drawn from the frame's known truth with the labeler's accuracy,
  seeded by (seed, frame id, labeler id) so every process draws the same label; a frame
  opened without a truth (no ``ingest --truth CSV``) is a failed request saying so;
- ``replay``: the label a real crowd worker gave to a real task (``answers.csv`` of a dataset
  folder); the labeler id is the worker id and the frame's ``task`` field selects the row;
- ``python``: any ``module:function`` taking ``(image, metadata)`` and returning 0 or 1; the
  module is imported as ``python -m`` would, so a module in the current directory is found;
- ``http``: POST the JPEG to a URL and read ``{"label": 0|1}`` from the JSON answer.
  (``human`` is none: a person answers on the label server's page, :mod:`gtx_stream.server`.)

What ``python`` and ``http`` labelers are handed as ``metadata`` (:meth:`Frame.describe`), all
strings: ``frame_id``; ``source`` (the video path, camera or stream URL, password
redacted), ``source_id`` and ``frame_index`` (the frame's position in its source);
``opened_at`` (unix seconds); and ``task``, for frames opened from a crowd dataset
(``ingest --tasks``). Nothing else of the frame: not its truth (only ``simulated`` uses it),
not the pipeline's own fields (state, label counts, eligible labelers).
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import json
import numbers
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gtx_stream.config import LabelerSettings
from gtx_stream.core.datasets import DatasetError, by_worker, read_answers
from gtx_stream.core.draws import simulated_label
from gtx_stream.store.connection import redacted

DESCRIBED_FIELDS = ("source", "source_id", "frame_index", "opened_at", "task")
"""Frame-hash fields a ``python`` or ``http`` labeler sees (besides ``frame_id``)."""


class LabelError(Exception):
    """A backend could not give a label (or was built from unusable settings)."""


@dataclass
class Frame:
    """One frame as a labeler sees it: id, JPEG bytes, and the frame hash as metadata.

    The image is decoded from the JPEG on first use only, so backends that never look at the
    pixels (``simulated``, ``replay``) do not pay for decoding.
    """

    frame_id: str
    metadata: dict[str, str] = field(default_factory=dict)
    jpeg: bytes | None = None
    _image: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def image(self) -> np.ndarray:
        """The frame as a BGR array (OpenCV's order)."""
        if self._image is None:
            if not self.jpeg:
                raise LabelError(f"frame {self.frame_id}: no image stored")
            import cv2

            buf = np.frombuffer(self.jpeg, dtype=np.uint8)
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if image is None:
                raise LabelError(f"frame {self.frame_id}: the stored image is not a readable JPEG")
            self._image = image
        return self._image

    def describe(self) -> dict[str, str]:
        """Metadata handed to ``python`` and ``http`` labelers (see the module docstring).

        A whitelist, not the frame hash: a field added to frames later (a gold answer, say)
        must not reach a model or a vendor by default.
        """
        out = {"frame_id": self.frame_id}
        for name in DESCRIBED_FIELDS:
            if name in self.metadata:
                out[name] = self.metadata[name]
        if "source" in out:
            out["source"] = redacted(out["source"])  # rtsp://user:password@camera
        return out


class Backend(ABC):
    """Gives one labeler's label for a frame."""

    kind: str = ""

    def __init__(self, labeler_id: str) -> None:
        self.labeler_id = labeler_id

    @abstractmethod
    def label(self, frame: Frame) -> int:
        """0 or 1; raises :class:`LabelError` when no valid label can be given."""

    def close(self) -> None:
        """Release what the backend holds (threads, files); the default holds nothing."""
        return None

    def _error(self, frame: Frame, message: str) -> LabelError:
        return LabelError(
            f"{self.kind} labeler {self.labeler_id}, frame {frame.frame_id}: {message}"
        )


def check_label(value: Any) -> int | None:
    """``value`` as 0 or 1 when it is an integer (or bool) equal to one of them, else None."""
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return int(value)
    return None


class SimulatedBackend(Backend):
    kind = "simulated"

    def __init__(self, labeler_id: str, accuracy: float, seed: int = 0) -> None:
        super().__init__(labeler_id)
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

    def __init__(self, labeler_id: str, dataset_dir: str | Path) -> None:
        super().__init__(labeler_id)
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


def import_function(target: str) -> Callable[..., Any]:
    """The callable named by ``module:function`` (``function`` may be dotted)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise LabelError(f"python target must look like 'module:function', got {target!r}")
    _import_from_current_directory()
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:
        raise LabelError(f"python target {target!r}: cannot import {module_name}: {err}") from err
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LabelError(f"python target {target!r}: {module_name} has no {attr}") from None
    if not callable(obj):
        raise LabelError(f"python target {target!r} is not callable")
    return obj


def _import_from_current_directory() -> None:
    # ``python -m`` puts the current directory first on sys.path; the ``gtx-stream`` script
    # puts its own bin/ folder there instead, so a model module beside config.toml would not
    # be found.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


WAIT_SLICE_SECONDS = 0.2


class PythonBackend(Backend):
    """Calls ``function(image, metadata)`` in a helper thread, with a timeout.

    A thread (not a signal) enforces the timeout, so it neither clashes with RQ's own job
    timeout nor needs the main thread. A function that never returns cannot be
    stopped from Python: its thread (a daemon) is abandoned and the next frame gets a fresh
    one. The same thread serves every frame otherwise, so a model is used from one thread.
    """

    kind = "python"

    def __init__(self, labeler_id: str, target: str, timeout: float = 10.0) -> None:
        super().__init__(labeler_id)
        self.target = target
        self.function = import_function(target)
        self.timeout = timeout
        self._thread: _CallThread | None = None

    def label(self, frame: Frame) -> int:
        image = frame.image
        if self._thread is None:
            self._thread = _CallThread(f"labeler-{self.labeler_id}")
        future = self._thread.submit(self.function, image, frame.describe())
        try:
            value = self._wait(future, frame)
        except BaseException:
            if not future.done():
                # Our timeout, or interrupted while the call still runs (RQ's job timeout):
                # abandon its thread, or the next frames would queue behind the stuck call.
                self.close()
            raise
        label = check_label(value)
        if label is None:
            raise self._error(frame, f"{self.target} returned {value!r}, not 0 or 1")
        return label

    def _wait(self, future: concurrent.futures.Future[Any], frame: Frame) -> Any:
        # Waits in short slices: RQ's job timeout, raised in this thread from a timer thread,
        # lands only between two slices, never inside one long wait.
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._error(frame, f"{self.target} gave no answer within {self.timeout:g} s")
            try:
                return future.result(timeout=min(WAIT_SLICE_SECONDS, left))
            except Exception as err:
                if not future.done():
                    if isinstance(err, concurrent.futures.TimeoutError):
                        continue  # this slice ended
                    raise  # not the function's: RQ's job timeout
            cause = future.exception()
            if cause is None:
                continue  # it returned just after a slice ended: read its value
            raise self._error(
                frame, f"{self.target} raised {type(cause).__name__}: {cause}"
            ) from cause

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None


class _CallThread:
    """A daemon thread that runs submitted calls one at a time."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def submit(self, function: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put(_Call(future, function, args))
        return future

    def stop(self) -> None:
        self._calls.put(None)

    def _loop(self) -> None:
        while (call := self._calls.get()) is not None:
            if not call.future.set_running_or_notify_cancel():
                continue
            try:
                call.future.set_result(call.function(*call.args))
            except BaseException as err:  # handed to the caller, who turns it into a LabelError
                call.future.set_exception(err)


@dataclass(frozen=True)
class _Call:
    future: concurrent.futures.Future[Any]
    function: Callable[..., Any]
    args: tuple[Any, ...]


class HttpBackend(Backend):
    """POSTs the JPEG to ``url``; the answer is JSON ``{"label": 0 | 1}``.

    The request carries ``Content-Type: image/jpeg`` and the headers ``X-GTX-Frame-Id``,
    ``X-GTX-Labeler`` and ``X-GTX-Metadata`` (the frame hash as JSON, ASCII-escaped).
    """

    kind = "http"

    def __init__(self, labeler_id: str, url: str, timeout: float = 10.0) -> None:
        super().__init__(labeler_id)
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LabelError(
                f"http labeler {labeler_id}: target must be an http(s) URL, got {url!r}"
            )
        self.url = url
        self.timeout = timeout

    def label(self, frame: Frame) -> int:
        if not frame.jpeg:
            raise self._error(frame, "no image stored to send")
        request = urllib.request.Request(
            self.url,
            data=frame.jpeg,
            method="POST",
            headers={
                "Content-Type": "image/jpeg",
                "Accept": "application/json",
                "X-GTX-Frame-Id": frame.frame_id,
                "X-GTX-Labeler": self.labeler_id,
                "X-GTX-Metadata": json.dumps(frame.describe(), sort_keys=True),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            raise self._error(frame, f"{self.url} answered HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, TimeoutError) as err:
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            if isinstance(reason, TimeoutError):  # connecting, or reading the answer
                message = f"{self.url} gave no answer within {self.timeout:g} s"
            else:
                message = f"cannot reach {self.url}: {reason}"
            raise self._error(frame, message) from None
        except OSError as err:
            raise self._error(frame, f"{self.url}: {err}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise self._error(frame, f"{self.url} answered with no JSON: {body[:80]!r}") from None
        value = answer.get("label") if isinstance(answer, Mapping) else None
        label = check_label(value)
        if label is None:
            raise self._error(frame, f'{self.url} answered {body[:80]!r}, not {{"label": 0 or 1}}')
        return label


def build_backend(settings: LabelerSettings) -> Backend:
    """The backend that ``settings.backend`` names, built from the labeler's settings."""
    lid = settings.id
    if settings.backend == "simulated":
        if settings.accuracy is None:
            raise LabelError(f"simulated labeler {lid}: needs an accuracy in its settings")
        return SimulatedBackend(lid, settings.accuracy, settings.seed)
    if settings.backend == "replay":
        if not settings.target:
            raise LabelError(f"replay labeler {lid}: target must be a dataset folder")
        return ReplayBackend(lid, settings.target)
    if settings.backend == "python":
        return PythonBackend(lid, settings.target, settings.timeout)
    if settings.backend == "http":
        return HttpBackend(lid, settings.target, settings.timeout)
    why = "a person: the label server serves it" if settings.backend == "human" else "unknown"
    raise LabelError(f"labeler {lid}: backend {settings.backend!r} is {why}")
