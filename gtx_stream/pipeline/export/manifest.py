"""The manifest of a dataset folder: one row per finalised frame, the exporter's bookkeeping.

``DIR/manifest.jsonl`` holds a row for every frame the exporter handled: images written
(``image_status = ok``), images that were gone (``missing``, with why) and frames left out by
the filters (``filtered``). It is append-only and fsynced before the exporter acknowledges
anything, so it is also what makes the export exactly once: a frame whose row is there is never
written again. A crash can leave a partial last line; :meth:`Manifest.recover` cuts it off.

Hugging Face ``imagefolder`` reads a ``metadata.jsonl`` per split, whose rows must all name an
image that exists, with the same column types in every split. ``DIR/<split>/metadata.jsonl``
is therefore a second, derived file: the ``ok`` rows of the split, ``file_name`` relative to
the split folder, and the record's lists as JSON text (an empty list has no type of its own).
It is rebuilt from the manifest whenever the exporter starts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from gtx_stream.core.records import FinalRecord
from gtx_stream.pipeline.export.layout import SPLITS, Written, fsync_dir, write_atomic

MANIFEST = "manifest.jsonl"
METADATA = "metadata.jsonl"
UNCONFIDENT_REASONS = frozenset({"exhausted", "budget"})
"""Reasons that end a frame below tau: its label is the best guess, not a confident one."""

ImageStatus = Literal["ok", "missing", "filtered"]
Row = dict[str, Any]

# what a Hugging Face metadata row carries besides ``file_name``: every column of fixed type
_HF_COLUMNS = ("frame_id", "source", "frame_index", "source_file", "split", "class_name",
               "label", "p1", "confidence", "reason", "unconfident", "method", "n_labels",
               "labels", "labelers", "accuracies", "opened_at", "finalised_at", "sha256",
               "bytes", "entry_id", "model", "sensitivities", "specificities")  # fmt: skip
_JSON_TEXT = ("labels", "labelers", "accuracies", "sensitivities", "specificities")
ADDED_LATER: dict[str, Any] = {"model": "one_coin", "sensitivities": [], "specificities": []}
"""Columns a manifest written by an earlier gtx-stream lacks, and what its rows read as."""


class ManifestError(ValueError):
    """A manifest that is not a crash's partial last line away from being well formed."""


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


def row_of(
    record: FinalRecord,
    *,
    split: str,
    class_name: str,
    status: ImageStatus,
    note: str,
    written: Written | None,
    exported_at: float,
) -> Row:
    """The manifest row of one frame: every field of its final record, and where its image is."""
    return {
        "file_name": written.path if written else "",
        "image_status": status,
        "image_note": note,
        "split": split,
        "class_name": class_name,
        "sha256": written.sha256 if written else "",
        "bytes": written.bytes if written else 0,
        "frame_id": record.frame_id,
        "source": record.source,
        "frame_index": record.frame_index,
        "source_file": record.file_name,
        "opened_at": _number(record.opened_at),
        "finalised_at": _number(record.finalised_at),
        "label": record.label,
        "p1": record.p1,
        "confidence": record.confidence,
        "reason": record.reason,
        "unconfident": record.reason in UNCONFIDENT_REASONS,
        "method": record.method,
        "n_labels": record.n_labels,
        "labels": record.labels,
        "labelers": record.labelers,
        "accuracies": record.accuracies,
        "model": record.model,
        "sensitivities": record.sensitivities,
        "specificities": record.specificities,
        "image_key": record.image_key,
        "image_expires_at": _number(record.image_expires_at),
        "entry_id": record.entry_id,
        "exported_at": exported_at,
    }


def _line(row: Mapping[str, Any]) -> bytes:
    return (json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode()


def parse_lines(data: bytes, where: str) -> tuple[list[Row], int]:
    """The rows of a JSON-lines file and the length of its whole lines (a partial one after)."""
    end = data.rfind(b"\n") + 1
    rows = []
    for n, line in enumerate(data[:end].splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ManifestError(f"{where}:{n}: not a JSON row: {err}") from None
        if not isinstance(row, dict) or "frame_id" not in row:
            raise ManifestError(f"{where}:{n}: a row without frame_id")
        rows.append(row)
    return rows, end


class Manifest:
    """``DIR/manifest.jsonl``: read and repaired at start, appended and fsynced per batch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / MANIFEST
        self.rows: dict[str, Row] = {}

    def recover(self) -> int:
        """Read the rows, cut off a partial last line (a crash mid-write); the bytes cut."""
        data = self.path.read_bytes() if self.path.exists() else b""
        rows, end = parse_lines(data, str(self.path))
        if end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        self.rows = {}
        for row in rows:
            self.rows.setdefault(row["frame_id"], row)
        return len(data) - end

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self.rows

    def append(self, rows: Iterable[Row]) -> None:
        """Append rows and fsync: once this returns, they survive a crash."""
        rows = list(rows)
        if not rows:
            return
        new = not self.path.exists()
        with open(self.path, "ab") as f:
            f.write(b"".join(_line(row) for row in rows))
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(self.root)
        for row in rows:
            self.rows.setdefault(row["frame_id"], row)

    def rewrite(self, keep: Iterable[Row]) -> None:
        """Replace the manifest by ``keep`` (atomically): recovery dropping rows of a half-written
        Parquet file, whose frames are then exported again."""
        rows = list(keep)
        write_atomic(self.root, MANIFEST, b"".join(_line(row) for row in rows))
        self.rows = {row["frame_id"]: row for row in rows}


# --- Hugging Face metadata (folder format) ---------------------------------------------------


def metadata_row(row: Mapping[str, Any]) -> Row:
    """A manifest row as Hugging Face reads it from ``DIR/<split>/metadata.jsonl``."""
    out: Row = {"file_name": row["file_name"].split("/", 1)[1]}
    for name in _HF_COLUMNS:
        value = row[name] if name in row else ADDED_LATER[name]
        out[name] = json.dumps(value) if name in _JSON_TEXT else value
    return out


def _by_split(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, list[Row]]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row["image_status"] == "ok":
            groups.setdefault(row["split"], []).append(metadata_row(row))
    yield from groups.items()


def rebuild_metadata(root: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write every split's ``metadata.jsonl`` afresh from manifest rows (at start)."""
    groups = dict(_by_split(rows))
    for split in SPLITS:
        path = root / split / METADATA
        if split in groups:
            write_atomic(root, f"{split}/{METADATA}", b"".join(_line(r) for r in groups[split]))
        elif path.exists():
            path.unlink()


def append_metadata(root: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append the ``ok`` rows of a batch to their splits' ``metadata.jsonl`` (fsynced)."""
    for split, group in _by_split(rows):
        with open(root / split / METADATA, "ab") as f:
            f.write(b"".join(_line(r) for r in group))
            f.flush()
            os.fsync(f.fileno())
