"""``python``-backend labelers for the fault-injection test (``tests/test_chaos.py``).

Like any ``python`` labeler they never see the frame's truth, so they look at the image: a
frame of :mod:`gtx_stream.ops.synthetic` is 1 when its bright square lies inside the marked
region (the left half), which :func:`square_inside` reads off exactly. Each then answers like a
seeded simulated labeler of that truth (:func:`gtx_stream.core.draws.simulated_label`), but:

- :func:`hang` never returns on every :data:`HANG_EVERY`-th frame (by frame index): its
  request can only end by a timeout, and the frame's lease must ask another labeler;
- :func:`late` takes :data:`LATE_SECONDS` per frame: longer than the lease the test gives
  (1.5 s) and shorter than the RQ job timeout (the lease rounded up, 2 s), so every answer it
  gives arrives after its lease expired (applied if the frame is still open, otherwise
  dead-lettered as "frame already finalised").
"""

from __future__ import annotations

import threading
import time

import numpy as np

from gtx_stream.core.draws import simulated_label
from gtx_stream.ops.synthetic import region_of

SEED = 0
HANG_EVERY = 3
HANG_ACCURACY = 0.9
LATE_ACCURACY = 0.85
LATE_SECONDS = 1.75
BRIGHT = 200  # the square is white (255) on a dark (30) frame with a grey (128) outline


def square_inside(image: np.ndarray) -> int:
    """1 when the frame's bright square lies inside the marked region, else 0."""
    gray = image.mean(axis=2) if image.ndim == 3 else image
    height, width = gray.shape
    xs = np.nonzero(gray > BRIGHT)[1]
    return int(xs.size > 0 and float(xs.mean()) < region_of((width, height))[2])


def _draw(image: np.ndarray, metadata: dict[str, str], labeler_id: str, accuracy: float) -> int:
    truth = square_inside(image)
    return simulated_label(SEED, metadata["frame_id"], labeler_id, truth, accuracy)


def hang(image: np.ndarray, metadata: dict[str, str]) -> int:
    """Labeler ``hang``: never answers every HANG_EVERY-th frame."""
    if int(metadata["frame_index"]) % HANG_EVERY == 0:
        threading.Event().wait()  # forever
    return _draw(image, metadata, "hang", HANG_ACCURACY)


def late(image: np.ndarray, metadata: dict[str, str]) -> int:
    """Labeler ``late``: answers after LATE_SECONDS, past its lease."""
    time.sleep(LATE_SECONDS)
    return _draw(image, metadata, "late", LATE_ACCURACY)
