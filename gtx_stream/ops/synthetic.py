"""A short synthetic video whose every frame has a known truth, for demos and tests.

Each frame shows a marked region (a grey rectangle outline on the left) and a bright square;
the truth of a frame is 1 when the square lies inside the region, 0 when it lies outside.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import cv2
import numpy as np

# Motion JPEG in AVI: OpenCV's headless build writes and reads it without extra codecs.
FOURCC = "MJPG"


def region_of(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The marked region ``(x0, y0, x1, y1)`` for a frame of ``size = (width, height)``."""
    width, height = size
    return (width // 10, height // 8, width // 2, height - height // 8)


def draw_frame(size: tuple[int, int], truth: int, rng: np.random.Generator) -> np.ndarray:
    """One BGR frame: the square inside the region when ``truth == 1``, outside otherwise."""
    width, height = size
    x0, y0, x1, y1 = region_of(size)
    side = max(4, height // 6)
    frame = np.full((height, width, 3), 30, dtype=np.uint8)
    cv2.rectangle(frame, (x0, y0), (x1, y1), (128, 128, 128), 1)
    if truth:
        # strictly inside the outline
        x = int(rng.integers(x0 + 2, x1 - side - 1))
        y = int(rng.integers(y0 + 2, y1 - side - 1))
    else:
        # right of the region, anywhere vertically
        x = int(rng.integers(x1 + 2, width - side))
        y = int(rng.integers(0, height - side))
    cv2.rectangle(frame, (x, y), (x + side - 1, y + side - 1), (255, 255, 255), -1)
    return frame


def write_synthetic_video(
    path: str | os.PathLike[str],
    n_frames: int,
    seed: int,
    fps: float = 10,
    size: tuple[int, int] = (96, 72),
) -> list[int]:
    """Write ``n_frames`` frames to ``path`` (MJPG/AVI); return the truth of each frame index."""
    if n_frames < 1:
        raise ValueError("n_frames must be at least 1")
    width, height = size
    if width < 32 or height < 24:
        raise ValueError("size must be at least 32x24")
    rng = np.random.default_rng(seed)
    truths = [int(t) for t in rng.integers(0, 2, size=n_frames)]
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter.fourcc(*FOURCC), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} video to {path}")
    try:
        for truth in truths:
            writer.write(draw_frame(size, truth, rng))
    finally:
        writer.release()
    return truths


def write_truth_csv(path: str | os.PathLike[str], truths: Sequence[int]) -> None:
    """Write ``frame_index,truth`` rows, the format ``gtx-stream ingest --truth`` reads."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["frame_index", "truth"])
        out.writerows(enumerate(truths))
