"""The client an application holds: one Redis connection, the pipeline's keys and settings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType

import numpy as np

from gtx_stream.client import consume, submit, wait
from gtx_stream.client.reconnect import Reconnect, check_reconnect_seconds
from gtx_stream.config import Settings, load_settings
from gtx_stream.core.records import FinalRecord
from gtx_stream.store.connection import connect, redacted
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import layout

RECONNECT_SECONDS = 30.0
"""How long ``wait`` and ``final_labels`` try to reach a Redis that restarted, by default."""


class Client:
    """Submit frames, wait for their labels, read the final stream.

    ``settings`` default to :func:`~gtx_stream.config.load_settings` (``config.toml`` and
    ``GTX_*`` variables); ``url`` overrides ``redis.url``. The limits that ``submit`` obeys
    (``aggregator.max_open_frames``, ``aggregator.kappa``, ``ingest.frame_ttl``,
    ``ingest.jpeg_quality``) come from these settings: give the client the pipeline's config.
    """

    def __init__(self, settings: Settings | None = None, *, url: str | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.redis = connect(self.settings, url)
        self.url = redacted(url if url is not None else self.settings.redis.url.get_secret_value())
        # in the layout of the pipeline's Redis (a cluster's: each shard's final stream...)
        shards = self.settings.aggregator.shards
        self.keys = layout(self.redis, Keys(self.settings.redis.prefix, shards=shards))

    def submit(
        self,
        image: np.ndarray | bytes,
        *,
        source: str,
        metadata: Mapping[str, str] | None = None,
        truth: int | None = None,
        timeout: float | None = 60.0,
    ) -> str:
        """Open a frame (a BGR image or JPEG bytes) of ``source``; returns its frame id.

        Blocks while the pipeline is full, up to ``timeout`` s (then :class:`PipelineFull`);
        :class:`BudgetSpent` once the budget is spent. ``metadata`` (string names and values)
        is stored in the frame hash: :meth:`metadata` reads it back.
        """
        return submit.submit(self.redis, self.keys, self.settings, image, source=source,
                             metadata=metadata, truth=truth, timeout=timeout)  # fmt: skip

    def wait(
        self,
        frame_id: str,
        timeout: float | None = 60.0,
        *,
        reconnect_seconds: float | None = RECONNECT_SECONDS,
    ) -> FinalRecord:
        """The frame's final record once it is final: TimeoutError after ``timeout`` s (None:
        for ever), :class:`FrameDropped` or :class:`UnknownFrame` when it never will be. A
        Redis restart meanwhile is ridden out for up to ``reconnect_seconds`` (0: redis-py's
        ConnectionError at once; None: for ever), then :class:`RedisUnreachable`."""
        check_reconnect_seconds("wait", reconnect_seconds)
        return wait.wait(self.redis, self.keys, frame_id, timeout,
                         self.settings.redis.socket_timeout,
                         Reconnect(self.url, reconnect_seconds))  # fmt: skip

    def metadata(self, frame_id: str) -> dict[str, str]:
        """The metadata ``frame_id`` was submitted with, while its state lives."""
        return submit.metadata(self.redis, self.keys, frame_id)

    def final_labels(
        self,
        group: str,
        consumer: str,
        *,
        batch_size: int = 100,
        claim_idle_seconds: float = 60.0,
        idle_seconds: float | None = None,
        reconnect_seconds: float | None = RECONNECT_SECONDS,
    ) -> Iterator[FinalRecord]:
        """Final records through the consumer group ``group`` (created if new, from the first
        entry): each is acknowledged when the next is asked for; see :mod:`.consume`.

        A bad argument raises ValueError here, before the first record is asked for. A Redis
        restart is ridden out for up to ``reconnect_seconds`` (0: redis-py's ConnectionError
        at once; None: for ever), then :class:`RedisUnreachable`; nothing is handed out twice
        or lost by it, and what was not acknowledged comes again on the next call.
        """
        consume.check_arguments(group, consumer, self.settings.export.group, batch_size,
                                claim_idle_seconds, reconnect_seconds)  # fmt: skip
        return consume.final_labels(
            self.redis, self.keys, group, consumer,
            socket_timeout=self.settings.redis.socket_timeout,
            link=Reconnect(self.url, reconnect_seconds), batch_size=batch_size,
            claim_idle_seconds=claim_idle_seconds, idle_seconds=idle_seconds,
        )  # fmt: skip

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
