"""The ``python`` backend: a model (any ``module:function``) used as a labeler.

With ``batch = 1`` the function is called as ``function(image, metadata)`` and returns 0 or 1.
With ``batch > 1`` it is called once per batch as ``function(images, metadatas)``, two lists
of the same length (BGR arrays, metadata dicts), and returns one label per frame in order:
one forward pass for the batch. An item that is not 0 or 1 fails that frame alone; an
exception, a timeout or an answer of the wrong length fails the whole batch.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gtx_stream.pipeline.label.base import (
    Backend,
    Frame,
    LabelError,
    Outcome,
    check_batch_answer,
    check_label,
)

WAIT_SLICE_SECONDS = 0.2


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


class PythonBackend(Backend):
    """Calls the function in a helper thread, with a timeout (per call: one frame or a batch).

    A thread (not a signal) enforces the timeout, so it neither clashes with RQ's own job
    timeout nor needs the main thread. A function that never returns cannot be
    stopped from Python: its thread (a daemon) is abandoned and the next call gets a fresh
    one. The same thread serves every call otherwise, so a model is used from one thread.
    """

    kind = "python"

    def __init__(self, labeler_id: str, target: str, timeout: float = 10.0, batch: int = 1) -> None:
        super().__init__(labeler_id, batch)
        self.target = target
        self.function = import_function(target)
        self.timeout = timeout
        self._thread: _CallThread | None = None

    def label(self, frame: Frame) -> int:
        value = self._call(lambda err: self._error(frame, err), frame.image, frame.describe())
        label = check_label(value)
        if label is None:
            raise self._error(frame, f"{self.target} returned {value!r}, not 0 or 1")
        return label

    def label_batch(self, frames: Sequence[Frame]) -> list[Outcome]:
        if self.batch == 1:
            return super().label_batch(frames)
        out: list[Outcome | None] = [None] * len(frames)
        ready: list[int] = []
        images = []
        for i, frame in enumerate(frames):
            try:
                images.append(frame.image)  # a frame that does not decode fails alone
            except LabelError as err:
                out[i] = err
                continue
            ready.append(i)
        if ready:
            chosen = [frames[i] for i in ready]
            values = self._call(
                lambda err: self._batch_error(len(chosen), err),
                images,
                [frame.describe() for frame in chosen],
            )
            answer = check_batch_answer(self, chosen, values, f"{self.target}")
            for i, outcome in zip(ready, answer, strict=True):
                out[i] = outcome
        return [o for o in out if o is not None]

    def _call(self, error: Callable[[str], LabelError], *args: Any) -> Any:
        if self._thread is None:
            self._thread = _CallThread(f"labeler-{self.labeler_id}")
        future = self._thread.submit(self.function, *args)
        try:
            return self._wait(future, error)
        except BaseException:
            if not future.done():
                # Our timeout, or interrupted while the call still runs (RQ's job timeout):
                # abandon its thread, or the next calls would queue behind the stuck one.
                self.close()
            raise

    def _wait(
        self, future: concurrent.futures.Future[Any], error: Callable[[str], LabelError]
    ) -> Any:
        # Waits in short slices: RQ's job timeout, raised in this thread from a timer thread,
        # lands only between two slices, never inside one long wait.
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise error(f"{self.target} gave no answer within {self.timeout:g} s")
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
            raise error(f"{self.target} raised {type(cause).__name__}: {cause}") from cause

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
