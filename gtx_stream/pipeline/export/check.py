"""``gtx-stream export --check DIR``: a dataset folder against its manifest, one line per problem.

Every ``ok`` row's image exists with the sha256 and size recorded; no image without a row, no
frame twice, nothing but images in the class folders; ``missing`` and ``filtered`` rows say
why and have no image; each split's Hugging Face ``metadata.jsonl`` lists exactly its ``ok``
rows. A Parquet export is checked the same way through its files' frames and image bytes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from gtx_stream.pipeline.export.layout import SPLITS, ExportError, class_folder_files
from gtx_stream.pipeline.export.manifest import (
    MANIFEST,
    METADATA,
    ManifestError,
    metadata_row,
    parse_lines,
)

STATUSES = ("ok", "missing", "filtered")


def check_folder(root: Path) -> list[str]:
    """The problems of the dataset folder ``root`` (empty: it is consistent)."""
    if not root.is_dir():
        return [f"{root}: no such folder"]
    path = root / MANIFEST
    if not path.is_file():
        return [f"{path}: no manifest (is {root} a folder written by gtx-stream export?)"]
    data = path.read_bytes()
    try:
        rows, end = parse_lines(data, str(path))
    except ManifestError as err:
        return [str(err)]
    problems = []
    if end < len(data):
        problems.append(f"{path}: a partial last line ({len(data) - end} bytes; an exporter "
                        f"was killed while writing: restart it to repair)")  # fmt: skip
    for frame_id, n in Counter(r["frame_id"] for r in rows).items():
        if n > 1:
            problems.append(f"frame {frame_id}: {n} manifest rows")
    for row in rows:
        if row.get("image_status") not in STATUSES:
            problems.append(f"frame {row['frame_id']}: image_status {row.get('image_status')!r}")
        elif row["image_status"] != "ok" and not row.get("image_note"):
            problems.append(f"frame {row['frame_id']}: {row['image_status']} without a reason")
    ok = [r for r in rows if r.get("image_status") == "ok"]
    if any(r["file_name"].endswith(".parquet") for r in ok):
        return problems + _check_parquet(root, ok)
    return problems + _check_images(root, ok) + _check_metadata(root, ok)


def _check_images(root: Path, ok: list[dict[str, Any]]) -> list[str]:
    problems = []
    on_disk = class_folder_files(root)
    for row in ok:
        rel = row["file_name"]
        f = on_disk.get(rel)
        if f is None:
            problems.append(f"frame {row['frame_id']}: image {rel} does not exist")
            continue
        data = f.read_bytes()
        if len(data) != row["bytes"] or hashlib.sha256(data).hexdigest() != row["sha256"]:
            problems.append(f"frame {row['frame_id']}: image {rel} differs from its row "
                            f"(sha256 or size)")  # fmt: skip
        if rel != f"{row['split']}/{row['class_name']}/{Path(rel).name}":
            problems.append(f"frame {row['frame_id']}: image {rel} is not in its class folder")
    recorded = {r["file_name"] for r in ok}
    for rel in on_disk:
        if rel not in recorded:
            what = "an image" if rel.endswith(".jpg") else "a file that is not an image"
            problems.append(f"{rel}: {what} without a manifest row")
    return problems


def _check_metadata(root: Path, ok: list[dict[str, Any]]) -> list[str]:
    problems = []
    for split in SPLITS:
        want = [metadata_row(r) for r in ok if r["split"] == split]
        path = root / split / METADATA
        if not path.exists():
            if want:
                problems.append(f"{path}: missing ({len(want)} images in {split})")
            continue
        try:
            have, end = parse_lines(path.read_bytes(), str(path))
        except ManifestError as err:
            problems.append(str(err))
            continue
        key = lambda r: r["frame_id"]  # noqa: E731
        if sorted(have, key=key) != sorted(want, key=key) or end < path.stat().st_size:
            problems.append(f"{path}: does not list exactly the {len(want)} images of {split} "
                            f"({len(have)} rows)")  # fmt: skip
    return problems


def _check_parquet(root: Path, ok: list[dict[str, Any]]) -> list[str]:
    from gtx_stream.pipeline.export.parquet import ParquetSink

    try:
        sink = ParquetSink(root)
    except ExportError as err:
        return [str(err)]
    problems = []
    seen: Counter[str] = Counter()
    images: dict[str, tuple[str, bytes]] = {}
    for path in sink.files():
        rel = path.relative_to(root).as_posix()
        for frame_id, data in sink.images_in(path).items():
            seen[frame_id] += 1
            images[frame_id] = (rel, data)
    for frame_id, n in seen.items():
        if n > 1:
            problems.append(f"frame {frame_id}: in {n} Parquet rows")
    by_frame = {r["frame_id"]: r for r in ok}
    for frame_id, row in by_frame.items():
        if frame_id not in images:
            problems.append(f"frame {frame_id}: not in any Parquet file")
            continue
        rel, data = images[frame_id]
        if rel != row["file_name"] or hashlib.sha256(data).hexdigest() != row["sha256"]:
            problems.append(f"frame {frame_id}: its Parquet image differs from its row")
    for frame_id in images.keys() - by_frame.keys():
        problems.append(f"frame {frame_id}: in {images[frame_id][0]} without a manifest row")
    return problems
