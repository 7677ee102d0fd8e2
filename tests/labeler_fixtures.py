"""Labeler functions for the ``python`` backend in the tests (``tests.labeler_fixtures:NAME``).

A ``python`` labeler never sees the frame's truth, so the answers the tests can predict come
from what it does see: the image, or the frame index.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

SLEEP_VARIABLE = "GTX_TEST_SLEEP"
"""Seconds :func:`slow_parity` sleeps (an environment variable: it reaches worker processes)."""

seen: list[dict[str, str]] = []
"""The metadata :func:`record_metadata` was handed, in this process."""


def index_parity(image: np.ndarray, metadata: dict[str, str]) -> int:
    """The parity of the frame index."""
    return int(metadata["frame_index"]) % 2


def sees_truth(image: np.ndarray, metadata: dict[str, str]) -> int:
    """1 when the frame's truth reached the labeler (it must not), else 0."""
    return int("truth" in metadata)


def record_metadata(image: np.ndarray, metadata: dict[str, str]) -> int:
    seen.append(dict(metadata))
    return 1


def bright(image: np.ndarray, metadata: dict[str, str]) -> int:
    """1 when the image is mostly bright: proves the image was decoded."""
    return int(float(image.mean()) > 127.0)


def numpy_one(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return np.int64(1)


def explode(image: np.ndarray, metadata: dict[str, str]) -> int:
    raise RuntimeError("model crashed")


def raise_timeout(image: np.ndarray, metadata: dict[str, str]) -> int:
    raise TimeoutError("the model's own timeout")


def answer_yes(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return "yes"


def answer_half(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return 0.5


def answer_two(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return 2


def answer_none(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return None


def slow_parity(image: np.ndarray, metadata: dict[str, str]) -> int:
    """Sleeps ``$GTX_TEST_SLEEP`` seconds, then answers the parity of the frame index."""
    time.sleep(float(os.environ.get(SLEEP_VARIABLE, "0")))
    return index_parity(image, metadata)


def write_marker(path: str) -> None:
    """Not a labeler: a job naming this must never run in a labeler worker."""
    Path(path).write_text("ran")


NOT_CALLABLE = 3
