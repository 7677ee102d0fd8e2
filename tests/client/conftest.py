"""A :class:`~gtx_stream.client.Client` on the test's Redis database, and a redis-server of a
test's own that it may kill and restart."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gtx_stream.client import Client
from gtx_stream.config import AggregatorSettings, RedisSettings, Settings
from gtx_stream.ops.embedded import EmbeddedRedis, free_port

MakeClient = Callable[..., Client]


@pytest.fixture
def make_client(redis_url: str) -> Iterator[MakeClient]:
    """``make_client(max_open_frames=..., kappa=...)``: a client with those aggregator
    settings (each call a client of its own, as another process would hold)."""
    made: list[Client] = []

    def make(**aggregator: object) -> Client:
        settings = Settings(
            redis=RedisSettings(url=redis_url),
            aggregator=AggregatorSettings(**aggregator),  # type: ignore[arg-type]
        )
        made.append(Client(settings))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> Client:
    return make_client()


RESTART_PORTS = range(6481, 6490)
"""Where a test's own restartable redis-server listens (others use 6379 and 7000-7300)."""


def _restart_port() -> int:
    """A free one of :data:`RESTART_PORTS`, in random order: another run of these tests that
    looks while this one's server is down for its restart is then unlikely to take its port."""
    for port in random.sample(RESTART_PORTS, len(RESTART_PORTS)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own that keeps its data over a restart (append-only file
    in ``tmp_path``, written before each reply): ``kill()`` it (SIGKILL) and ``start()`` it
    again on the same port."""
    server = EmbeddedRedis(
        port=_restart_port(), data_dir=tmp_path, appendonly=True,
        extra_args=["--appendfsync", "always"],
    )  # fmt: skip
    server.start()
    yield server
    server.cleanup()
