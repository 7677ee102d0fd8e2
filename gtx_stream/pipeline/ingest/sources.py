"""Where frames come from: a video file, a folder of images, a camera, a stream, a crowd dataset.

Each source numbers its frames. Files and folders use the frame's position in the source, so a
second run over the same file yields the same indices (a folder counts only the images that
decode whole); cameras and streams use a counter that starts above the source's high-water mark
and keeps increasing across reconnects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from gtx_stream.core.datasets import DatasetError, binary, load_dataset, read_table
from gtx_stream.pipeline.ingest.images import ImageError, read_image

log = logging.getLogger(__name__)

# (frame index, timestamp in seconds) -> should this frame be decoded and considered?
Wants = Callable[[int, float], bool]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"}
)
STREAM_TIMEOUT_MS = 10_000  # open and read timeouts of a stream URL
FIRST_RECONNECT_DELAY = 0.25  # seconds; doubles after each failed reconnect


class SourceError(Exception):
    """An unreadable source or input file, with a one-line message."""


class InputError(SourceError):
    """An input that cannot be read as given (no such file, not a video, a folder without
    images, a malformed truth or tasks file): unlike a camera or stream that cannot be opened
    now, it fails the same way after a restart (``gtx-stream ingest`` exits 2 on it)."""


def source_id_of(uri: str) -> str:
    """A short stable id of a source: the first 12 hex digits of the SHA-1 of its URI."""
    return hashlib.sha1(uri.encode("utf-8")).hexdigest()[:12]


@dataclass
class SourceFrame:
    index: int
    image: np.ndarray | None = None
    jpeg: bytes | None = None  # already encoded (placeholder images)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceStats:
    read: int = 0  # frames read from the source, decoded or not
    corrupt: int = 0  # frames or images that could not be decoded
    reconnects: int = 0
    truncated: bool = False


class Source(ABC):
    """A sequence of numbered frames; ``open()`` raises :class:`SourceError` when unreadable."""

    live = False
    fps = 0.0  # frames per second of the source; 0: unknown or meaningless

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.source_id = source_id_of(uri)
        self.stats = SourceStats()
        self.start_index = 0  # live sources: the first index to hand out

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def frames(self, wants: Wants) -> Iterator[SourceFrame]:
        """Frames for which ``wants(index, t)`` is true; others are read but not decoded."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        pass


def _fps_of(cap: cv2.VideoCapture) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if np.isfinite(fps) and fps > 0 else 0.0


class VideoFileSource(Source):
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        super().__init__(str(self.path))
        self._cap: cv2.VideoCapture | None = None
        self._expected = 0

    def open(self) -> None:
        if not self.path.exists():
            raise InputError(f"no such file: {self.path}")
        if not self.path.is_file():
            raise InputError(f"not a file: {self.path}")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise InputError(f"cannot read {self.path}: not a video OpenCV can decode")
        self._cap = cap
        self.fps = _fps_of(cap)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self._expected = int(count) if np.isfinite(count) and count > 0 else 0

    def frames(self, wants: Wants) -> Iterator[SourceFrame]:
        cap = self._cap
        assert cap is not None, "open() first"
        index = 0
        while cap.grab():
            self.stats.read += 1
            t = index / self.fps if self.fps else 0.0
            if wants(index, t):
                ok, image = cap.retrieve()
                if ok and image is not None:
                    yield SourceFrame(index, image=image)
                else:
                    self.stats.corrupt += 1
                    log.warning("%s: frame %d cannot be decoded, skipped", self.path, index)
            index += 1
        if self.stats.read == 0:
            raise InputError(f"cannot read {self.path}: no frame could be decoded")
        if self._expected and self.stats.read < self._expected:
            self.stats.truncated = True
            log.warning(
                "%s: video ends after %d of %d frames (truncated?); keeping what was read",
                self.path,
                self.stats.read,
                self._expected,
            )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource(Source):
    """Images in a folder, in the order of their names; each frame carries its ``file_name``.

    An image that cannot be decoded, or is cut short (:mod:`.images`), is skipped with a
    warning and takes no index: the index counts the usable images, so every image is decoded,
    also those the sampler leaves out, and the same folder always gives the same indices. A
    folder that is gone midway (unmounted, deleted) ends the source with :class:`SourceError`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        super().__init__(str(self.path))
        self._files: list[Path] = []

    def open(self) -> None:
        try:
            entries = sorted(self.path.iterdir(), key=lambda p: p.name)
        except OSError as err:
            raise InputError(f"cannot list folder {self.path}: {err.strerror}") from None
        self._files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not self._files:
            raise InputError(f"no images in folder {self.path}")

    def frames(self, wants: Wants) -> Iterator[SourceFrame]:
        index = 0
        for path in self._files:
            self.stats.read += 1
            try:
                image = read_image(path)
            except ImageError as err:
                if not self.path.is_dir():  # else a warning for each image left, and "end"
                    raise SourceError(
                        f"folder {self.path} is gone after {index} of its {len(self._files)} images"
                    ) from None
                self.stats.corrupt += 1
                log.warning("%s: %s, skipped", path, err)
                continue
            frame_index, index = index, index + 1
            if wants(frame_index, 0.0):
                yield SourceFrame(frame_index, image=image, fields={"file_name": path.name})


class LiveSource(Source):
    """A camera (index) or a stream URL; reopened with exponential backoff when it drops out."""

    live = True

    def __init__(
        self,
        target: int | str,
        reconnect_max_seconds: float,
        stop: threading.Event,
    ) -> None:
        super().__init__(f"camera:{target}" if isinstance(target, int) else target)
        self.target = target
        self.reconnect_max_seconds = reconnect_max_seconds
        self.stop = stop
        self._cap: cv2.VideoCapture | None = None

    def _capture(self) -> cv2.VideoCapture | None:
        if isinstance(self.target, int):
            cap = cv2.VideoCapture(self.target)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            ]  # fmt: skip
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def open(self) -> None:
        cap = self._capture()
        if cap is None:
            what = f"camera {self.target}" if isinstance(self.target, int) else self.target
            raise SourceError(f"cannot open {what}")
        self._cap = cap
        self.fps = _fps_of(cap)

    def frames(self, wants: Wants) -> Iterator[SourceFrame]:
        index = self.start_index
        delay = FIRST_RECONNECT_DELAY
        t0 = time.monotonic()
        while not self.stop.is_set():
            if self._cap is None:
                log.warning("%s: dropped out; reopening in %.2fs", self.uri, delay)
                if self.stop.wait(delay):
                    break
                delay = min(delay * 2, self.reconnect_max_seconds)
                self._cap = self._capture()
                if self._cap is None:
                    continue
                self.stats.reconnects += 1
                log.info("%s: reopened", self.uri)
            if not self._cap.grab():
                self._cap.release()
                self._cap = None
                continue
            delay = FIRST_RECONNECT_DELAY
            self.stats.read += 1
            frame_index, index = index, index + 1
            if not wants(frame_index, time.monotonic() - t0):
                continue
            ok, image = self._cap.retrieve()
            if ok and image is not None:
                yield SourceFrame(frame_index, image=image)
            else:
                self.stats.corrupt += 1
                log.warning("%s: frame %d cannot be decoded, skipped", self.uri, frame_index)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@cache
def placeholder_jpeg() -> bytes:
    """A tiny grey JPEG for frames that stand for a task without an image."""
    ok, buf = cv2.imencode(".jpg", np.full((8, 8, 3), 128, dtype=np.uint8))
    assert ok
    return buf.tobytes()


class TaskSource(Source):
    """One frame per task of a crowd dataset (truth.csv; answers.csv names who labeled what).

    The folder is read and checked by :func:`gtx_stream.core.datasets.load_dataset`, as the
    replay reads it, so a folder the replay refuses is refused here with the same message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        super().__init__(f"tasks:{self.path}")
        self._tasks: list[tuple[str, str]] = []
        self._eligible: dict[str, list[str]] = {}

    def open(self) -> None:
        try:
            dataset = load_dataset(self.path)
        except DatasetError as err:
            raise InputError(str(err)) from None
        self._tasks = [(task, str(truth)) for task, truth in dataset.truth.items()]
        self._eligible = {task: list(labels) for task, labels in dataset.answers.items()}

    def frames(self, wants: Wants) -> Iterator[SourceFrame]:
        jpeg = placeholder_jpeg()
        for index, (task, truth) in enumerate(self._tasks):
            self.stats.read += 1
            if not wants(index, 0.0):
                continue
            fields = {
                "task": task,
                "truth": truth,
                "eligible": json.dumps(self._eligible.get(task, [])),
            }
            yield SourceFrame(index, jpeg=jpeg, fields=fields)


def read_truth_csv(path: str | Path) -> dict[int, int]:
    """``frame_index,truth`` rows -> {frame_index: truth}; one row per frame index."""
    truths: dict[int, int] = {}
    try:
        for line, (index, value) in read_table(path, ("frame_index", "truth")):
            if not index.isdigit():
                raise DatasetError(
                    f"{path}:{line}: frame_index must be a whole number, got {index!r}"
                )
            if int(index) in truths:
                raise DatasetError(f"{path}:{line}: frame {index} has a second truth row")
            truths[int(index)] = binary(value, "truth", path, line)
    except DatasetError as err:
        raise InputError(str(err)) from None
    return truths


def parse_source(spec: str, *, reconnect_max_seconds: float, stop: threading.Event) -> Source:
    """A camera index (digits), a stream URL (``scheme://``), a folder of images or a video file."""
    if spec.isdigit():
        return LiveSource(int(spec), reconnect_max_seconds, stop)
    if "://" in spec:
        return LiveSource(spec, reconnect_max_seconds, stop)
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path)
    return VideoFileSource(path)
