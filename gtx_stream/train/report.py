"""What ``gtx-stream train`` writes beside the model: ``metrics.json`` and ``reliability.png``.

Per scored split (``val``, ``test`` when the folder has one, and ``train`` for reference): the
number of images, balanced error, plain error, ECE (10 equal-width confidence bins), the
confusion matrix (rows = label, columns = prediction) and the reliability bins, all from
:mod:`gtx_stream.core.metrics`. The labels scored against are the folder's, that is the
pipeline's labels: they are the truth only as far as the labels are right.

The reliability diagram needs matplotlib (the ``plot`` extra); without it the PNG is left out
and ``metrics.json`` says so. Each file is written under a temporary name, fsynced and renamed
over the earlier run's (:func:`replace`), so an interrupted run leaves the earlier files whole.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gtx_stream.core.metrics import (
    DEFAULT_BINS,
    Reliability,
    balanced_error,
    confusion_matrix,
    predicted,
    reliability,
)
from gtx_stream.pipeline.export.layout import fsync_dir

METRICS_FILE = "metrics.json"
RELIABILITY_FILE = "reliability.png"


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else round(float(v), 6) for v in values]


def split_metrics(y_true: np.ndarray, p1: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    pred = predicted(p1)
    rel = reliability(y_true, p1, n_bins)
    return {
        "n": int(len(y_true)),
        "balanced_error": balanced_error(y_true, pred),
        "error": float(np.mean(pred != y_true)) if len(y_true) else float("nan"),
        "ece": rel.ece,
        "confusion_matrix": confusion_matrix(y_true, pred).tolist(),
        "reliability": {
            "edges": _clean(rel.edges),
            "counts": rel.counts.tolist(),
            "confidence": _clean(rel.confidence),
            "accuracy": _clean(rel.accuracy),
        },
    }


def build(
    y_true: Mapping[str, np.ndarray], p1: Mapping[str, np.ndarray], settings: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "settings": dict(settings),
        "splits": {s: split_metrics(y_true[s], p1[s]) for s in y_true},
    }


def _reliability_of(m: Mapping[str, Any]) -> Reliability:
    r = m["reliability"]

    def arr(key: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in r[key]], dtype=np.float64)

    return Reliability(edges=arr("edges"), counts=np.array(r["counts"]),
                       confidence=arr("confidence"), accuracy=arr("accuracy"))  # fmt: skip


def reliability_png(path: Path, splits: Mapping[str, Mapping[str, Any]]) -> bool:
    """Accuracy against confidence per bin, one panel per scored split; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [s for s in ("val", "test") if s in splits]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4.2), squeeze=False)
    for ax, split in zip(axes[0], shown, strict=True):
        rel = _reliability_of(splits[split])
        width = rel.edges[1] - rel.edges[0]
        full = rel.counts > 0
        ax.bar(rel.edges[:-1][full], rel.accuracy[full], width=width, align="edge",
               edgecolor="black", color="#4c72b0", label="accuracy")  # fmt: skip
        ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("confidence max(p1, 1 - p1)")
        ax.set_ylabel("accuracy")
        m = splits[split]
        ax.set_title(f"{split} (n={m['n']}): ECE {m['ece']:.3f}, BER {m['balanced_error']:.3f}")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return True


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def temporary(path: Path) -> Path:
    """Where ``path`` is written before :func:`replace` puts it in place."""
    return path.with_name(f".{path.name}.tmp")


def replace(path: Path) -> Path:
    """Put ``temporary(path)`` in place of ``path``: fsync, rename (atomic), fsync the folder."""
    tmp = temporary(path)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def write(out: Path, metrics: dict[str, Any]) -> list[Path]:
    """Write ``metrics.json`` (NaN as null) and the reliability diagram; the files written."""
    png = out / RELIABILITY_FILE
    drawn = reliability_png(temporary(png), metrics["splits"])
    metrics["reliability_png"] = (
        RELIABILITY_FILE
        if drawn
        else (
            "not drawn: matplotlib is not installed (pip install -e '.[plot]' in the "
            "gtx-stream folder)"
        )
    )
    path = out / METRICS_FILE
    temporary(path).write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n")
    files = [replace(path)]
    if drawn:
        files.append(replace(png))
    else:
        png.unlink(missing_ok=True)  # never leave an earlier run's diagram beside these metrics
    return files
