"""A :class:`~gtx_stream.client.Client` on the test's Redis database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gtx_stream.client import Client
from gtx_stream.config import AggregatorSettings, RedisSettings, Settings

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
