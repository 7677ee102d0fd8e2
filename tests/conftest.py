"""Shared fixtures.

Redis tests run against a real server: ``$GTX_TEST_REDIS_URL`` when set, else a private
redis-server that the session starts (see :mod:`gtx_stream.ops.embedded`). Each test gets a
database that is checked to be empty first and flushed afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.store.keys import Keys

DATASETS = Path(
    os.environ.get("GTX_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    url = os.environ.get("GTX_TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server)
    assert client.dbsize() == 0, "test database is not empty"
    yield redis_server
    client.flushdb()
    client.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def keys() -> Keys:
    return Keys("gtx")


@pytest.fixture
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"datasets folder not found: {DATASETS}")
    return DATASETS
