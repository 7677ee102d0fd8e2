"""Shared fixtures and the ``redis`` marker.

Redis tests run against a real server: ``$GTX_TEST_REDIS_URL`` when set, else a private
redis-server that the session starts (see :mod:`gtx_stream.ops.embedded`). Each test gets a
database that is checked to be empty first and flushed afterwards.

Every test that needs a server carries the ``redis`` marker, so that ``pytest -m "not redis"``
runs the tests that need nothing: the tests that use the Redis fixtures and the chaos tests
are marked here; a test that starts its own redis-server (directly or through a process)
carries an explicit ``@pytest.mark.redis``. An unmarked test that starts an
:class:`EmbeddedRedis` in this process fails, so a forgotten mark shows at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import redis

from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.store.keys import Keys

DATASETS = Path(
    os.environ.get("GTX_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)

# Every Redis fixture below depends on this one; ``item.fixturenames`` is the closure.
SERVER_FIXTURE = "redis_server"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs_server = SERVER_FIXTURE in getattr(item, "fixturenames", ())
        if needs_server or item.get_closest_marker("chaos") is not None:
            item.add_marker(pytest.mark.redis)


@pytest.fixture(autouse=True)
def _servers_need_the_redis_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """An unmarked test may not start a redis-server: ``-m "not redis"`` would not skip it."""
    if request.node.get_closest_marker("redis") is not None:
        yield
        return

    def refuse(self: EmbeddedRedis, *args: object, **kwargs: object) -> EmbeddedRedis:
        pytest.fail(
            f"{request.node.nodeid} starts a redis-server: mark it @pytest.mark.redis",
            pytrace=False,
        )

    with mock.patch.object(EmbeddedRedis, "start", refuse):
        yield


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
