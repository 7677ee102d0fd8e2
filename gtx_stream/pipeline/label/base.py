"""What every labeler backend shares: the frame it is shown, its error, and its two calls.

A backend answers :meth:`Backend.label` for one frame with 0 or 1, and
:meth:`Backend.label_batch` for up to ``batch`` frames at once (one model forward pass, one
vendor POST) with one :data:`Outcome` per frame. Anything but 0 or 1 (no answer, a wrong
answer, a timeout, a crash) is a :class:`LabelError` that says which labeler and which frame;
in a batch it is that frame's failure alone, unless the whole call failed.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gtx_stream.store.connection import redacted

DESCRIBED_FIELDS = ("source", "source_id", "frame_index", "opened_at", "task")
"""Frame-hash fields a ``python`` or ``http`` labeler sees (besides ``frame_id``)."""


class LabelError(Exception):
    """A backend could not give a label (or was built from unusable settings)."""


Outcome = int | LabelError
"""One frame's answer in a batch: its label (0 or 1), or why it has none."""


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
        """Metadata handed to ``python`` and ``http`` labelers (see :mod:`.backends`).

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
    """Gives one labeler's label for a frame, or for a batch of frames.

    ``batch`` is the most frames the worker hands :meth:`label_batch` at once (the labeler's
    ``batch`` setting); with 1 the worker calls :meth:`label` only.
    """

    kind: str = ""
    needs_image: bool = True
    """False for backends that never look at the pixels: the worker does not read the JPEG."""

    def __init__(self, labeler_id: str, batch: int = 1) -> None:
        self.labeler_id = labeler_id
        self.batch = batch

    @abstractmethod
    def label(self, frame: Frame) -> int:
        """0 or 1; raises :class:`LabelError` when no valid label can be given."""

    def label_batch(self, frames: Sequence[Frame]) -> list[Outcome]:
        """One outcome per frame, in order. This default asks :meth:`label` frame by frame;
        a backend that can do better (one forward pass, one POST) overrides it.

        Raising fails every frame of the batch with that one reason.
        """
        out: list[Outcome] = []
        for frame in frames:
            try:
                out.append(self.label(frame))
            except LabelError as err:
                out.append(err)
        return out

    def close(self) -> None:
        """Release what the backend holds (threads, files); the default holds nothing."""
        return None

    def _error(self, frame: Frame, message: str) -> LabelError:
        return LabelError(
            f"{self.kind} labeler {self.labeler_id}, frame {frame.frame_id}: {message}"
        )

    def _batch_error(self, n_frames: int, message: str) -> LabelError:
        return LabelError(
            f"{self.kind} labeler {self.labeler_id}, batch of {n_frames} frames: {message}"
        )


def check_label(value: Any) -> int | None:
    """``value`` as 0 or 1 when it is an integer (or bool) equal to one of them, else None."""
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return int(value)
    return None


def check_batch_answer(
    backend: Backend, frames: Sequence[Frame], values: Any, what: str
) -> list[Outcome]:
    """A batch call's answer (``values``: one label per frame, in order) as outcomes.

    Not a list of the frames' length: the whole batch fails. An item that is not 0 or 1:
    that frame fails, the others keep their labels.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise backend._batch_error(len(frames), f"{what} is {values!r:.80}, not a list of labels")
    if len(values) != len(frames):
        raise backend._batch_error(
            len(frames), f"{what} holds {len(values)} labels for {len(frames)} frames"
        )
    out: list[Outcome] = []
    for frame, value in zip(frames, values, strict=True):
        label = check_label(value)
        if label is None:
            out.append(backend._error(frame, f"{what} gave {value!r:.80} for it, not 0 or 1"))
        else:
            out.append(label)
    return out
