"""Connecting to the configured Redis, with one-line errors instead of tracebacks."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from gtx_stream.config import ConfigError, Settings
from gtx_stream.core.signals import set_from_signal
from gtx_stream.store.cluster import AUTH_REFUSED, cluster_client, not_up_yet

log = logging.getLogger(__name__)

_SECRET_QUERY = re.compile(r"(?i)((?:^|&)(?:ssl_)?password=)[^&]*")
# a node's ``user:password@`` in a cluster URL of several nodes (``h1:1,redis://u:p@h2:2``)
_NODE_SECRET = re.compile(r"(://|^|,)([^:@/,?#]*):[^@/?#]*@")
_CLUSTER_PREAMBLE = (
    "Redis Cluster cannot be connected. Please provide at least one reachable node: "
)
CLUSTER_WAIT_FIRST = 0.2
"""Seconds before building a cluster client again while the cluster is not up; doubles up to
CLUSTER_WAIT_MAX (a standalone Redis's services wait the same way)."""
CLUSTER_WAIT_MAX = 2.0


class RedisUnreachable(ConfigError):
    """Redis did not answer (it may not be up yet): one line, as a configuration error is,
    but a command exits 1 on it, not EXIT_CONFIG, so that a service manager restarts it."""

    exit_status = 1


class StoppedWaiting(SystemExit):
    """SIGTERM or SIGINT (or the caller's stop event) came while a service waited for its Redis
    Cluster to come up: it exits 0, as after a stop once running."""

    def __init__(self) -> None:
        super().__init__(0)


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
    stop: threading.Event | None = None,
) -> redis.Redis:
    """The one builder of Redis clients: for ``url`` (default: settings.redis.url).

    Raises :class:`ConfigError` with a one-line message when the URL is empty or unusable
    (``http://...``, a bad port) and, with ``check``, when the credentials are refused or the
    server is of the wrong kind; :class:`RedisUnreachable` (exit 1: a restart may find it up)
    when it does not answer a PING. Services that must ride out a Redis that
    is not up yet pass ``check=False``: a bad URL is still refused at once. ``field`` names
    the setting in those messages.

    A Redis Cluster client reads the slot map when it is built, so with ``check=False`` this
    waits, with a backoff and a log line per try, until the cluster answers (refused
    credentials and a server that is no cluster node are still one line at once). It raises
    :class:`StoppedWaiting` when ``stop`` is set meanwhile, or, without one, on SIGTERM or
    SIGINT (in the main thread).
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
            build = functools.partial(
                cluster_client, url, settings.redis.wait_replicas,
                socket_timeout=settings.redis.socket_timeout,
                socket_connect_timeout=min(2.0, settings.redis.socket_timeout),
                decode_responses=decode_responses,
            )  # fmt: skip
            built = build() if check else _cluster_once_up(build, redacted(url), stop)
            client: redis.Redis = built  # type: ignore[assignment]
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
        problem, fixed_by_settings = _cluster_problem(reason)
        raise (ConfigError if fixed_by_settings else RedisUnreachable)(
            f"redis cluster at {redacted(url)}{problem}") from None  # fmt: skip
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
            raise RedisUnreachable(f"{what} at {redacted(url)} is unreachable: {err}") from None
        if not on_cluster and _is_cluster_node(client):
            raise ConfigError(f"{what} at {redacted(url)} is a Redis Cluster node: " + (
                "set redis.cluster = true (GTX_REDIS__CLUSTER) and a standalone "
                "redis.queue_url" if field == "redis.url" else
                "RQ does not run on a Redis Cluster, so the label requests need a standalone "
                "Redis"))  # fmt: skip
    return client


def _cluster_problem(reason: str) -> tuple[str, bool]:
    """What a cluster client that could not be built says, after the cluster's address, and
    whether only other settings fix it (else the cluster may come up: RedisUnreachable)."""
    if any(a in reason for a in AUTH_REFUSED):
        return f": authentication failed: {reason}", True
    if "Cluster mode is not enabled" in reason:
        return (f" is no cluster node ({reason}): a standalone Redis needs "
                "redis.cluster = false"), True  # fmt: skip
    if reason.startswith("All slots are not covered"):
        # the nodes answer: not created yet (redis-cli --cluster create), or a master is down
        # with no replica to take over
        return (f" does not serve every slot (not created yet, or a master is down): "
                f"{reason}"), False  # fmt: skip
    return f" is unreachable: {reason}", False


def _is_cluster_node(client: redis.Redis) -> bool:
    """Whether a standalone client's server is a Redis Cluster node, where its first key of
    another node's slot would fail with a bare MOVED. ``HELLO`` without arguments (the
    connection keeps its protocol) says it as ``mode``; unlike ``INFO`` every ACL user may
    send it, with no ``ACL LOG`` entry."""
    try:
        reply = client.execute_command("HELLO")
    except redis.RedisError:  # it answered PING: whatever this is, it is no reason to stop
        return False
    if isinstance(reply, list):  # a RESP2 connection: flat pairs
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    mode = reply.get(b"mode", reply.get("mode")) if isinstance(reply, dict) else None
    return mode in (b"cluster", "cluster")


def _cluster_once_up(
    build: Callable[[], RedisCluster], shown: str, stop: threading.Event | None
) -> RedisCluster:
    """``build()``, tried again while the cluster is not up (yet), until it answers."""
    try:
        return build()
    except (redis.RedisError, RedisClusterException) as err:
        if not not_up_yet(err):
            raise
        reason = err
    since = time.monotonic()
    wait = CLUSTER_WAIT_FIRST
    with _stop_on_signals(stop) as stopping:
        while True:
            log.warning("redis cluster at %s is not up (%s): trying again in %.1f s", shown,
                        str(reason).removeprefix(_CLUSTER_PREAMBLE), wait)  # fmt: skip
            if stopping.wait(wait):
                log.info("stopped while waiting for the redis cluster at %s", shown)
                raise StoppedWaiting
            wait = min(2 * wait, CLUSTER_WAIT_MAX)
            try:
                client = build()
            except (redis.RedisError, RedisClusterException) as err:
                if not not_up_yet(err):
                    raise
                reason = err
                continue
            log.info("redis cluster at %s is up after %.1f s", shown, time.monotonic() - since)
            return client


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event | None) -> Iterator[threading.Event]:
    """``stop``, or an event that SIGTERM and SIGINT set while this lasts (in the main thread;
    the caller's own handlers, if any, come back after)."""
    if stop is not None or threading.current_thread() is not threading.main_thread():
        yield stop if stop is not None else threading.Event()
        return
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        set_from_signal(stopping)

    saved: dict[int, Any] = {
        s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield stopping
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


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
