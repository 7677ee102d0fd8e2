"""A trained model as a ``python`` labeler: ``gtx_stream.train.labeler:predict``.

``gtx-stream train`` writes ``MODEL_DIR/model.pt``; point a labeler of the config at it
(``backend = "python"``, ``target = "gtx_stream.train.labeler:predict"`` in its
``[[labelers]]`` entry) and serve it with ``GTX_MODEL_DIR`` in the worker's environment::

    GTX_MODEL_DIR=models/run1 gtx-stream labeler --id model-1

The model is loaded once per process, on the first frame, from ``$GTX_MODEL_DIR`` (on the
CPU, or ``$GTX_MODEL_DEVICE``). Each call gets the frame as a BGR array, and answers 1 when the
model's P(label = 1) is at least 0.5.
Its accuracy is the model's, measured like any labeler's (gold frames, the estimator).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gtx_stream.train.data import preprocess

if TYPE_CHECKING:
    from gtx_stream.train.model import Classifier, ModelInfo

MODEL_DIR_ENV = "GTX_MODEL_DIR"
DEVICE_ENV = "GTX_MODEL_DEVICE"

_lock = threading.Lock()
_loaded: dict[Path, tuple[Classifier, ModelInfo]] = {}


def model_dir() -> Path:
    value = os.environ.get(MODEL_DIR_ENV, "").strip()
    if not value:
        raise RuntimeError(f"${MODEL_DIR_ENV} is not set: the folder gtx-stream train wrote")
    return Path(value)


def loaded(directory: Path | None = None) -> tuple[Classifier, ModelInfo]:
    """The model of ``directory`` (default ``$GTX_MODEL_DIR``), loaded on first use only."""
    path = (directory or model_dir()) / "model.pt"
    with _lock:
        if path not in _loaded:
            if not path.is_file():
                raise RuntimeError(f"{path}: no model (run gtx-stream train --out {path.parent})")
            from gtx_stream.train.model import load

            _loaded[path] = load(path, os.environ.get(DEVICE_ENV, "cpu"))
        return _loaded[path]


def probability(image: np.ndarray, directory: Path | None = None) -> float:
    """P(label = 1) of one BGR image."""
    import torch

    model, info = loaded(directory)
    x = torch.from_numpy(preprocess(image, info.image_size)[None])
    device = next(model.parameters()).device
    with torch.inference_mode():
        return float(torch.sigmoid(model(x.to(device)))[0])


def predict(image: np.ndarray, metadata: Mapping[str, Any]) -> int:
    """The ``python`` labeler function: 0 or 1 for one frame (``metadata`` is not used)."""
    return int(probability(image) >= 0.5)
