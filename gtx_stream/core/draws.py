"""Seeded draws shared by the simulated labelers, the dispatcher and the offline check.

A simulated labeler's answer and the order in which labelers are offered a frame depend only on
(seed, frame id, labeler id), never on timing or process, so the live pipeline and an offline
run of the same seed see the same label sequence (invariant 6).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def stable_hash(text: str) -> int:
    """A 63-bit hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def simulated_label(seed: int, frame_id: str, labeler_id: str, truth: int, accuracy: float) -> int:
    """The label a simulated labeler of the given accuracy gives a frame of the given truth."""
    rng = np.random.default_rng([seed, stable_hash(frame_id), stable_hash(labeler_id)])
    correct = rng.random() < accuracy
    return int(truth) if correct else 1 - int(truth)


def labeler_order(seed: int, frame_id: str, labeler_ids: Sequence[str]) -> list[str]:
    """A uniformly random order of ``labeler_ids`` for one frame, fixed by (seed, frame id)."""
    ids = sorted(labeler_ids)
    rng = np.random.default_rng([seed, stable_hash(frame_id)])
    return [ids[i] for i in rng.permutation(len(ids))]
