"""What every part of the label server shares: one Redis client, the keys and the settings."""

from __future__ import annotations

import redis

from gtx_stream.config import Settings
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import stored_keys


class ServerState:
    """The label server's shared object, handed to the page's API and to ``admin_routes``.

    ``client`` returns bytes (``decode_responses=False``): images are bytes, and the store's
    script wrappers expect such a client. ``queue``: the label requests' Redis
    (``redis.queue_url``: people's RQ queues); None: ``client``.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: Settings,
        queue: redis.Redis | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.queue = queue
        self._keys = keys

    @property
    def keys(self) -> Keys:
        """The pipeline's keys: its stored shard count (the first aggregator stores it, maybe
        after this server started; read once stored) in ``client``'s layout (on a Redis
        Cluster a person's hand is per shard: :mod:`gtx_stream.store.people`)."""
        return stored_keys(self.client, self._keys)
