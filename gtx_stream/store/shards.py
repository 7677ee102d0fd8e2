"""The shard count of a pipeline and the ownership of its shards, in Redis.

The count (``aggregator.shards``) is written once, by the first service that starts (in
practice the first aggregator's setup), with SET NX; every aggregator, ingester and client
checks its own count against it and refuses to start on another (:func:`check_shard_count`):
changing the count of a live pipeline would move frames to other shards under their feet.
Labeler workers and the label server do not configure a count: they read the stored one
(:func:`stored_keys`), so the shard they write a label to is the aggregators' shard.

Each shard has an owner key with a TTL, taken with SET NX PX and renewed or given up only by
its owner (``shard_owner.lua``).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import replace
from typing import Any

import redis

from gtx_stream.config import ConfigError
from gtx_stream.core.records import text
from gtx_stream.store.cluster import is_cluster
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptCall


class ShardCountError(ConfigError):
    """A service configured with another shard count than the pipeline's (one line)."""


def check_shard_count(client: redis.Redis, keys: Keys) -> bool:
    """Store ``keys.shards`` as the pipeline's count if none is stored yet, else check it is
    the stored one; True when this call stored it. Raises :class:`ShardCountError`."""
    if client.set(keys.shard_count, keys.shards, nx=True):
        _remember(client, keys.prefix, keys.shards)
        return True
    stored = int(client.get(keys.shard_count) or 0)
    if stored == keys.shards:
        _remember(client, keys.prefix, stored)
    else:
        raise ShardCountError(
            f"aggregator.shards is {keys.shards} but pipeline {keys.prefix!r} runs {stored} "
            f"shards ({keys.shard_count}); the count of a live pipeline cannot be changed"
        )
    return False


_cache: weakref.WeakKeyDictionary[redis.Redis, dict[str, int]] = weakref.WeakKeyDictionary()
"""client -> prefix -> the stored count, once read or checked (a count never changes)."""
_lock = threading.Lock()


def _cached(client: redis.Redis, prefix: str) -> int | None:
    return _cache.get(client, {}).get(prefix)


def _remember(client: redis.Redis, prefix: str, count: int) -> None:
    with _lock:
        _cache.setdefault(client, {})[prefix] = count


def stored_shards(client: redis.Redis, prefix: str) -> int:
    """The pipeline's stored shard count (1 while none is stored). Read once per client and
    prefix once stored: the count never changes for a live pipeline."""
    found = _cached(client, prefix)
    if found is not None:
        return found
    raw = client.get(Keys(prefix).shard_count)
    if raw is None:
        return 1  # not cached: the first aggregator may store another count later
    count = int(raw)
    _remember(client, prefix, count)
    return count


def layout(client: redis.Redis, keys: Keys) -> Keys:
    """``keys`` in the layout ``client``'s Redis needs: on a Redis Cluster every key a script
    touches carries its shard's hash tag (:attr:`Keys.cluster`)."""
    cluster = is_cluster(client)
    return keys if keys.cluster == cluster else replace(keys, cluster=cluster)


def stored_keys(client: redis.Redis, keys: Keys) -> Keys:
    """``keys`` with the pipeline's stored shard count (for the services that follow it), in
    ``client``'s layout."""
    count = stored_shards(client, keys.prefix)
    keys = layout(client, keys)
    return keys if count == keys.shards else Keys(keys.prefix, shards=count, cluster=keys.cluster)


def shard_owner(keys: Keys, shard: int, consumer: str, ttl_ms: int) -> ScriptCall[bool]:
    """Renew ``consumer``'s ownership of ``shard`` for ``ttl_ms`` (0: give it up); True when
    ``consumer`` owned it."""

    def decode(reply: Any) -> bool:
        return int(reply) == 1

    return ScriptCall("shard_owner", (keys.shard_owner(shard),), (consumer, int(ttl_ms)), decode)


def owners(client: redis.Redis, keys: Keys) -> list[str | None]:
    """The owner of each shard (None: unowned), in shard order (none with one shard)."""
    if keys.shards == 1:
        return []
    names = [keys.shard_owner(k) for k in range(keys.shards)]
    # on a Redis Cluster the owner keys' slots differ: one GET each
    raw = client.mget_nonatomic(names) if is_cluster(client) else client.mget(names)  # type: ignore[attr-defined]
    return [None if v is None else text(v) for v in raw]


def configured_keys(client: redis.Redis, keys: Keys, shards: int) -> Keys:
    """The keys of a pipeline of ``shards`` shards (``aggregator.shards``), after checking that
    count against the stored one (:func:`check_shard_count`; once per client and prefix)."""
    keys = layout(client, keys)
    configured = keys if keys.shards == shards else Keys(keys.prefix, shards=shards,
                                                           cluster=keys.cluster)  # fmt: skip
    if _cached(client, keys.prefix) != shards:  # checked once per client and prefix
        check_shard_count(client, configured)
    return configured
