"""Reading an exported dataset folder for training (no torch here: the labeler uses it too).

The folder is what ``gtx-stream export`` writes (docs/export.md): ``DIR/manifest.jsonl`` and
``DIR/<split>/<class name>/<frame id>.jpg``. The manifest is the source of truth: only its
``ok`` rows are read, each with its split, its hard label and its soft label ``p1``
(P(label = 1) from the posterior), so ``--soft`` needs nothing but the folder.

Images are read with OpenCV (no torchvision), resized to a square, and normalised with the
ImageNet mean and standard deviation the EfficientNet-Lite weights were trained with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gtx_stream.pipeline.export.manifest import MANIFEST, ManifestError, parse_lines

MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class DatasetError(ValueError):
    """A dataset folder that cannot be trained on (one line, naming the file)."""


@dataclass(frozen=True)
class Example:
    """One image of the folder with its hard and soft label."""

    path: Path
    frame_id: str
    split: str
    label: int
    p1: float
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """The ``ok`` rows of a folder's manifest, by split, and the class names by label."""

    root: Path
    splits: dict[str, list[Example]]
    class_names: tuple[str, str]
    statuses: dict[str, int] = field(default_factory=dict)
    """Rows of the manifest by ``image_status`` (ok, missing, filtered), read or not."""

    def split(self, name: str) -> list[Example]:
        return self.splits.get(name, [])

    def rows(self) -> str:
        """What the folder holds, for a message: ``1050 rows in manifest.jsonl: 1050 ok``."""
        n = sum(self.statuses.values())
        counts = ", ".join(f"{c} {s}" for s, c in sorted(self.statuses.items()))
        return f"{n} rows in {MANIFEST}" + (f": {counts}" if counts else "")


def _no_manifest(root: Path) -> str:
    """Why ``root`` has no manifest, in the words of what the user most likely did."""
    if not root.exists():
        return f"{root}: no such folder"
    if not root.is_dir():
        return f"{root}: not a folder (give the folder gtx-stream export --out wrote)"
    if (root.parent / MANIFEST).is_file():
        return f"{root}: no {MANIFEST}; give the dataset folder above it, {root.parent}"
    if not any(p.name != ".lock" for p in root.iterdir()):
        return (f"{root}: no {MANIFEST}: gtx-stream export has exported no frame here yet "
                "(gtx-stream status counts the final frames)")  # fmt: skip
    return f"{root}: no {MANIFEST} (is it a folder written by gtx-stream export?)"


def read_dataset(root: Path) -> Dataset:
    """Read ``root/manifest.jsonl``: every ``ok`` row whose image is there."""
    path = root / MANIFEST
    if not path.is_file():
        raise DatasetError(_no_manifest(root))
    if any(root.glob("*/part-*.parquet")):
        raise DatasetError(f"{root}: a Parquet export; train reads a folder export")
    try:
        rows, _ = parse_lines(path.read_bytes(), str(path))
    except ManifestError as err:
        raise DatasetError(str(err)) from None
    splits: dict[str, list[Example]] = {}
    names = {0: "0", 1: "1"}
    statuses = Counter(str(row.get("image_status")) for row in rows)
    for n, row in enumerate(rows, 1):
        if row.get("image_status") != "ok":
            continue
        try:
            label = int(row["label"])
            example = Example(path=root / row["file_name"], frame_id=str(row["frame_id"]),
                              split=str(row["split"]), label=label, p1=float(row["p1"]),
                              sha256=str(row.get("sha256", "")))  # fmt: skip
            names[label] = str(row.get("class_name", label))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{path}:{n}: a row without a usable {err}") from None
        if label not in (0, 1) or not 0.0 <= example.p1 <= 1.0:
            raise DatasetError(f"{path}:{n}: label must be 0 or 1 and p1 in [0, 1]")
        if not example.path.is_file():
            raise DatasetError(f"{path}:{n}: image {row['file_name']} is missing")
        splits.setdefault(example.split, []).append(example)
    return Dataset(root=root, splits=splits, class_names=(names[0], names[1]),
                   statuses=dict(statuses))  # fmt: skip


def preprocess(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """A BGR uint8 image (OpenCV's) as a normalised float32 CHW array of ``size`` x ``size``."""
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    interpolation = cv2.INTER_AREA if max(image_bgr.shape[:2]) > size else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (size, size), interpolation=interpolation)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return np.ascontiguousarray(((rgb - MEAN_RGB) / STD_RGB).transpose(2, 0, 1))


def load_images(examples: Sequence[Example], size: int) -> np.ndarray:
    """The examples' images as one float32 array (N, 3, size, size)."""
    out = np.empty((len(examples), 3, size, size), dtype=np.float32)
    for i, example in enumerate(examples):
        image = cv2.imread(str(example.path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{example.path}: not a readable image")
        out[i] = preprocess(image, size)
    return out


def targets(examples: Sequence[Example], *, soft: bool) -> np.ndarray:
    """What the model is fit to: the hard labels, or with ``soft`` the posterior p1."""
    return np.array([e.p1 if soft else e.label for e in examples], dtype=np.float32)
