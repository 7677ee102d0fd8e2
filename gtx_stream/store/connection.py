"""Connecting to the configured Redis, with one-line errors instead of tracebacks."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.exceptions import RedisClusterException

from gtx_stream.config import ConfigError, Settings
from gtx_stream.store.cluster import cluster_client

_SECRET_QUERY = re.compile(r"(?i)((?:^|&)(?:ssl_)?password=)[^&]*")
# a node's ``user:password@`` in a cluster URL of several nodes (``h1:1,redis://u:p@h2:2``)
_NODE_SECRET = re.compile(r"(://|^|,)([^:@/,?#]*):[^@/?#]*@")
_CLUSTER_PREAMBLE = (
    "Redis Cluster cannot be connected. Please provide at least one reachable node: "
)
_AUTH_REFUSED = ("invalid username-password", "WRONGPASS", "NOAUTH", "Authentication")


def redacted(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and ``status``).

    Also a ``password`` or ``ssl_password`` in the query, which redis-py takes as well, and
    every node's password in a Redis Cluster URL of several nodes
    (:func:`gtx_stream.store.cluster.startup_nodes`).
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # as written: ``[::1]:6379``, ``h1:1,h2:2``
    if "," in host:
        body, sep, query = _NODE_SECRET.sub(r"\1\2:***@", url).partition("?")
        return body + sep + _SECRET_QUERY.sub(r"\1***", query)
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    if parts.password is None:
        if query == parts.query:
            return url
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, query, ""))


def connect(
    settings: Settings,
    url: str | None = None,
    check: bool = True,
    *,
    decode_responses: bool = False,
    field: str = "redis.url",
) -> redis.Redis:
    """The one builder of Redis clients: for ``url`` (default: settings.redis.url).

    Raises :class:`ConfigError` with a one-line message when the URL is empty or unusable
    (``http://...``, a bad port) and, with ``check``, when the server does not answer a PING
    (unreachable, or the credentials are refused). Services that must ride out a Redis that
    is not up yet pass ``check=False``: a bad URL is still refused at once. ``field`` names
    the setting in those messages.
    """
    url = url if url is not None else settings.redis.url.get_secret_value()
    if not url:
        raise ConfigError(
            "config error: redis.url is empty (no Redis URL): "
            "set GTX_REDIS__URL or [redis] url in the config file"
        )
    on_cluster = settings.redis.cluster and field == "redis.url"
    try:
        if on_cluster:
            client: redis.Redis = cluster_client(  # type: ignore[assignment]
                url, settings.redis.wait_replicas,
                socket_timeout=settings.redis.socket_timeout,
                socket_connect_timeout=min(2.0, settings.redis.socket_timeout),
                decode_responses=decode_responses,
            )  # fmt: skip
        else:
            client = redis.Redis.from_url(
                url,
                socket_timeout=settings.redis.socket_timeout,
                socket_connect_timeout=settings.redis.socket_timeout,
                health_check_interval=30,
                decode_responses=decode_responses,
            )
    except (redis.RedisError, RedisClusterException) as err:
        # redis-py connects to a cluster when the client is built: no node answered, or
        # every one refused the credentials (not a RedisError)
        reason = str(err).removeprefix(_CLUSTER_PREAMBLE)
        problem = ": authentication failed" if any(a in reason for a in _AUTH_REFUSED) else (
            " is unreachable")  # fmt: skip
        raise ConfigError(f"redis cluster at {redacted(url)}{problem}: {reason}") from None
    except ValueError as err:
        # redis-py's messages name the part of the URL that is wrong, never its password
        raise ConfigError(f"config error: {field}: {err}") from None
    if check:
        what = "redis" if field == "redis.url" else f"{field} redis"
        try:
            client.ping()
        except redis.AuthenticationError as err:
            raise ConfigError(f"{what} at {redacted(url)}: authentication failed: {err}") from None
        except redis.RedisError as err:
            raise ConfigError(f"{what} at {redacted(url)} is unreachable: {err}") from None
    return client


def has_queue_redis(settings: Settings) -> bool:
    """Whether label requests (RQ queues and jobs) live on a Redis of their own
    (``redis.queue_url``); else on ``redis.url`` with the state."""
    return bool(settings.redis.queue_url.get_secret_value())


def connect_queue(settings: Settings, check: bool = True) -> redis.Redis:
    """A client for the label requests' Redis: ``redis.queue_url``, else ``redis.url``.

    RQ runs on a standalone Redis only (no Redis Cluster): everything RQ (enqueueing, the
    labeler workers' queues, batch draining, a person's feed, queue lengths) goes through
    this client, everything else through :func:`connect`'s.
    """
    if not has_queue_redis(settings):
        _queue_off_cluster(settings)
        return connect(settings, check=check)
    url = settings.redis.queue_url.get_secret_value()
    return connect(settings, url, check=check, field="redis.queue_url")


def connect_both(settings: Settings, check: bool = True) -> tuple[redis.Redis, redis.Redis]:
    """(state, queue): the state client and the label requests' one; the same client when
    ``redis.queue_url`` is empty (the queues live with the state, one connection pool)."""
    if not has_queue_redis(settings):
        _queue_off_cluster(settings)
        state = connect(settings, check=check)
        return state, state
    state = connect(settings, check=check)
    try:
        return state, connect_queue(settings, check=check)
    except BaseException:
        state.close()
        raise


def _queue_off_cluster(settings: Settings) -> None:
    if settings.redis.cluster:
        raise ConfigError(
            "config error: redis.cluster is set but redis.queue_url is empty: RQ does not run "
            "on a Redis Cluster, so the label requests need a standalone Redis "
            "(set GTX_REDIS__QUEUE_URL)"
        )
