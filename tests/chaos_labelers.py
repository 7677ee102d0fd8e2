"""``python``-backend labelers for the fault-injection test (``tests/test_chaos.py``).

Both answer like a seeded simulated labeler (:func:`gtx_stream.core.draws.simulated_label`, from the
frame's ``truth`` field), but:

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
from typing import Any

from gtx_stream.core.draws import simulated_label

SEED = 0
HANG_EVERY = 3
HANG_ACCURACY = 0.9
LATE_SECONDS = 1.75
LATE_ACCURACY = 0.85


def _draw(metadata: dict[str, str], labeler_id: str, accuracy: float) -> int:
    return simulated_label(SEED, metadata["frame_id"], labeler_id, int(metadata["truth"]), accuracy)


def hang(image: Any, metadata: dict[str, str]) -> int:
    """Labeler ``hang``: never answers every HANG_EVERY-th frame."""
    if int(metadata["frame_index"]) % HANG_EVERY == 0:
        threading.Event().wait()  # forever
    return _draw(metadata, "hang", HANG_ACCURACY)


def late(image: Any, metadata: dict[str, str]) -> int:
    """Labeler ``late``: answers after LATE_SECONDS, past its lease."""
    time.sleep(LATE_SECONDS)
    return _draw(metadata, "late", LATE_ACCURACY)
