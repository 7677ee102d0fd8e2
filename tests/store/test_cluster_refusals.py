"""What a Redis Cluster refuses, in one line: label requests without a standalone Redis of
their own (RQ does not run on a cluster)."""

from __future__ import annotations

import pytest

from gtx_stream.config import ConfigError, Settings
from gtx_stream.store.connection import connect_both, connect_queue


def _settings(**redis: object) -> Settings:
    return Settings(redis={"url": "redis://127.0.0.1:1", **redis})  # type: ignore[arg-type]


def test_a_cluster_needs_a_standalone_redis_for_the_label_requests() -> None:
    settings = _settings(cluster=True)
    for connecting in (connect_both, connect_queue):
        with pytest.raises(ConfigError, match="RQ does not run on a Redis Cluster") as err:
            connecting(settings, check=False)
        assert "\n" not in str(err.value)
        assert "GTX_REDIS__QUEUE_URL" in str(err.value)
