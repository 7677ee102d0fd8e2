"""What every part of the label server shares: one Redis client, the keys and the settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from gtx_stream.config import Settings
from gtx_stream.store.keys import Keys


@dataclass
class ServerState:
    """The label server's shared object, handed to the page's API and to ``admin_routes``.

    ``client`` returns bytes (``decode_responses=False``): images are bytes, and the store's
    script wrappers expect such a client.
    """

    client: redis.Redis
    keys: Keys
    settings: Settings
    queue: redis.Redis | None = None
    """The label requests' Redis (``redis.queue_url``: people's RQ queues); None: ``client``."""
