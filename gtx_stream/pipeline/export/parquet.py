"""``gtx-stream export --format parquet``: image bytes and every manifest field in Parquet files.

One file per split and batch, ``DIR/<split>/part-<first entry id>.parquet``, written like an
image (temporary file, fsync, rename), before the batch's manifest rows. The schema is fixed
(an empty list or a missing time never changes a column's type), and its metadata tells
Hugging Face ``datasets`` that ``image`` is an image, so ``load_dataset("parquet",
data_files={"train": "DIR/train/*.parquet", ...})`` decodes it as one. Needs ``pyarrow``
(``pip install -e '.[export-parquet]'``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gtx_stream.config import EXIT_CONFIG
from gtx_stream.pipeline.export.layout import SPLITS, ExportError, write_atomic
from gtx_stream.pipeline.export.manifest import Manifest, Row

log = logging.getLogger(__name__)

# the manifest's columns a Parquet row carries (besides ``image``), with their Arrow types
_COLUMNS: dict[str, str] = {
    "frame_id": "string", "source": "string", "frame_index": "int64", "source_file": "string",
    "split": "string", "class_name": "string", "label": "int64", "p1": "float64",
    "confidence": "float64", "reason": "string", "unconfident": "bool", "method": "string",
    "n_labels": "int64", "labels": "list<int64>", "labelers": "list<string>",
    "accuracies": "list<float64>", "model": "string", "sensitivities": "list<float64>",
    "specificities": "list<float64>", "opened_at": "float64", "finalised_at": "float64",
    "image_key": "string", "image_expires_at": "float64", "entry_id": "string",
    "sha256": "string", "bytes": "int64",
}  # fmt: skip
_HF_FEATURES = {"info": {"features": {"image": {"_type": "Image"}}}}


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the submodule is used as pyarrow.parquet)
    except ImportError:
        raise ExportError(
            "--format parquet needs pyarrow: pip install -e '.[export-parquet]' in the "
            "gtx-stream folder",
            EXIT_CONFIG,
        ) from None
    return pyarrow


def _schema(pa: Any) -> Any:
    def arrow(kind: str) -> Any:
        if kind.startswith("list<"):
            return pa.list_(arrow(kind[5:-1]))
        return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
                "bool": pa.bool_()}[kind]  # fmt: skip

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = [pa.field("image", image), *(pa.field(n, arrow(k)) for n, k in _COLUMNS.items())]
    return pa.schema(fields, metadata={"huggingface": json.dumps(_HF_FEATURES)})


def part_name(split: str, first_entry_id: str) -> str:
    return f"{split}/part-{first_entry_id}.parquet"


class ParquetSink:
    """Writes a batch's ``ok`` rows, per split, into one Parquet file each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pa = _pyarrow()
        self.schema = _schema(self.pa)

    def write_batch(self, rows: list[Row], images: Mapping[str, bytes | None]) -> list[Row]:
        """The rows with ``file_name``, ``sha256`` and ``bytes`` of the ``ok`` ones filled in,
        once their files are on disk."""
        by_split: dict[str, list[Row]] = {}
        for row in rows:
            if row["image_status"] == "ok":
                jpeg = images[row["frame_id"]]
                assert jpeg is not None
                row.update(sha256=hashlib.sha256(jpeg).hexdigest(), bytes=len(jpeg))
                by_split.setdefault(row["split"], []).append(row)
        for split, group in by_split.items():
            rel = part_name(split, group[0]["entry_id"])
            table = self.pa.Table.from_pylist(
                [{"image": {"bytes": images[r["frame_id"]], "path": f"{r['frame_id']}.jpg"},
                  **{n: r[n] for n in _COLUMNS}} for r in group],
                schema=self.schema,
            )  # fmt: skip
            buf = io.BytesIO()
            self.pa.parquet.write_table(table, buf)
            write_atomic(self.root, rel, buf.getvalue())
            for r in group:
                r["file_name"] = rel
        return rows

    def frames_in(self, path: Path) -> list[str]:
        """Frame ids in one Parquet file."""
        return [str(x) for x in self.pa.parquet.read_table(path, columns=["frame_id"]).column(0)]

    def images_in(self, path: Path) -> dict[str, bytes]:
        """Frame id -> image bytes of one Parquet file (``--check``)."""
        table = self.pa.parquet.read_table(path, columns=["frame_id", "image"]).to_pylist()
        return {row["frame_id"]: row["image"]["bytes"] for row in table}

    def files(self) -> list[Path]:
        return [p for split in SPLITS for p in sorted((self.root / split).glob("part-*.parquet"))]

    def recover(self, manifest: Manifest) -> None:
        """After a crash: a Parquet file whose frames are not all in the manifest (killed before
        its rows were fsynced, or while writing them) goes, with whatever rows it has; its
        entries are still pending and come back."""
        drop = set()
        for path in self.files():
            rel = path.relative_to(self.root).as_posix()
            recorded = {f for f, r in manifest.rows.items() if r["file_name"] == rel}
            if set(self.frames_in(path)) != recorded:
                log.info("removing %s: its manifest rows are incomplete (a crash)", rel)
                path.unlink()
                drop |= recorded
        if drop:
            manifest.rewrite(r for f, r in manifest.rows.items() if f not in drop)
