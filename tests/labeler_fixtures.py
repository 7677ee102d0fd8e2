"""Labeler functions for the ``python`` backend in the tests (``tests.labeler_fixtures:NAME``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def truth_label(image: np.ndarray, metadata: dict[str, str]) -> int:
    """A perfect labeler: answers the frame's truth."""
    return int(metadata["truth"])


def bright(image: np.ndarray, metadata: dict[str, str]) -> int:
    """1 when the image is mostly bright: proves the image was decoded."""
    return int(float(image.mean()) > 127.0)


def numpy_one(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return np.int64(1)


def explode(image: np.ndarray, metadata: dict[str, str]) -> int:
    raise RuntimeError("model crashed")


def answer_yes(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return "yes"


def answer_half(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return 0.5


def answer_two(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return 2


def answer_none(image: np.ndarray, metadata: dict[str, str]) -> Any:
    return None


def slow_truth(image: np.ndarray, metadata: dict[str, str]) -> int:
    """Sleeps ``metadata['sleep']`` seconds, then answers the truth."""
    time.sleep(float(metadata.get("sleep", "0")))
    return int(metadata["truth"])


def write_marker(path: str) -> None:
    """Not a labeler: a job naming this must never run in a labeler worker."""
    Path(path).write_text("ran")


NOT_CALLABLE = 3
