"""Where a frame goes in a dataset folder: its split, its class folder, its file, written safely.

``DIR/<split>/<class name>/<frame id>.jpg`` is the class-folder convention that torchvision's
``ImageFolder``, Keras' ``image_dataset_from_directory``, Ultralytics classification and
Hugging Face ``imagefolder`` all read. Splits are decided per block of consecutive frames of a
source, never per frame: consecutive video frames are near duplicates, and a random split per
frame would put a frame in ``val`` whose neighbour a second earlier is in ``train``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gtx_stream.config import ExportSettings
from gtx_stream.core.records import FinalRecord

SPLITS = ("train", "val", "test")
TMP_DIR = ".tmp"
"""Temporary files live here (same file system), never in a class folder."""


class ExportError(RuntimeError):
    """The folder cannot be exported to (one line: locked, another format, a bad manifest).

    ``exit_status`` is the command's: 1 where a restart may do (a lock another exporter
    holds), EXIT_CONFIG where only other settings do (another format, pyarrow missing)."""

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


_SAFE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


GOLDEN = (math.sqrt(5) - 1) / 2
"""Consecutive blocks step by this around [0, 1): the most evenly spread additive sequence."""


def split_of(source: str, frame_index: int, settings: ExportSettings) -> str:
    """``train``, ``val`` or ``test``: a function of (source, block of frames) alone.

    ``block = frame_index // block_frames`` (the index in the source, which counts every frame
    read, sampled or not: a block is a stretch of video time, however fast the file was read).
    The block's number is ``u = (h + block * GOLDEN) mod 1``, where h is the first 8 bytes of
    sha256(source) read as a number in [0, 1): ``test`` below ``test_fraction``, ``val`` below
    ``test_fraction + val_fraction``, else ``train``. Successive blocks of this additive
    (Weyl) sequence spread evenly over [0, 1), so the fractions hold within a block or two over
    any stretch of blocks, also a short video's: any 20 consecutive blocks have at least one
    block in a split of fraction 0.1. Every frame of one block shares the block's split, on
    every run and every machine.
    """
    block = frame_index // settings.block_frames
    digest = hashlib.sha256(source.encode()).digest()
    u = (int.from_bytes(digest[:8], "big") / 2**64 + block * GOLDEN) % 1.0
    if u < settings.test_fraction:
        return "test"
    if u < settings.test_fraction + settings.val_fraction:
        return "val"
    return "train"


def split_of_record(record: FinalRecord, settings: ExportSettings) -> str:
    """The record's split, by its source and frame index (a frame of unknown index: its own)."""
    if record.frame_index < 0:
        return split_of(record.frame_id, 0, settings)
    return split_of(record.source or record.frame_id, record.frame_index, settings)


def file_stem(frame_id: str) -> str:
    """The frame id as a file name; an id that is not a safe name is replaced by its hash."""
    if _SAFE_STEM.fullmatch(frame_id):
        return frame_id
    return "frame-" + hashlib.sha256(frame_id.encode()).hexdigest()[:24]


def image_path(split: str, class_name: str, frame_id: str) -> str:
    """The image's path relative to the dataset folder (``/`` separated, as in the manifest)."""
    return f"{split}/{class_name}/{file_stem(frame_id)}.jpg"


@dataclass(frozen=True)
class Written:
    """An image file on disk: its path relative to the folder, sha256 and size."""

    path: str
    sha256: str
    bytes: int


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(root: Path, rel: str, data: bytes) -> Written:
    """Write ``root/rel`` so that it is either absent or complete, whatever kills the process.

    A temporary file under ``root/.tmp`` is written and fsynced, renamed over the target
    (atomic on one file system) and the target's directory fsynced, so the rename survives a
    power cut too.
    """
    target = root / rel
    tmp = root / TMP_DIR / f"{target.name}.{os.getpid()}.tmp"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.parent.mkdir(exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)
    return Written(rel, hashlib.sha256(data).hexdigest(), len(data))


def class_folder_files(root: Path) -> dict[str, Path]:
    """Every file in a class folder (``DIR/<split>/<class>/*``), by its relative path."""
    out = {}
    for split in SPLITS:
        base = root / split
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            for f in sorted(folder.iterdir()):
                out[f"{split}/{folder.name}/{f.name}"] = f
    return out
