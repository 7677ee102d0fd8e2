"""``submit``: open one frame from an application, by the ingester's rules.

The frame is opened by ``open_frame.lua``, as the ingester opens one: the same TTL, the same
backpressure (``aggregator.max_open_frames``, and kappa labels of budget kept for every open
frame), the same JPEG quality. Its index comes from ``reserve_index.lua``: handed out once per
source, so two processes submitting to one source never collide and a restarted application
never reuses an id. A caller blocks while the pipeline is full, up to its timeout.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping

import numpy as np
import redis

from gtx_stream.client.errors import BudgetSpent, PipelineFull
from gtx_stream.config import Settings
from gtx_stream.core.records import FinalRecord, decode_fields
from gtx_stream.pipeline.ingest.images import decode_image, encode_jpeg
from gtx_stream.pipeline.ingest.ingester import (
    FULL_WAIT_FIRST,
    FULL_WAIT_MAX,
    SOURCE_ID,
    frame_id_of,
    open_frame,
)
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.shards import configured_keys

PIPELINE_FIELDS = frozenset(
    {"state", "source", "source_id", "frame_index", "opened_at", "n_labels", "final_id",
     "truth", "task", "eligible", "file_name"}
    | {f.name for f in dataclasses.fields(FinalRecord)}
)  # fmt: skip
"""Fields of a frame hash that the pipeline writes (``open_frame.lua``, the ingester,
``finalise.lua``): metadata may not take these names."""

METADATA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
MAX_METADATA_BYTES = 16_384


def metadata_fields(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """``metadata`` checked: string names and values, no name of the pipeline's own."""
    out: dict[str, str] = {}
    size = 0
    for name, value in (metadata or {}).items():
        if not isinstance(name, str) or not METADATA_NAME.fullmatch(name):
            raise ValueError(
                f"metadata name {name!r}: use a letter, then letters, digits, '_', '.', '-' "
                "(at most 64)"
            )
        if name in PIPELINE_FIELDS:
            raise ValueError(f"metadata name {name!r} is a field of the pipeline's own")
        if not isinstance(value, str):
            raise ValueError(f"metadata {name!r}: values are strings, got {type(value).__name__}")
        size += len(name) + len(value.encode())
        out[name] = value
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata of {size} bytes: at most {MAX_METADATA_BYTES}")
    return out


def as_jpeg(image: np.ndarray | bytes, quality: int) -> bytes:
    """A BGR (or grey) uint8 image encoded as the ingester does; JPEG bytes kept as they are,
    once checked to be a whole JPEG (a cut-short one would be labeled as if whole)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
        ):
            raise ValueError(
                f"submit takes a BGR or grey uint8 image, got {image.dtype} of shape {image.shape}"
            )
        return encode_jpeg(image, quality)
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        if data[:2] != b"\xff\xd8":
            raise ValueError("submit takes a numpy image or JPEG bytes: these bytes are no JPEG")
        decode_image(data)  # raises ImageError (a ValueError) with the reason
        return data
    raise TypeError(f"submit takes a numpy image or JPEG bytes, got {type(image).__name__}")


def submit(
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    image: np.ndarray | bytes,
    *,
    source: str,
    metadata: Mapping[str, str] | None = None,
    truth: int | None = None,
    timeout: float | None = 60.0,
) -> str:
    """Open one frame of ``source`` and return its id, ``<source>-<index>``.

    While the pipeline is full, wait (backing off from 20 ms to 0.5 s) up to ``timeout``
    seconds (None: for ever; 0: not at all), then raise :class:`PipelineFull`. Raises
    :class:`BudgetSpent` once the label budget is spent, ValueError for a bad argument.
    ``truth`` (0 or 1) is for simulated labelers, which draw their labels from it.
    """
    if not SOURCE_ID.fullmatch(source):
        raise ValueError(f"source {source!r}: use letters, digits, '_', '.', '-' (at most 64)")
    fields = metadata_fields(metadata)
    if truth is not None:
        if truth not in (0, 1):
            raise ValueError(f"truth must be 0 or 1, got {truth!r}")
        # as "0" or "1" whatever it came as (True, 1.0, numpy.int64(1)): simulated labelers
        # parse it with int(), and str(True) is "True"
        fields["truth"] = str(int(truth))
    jpeg = as_jpeg(image, settings.ingest.jpeg_quality)
    # the opened stream of the frame's shard; the first submit refuses another shard count
    keys = configured_keys(client, keys, settings.aggregator.shards)
    runner = ScriptRunner(client)
    index = runner.run_one(frame_scripts.reserve_index(keys, source))
    deadline = None if timeout is None else time.monotonic() + timeout
    wait = FULL_WAIT_FIRST
    while True:
        code = open_frame(
            client,
            keys,
            source=source,
            source_id=source,
            frame_index=index,
            jpeg=jpeg,
            ttl=settings.ingest.frame_ttl,
            max_open_frames=settings.aggregator.max_open_frames,
            fields=fields,
            reserve_per_frame=settings.aggregator.reserve_per_frame,
            max_open_per_source=settings.ingest.max_open_per_source,
            source_share=settings.aggregator.budget_per_source,
            reserved=True,
        )
        if code == "opened":
            return frame_id_of(source, index)
        if code == "budget":
            raise BudgetSpent("the label budget is spent (or this source's share of it)")
        if code == "duplicate":
            # an ingester opened this index under the same source id: take the next one
            index = runner.run_one(frame_scripts.reserve_index(keys, source))
            continue
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise PipelineFull(
                f"the pipeline stayed full for {timeout:g} s (max_open_frames "
                f"{settings.aggregator.max_open_frames}, or the budget left is kept for the "
                "open frames): nothing was opened"
            )
        time.sleep(wait if left is None else min(wait, left))
        wait = min(wait * 2, FULL_WAIT_MAX)


def metadata(client: redis.Redis, keys: Keys, frame_id: str) -> dict[str, str]:
    """The metadata a frame was submitted with, while its state lives (``ingest.frame_ttl``
    while open, ``retention.frame_grace_seconds`` after finalisation); {} when gone."""
    raw = decode_fields(client.hgetall(keys.frame(frame_id)))
    return {k: v for k, v in raw.items() if k not in PIPELINE_FIELDS}
