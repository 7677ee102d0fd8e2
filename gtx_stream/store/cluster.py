"""Redis Cluster for the state and streams (``redis.cluster``): the client, and script calls
sent node by node.

RQ does not run on a Redis Cluster, so the label requests stay on a standalone Redis
(``redis.queue_url``, :func:`gtx_stream.store.connection.connect_queue`); everything else may
live on a cluster. There every key a script touches carries its shard's hash tag
(:class:`gtx_stream.store.keys.Keys` with ``cluster``), so each call touches one slot, and a
step's calls go to the node that owns their slot, one pipelined round trip per node.

A master that dies is replaced by its replica once the cluster has noticed
(``cluster-node-timeout``); meanwhile calls fail with connection errors, MOVED or CLUSTERDOWN.
:func:`run_on_cluster` retries a batch until ``retry_seconds`` have passed, refreshing the
slot map between tries. Every script is safe to run twice (a redelivered label, a stale ask or
finalise is refused), so a batch that was cut off half way is simply sent again.

Replication is asynchronous: a write a master acknowledged may be lost with it. With
``wait_replicas`` (``redis.wait_replicas``, default 1) each node's round trip ends with
``WAIT``, so a step's writes are on a replica before the step goes on (enqueues the label
requests, acknowledges the labels it applied): what a failover may lose is then only what no
step acted on yet.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

log = logging.getLogger(__name__)

RETRY_FIRST = 0.05
RETRY_MAX = 1.0
WAIT_TIMEOUT_MS = 1000
"""How long one ``WAIT`` waits for the replicas (a replica that lags longer is logged)."""

AUTH_REFUSED = ("invalid username-password", "WRONGPASS", "NOAUTH", "Authentication")
"""What a node's refusal of the credentials says (in redis-py's message about the cluster)."""


class ClusterUnreachable(ConnectionError, RedisClusterException):
    """No node of the cluster answered a read of the slot map, or the ones that did do not
    cover every slot (a cluster being created, a master dead with no replica to replace it).

    redis-py raises a bare ``RedisClusterException`` for it, which is no ``RedisError``: out of
    a command on a cluster that went down, it passed every service's ``except UNAVAILABLE``
    and ended the service with a traceback. A client from :func:`cluster_client` raises this
    one instead, a ``ConnectionError``.
    """


UNAVAILABLE = (ConnectionError, TimeoutError, ClusterDownError, TryAgainError, SlotNotCoveredError)
"""What a Redis that restarts, or a cluster while a master fails over ("CLUSTERDOWN", "TRYAGAIN"
from a pipeline, a slot with no master yet) or while all of it is down
(:class:`ClusterUnreachable`, a ConnectionError), raises: a service waits and tries again
instead of exiting."""

RETRYABLE = (*UNAVAILABLE, MovedError)
"""What :func:`with_retry` tries again after reading the slot map again: the above, and a slot
that moved."""


def is_cluster(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


_wait_replicas: weakref.WeakKeyDictionary[RedisCluster, int] = weakref.WeakKeyDictionary()


def startup_nodes(url: str) -> tuple[str, list[ClusterNode]]:
    """``redis://[user:password@]host:port[,host:port...]``: the URL of the first node (its
    credentials and options are every node's) and the other nodes to start from, so that a
    client starts while a node is down."""
    first, *others = (part.strip() for part in url.split(","))
    nodes = []
    for other in others:
        address = other.split("://", 1)[-1].split("@", 1)[-1].split("/", 1)[0]
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"cluster node {address!r} is not host:port")
        nodes.append(ClusterNode(host, int(port)))
    if others and "/" in others[-1].split("://", 1)[-1]:  # the path and query come last
        first += "/" + others[-1].split("://", 1)[-1].split("/", 1)[1]
    return first, nodes


def cluster_client(url: str, wait_replicas: int = 1, **kwargs: Any) -> RedisCluster:
    """A client for the cluster whose nodes ``url`` names (one or several,
    :func:`startup_nodes`); its script calls wait for ``wait_replicas`` replicas
    (:func:`wait_replicas_of`)."""
    first, nodes = startup_nodes(url)
    client = RedisCluster.from_url(first, startup_nodes=nodes, **kwargs)
    # every later read of the slot map (after a connection error, in refresh, in a pipeline)
    client.nodes_manager.initialize = _unreachable_as_connection_error(  # type: ignore[method-assign]
        client.nodes_manager.initialize
    )
    _wait_replicas[client] = wait_replicas
    return client


def not_up_yet(err: BaseException) -> bool:
    """Whether ``err``, from building a cluster client or reading its slot map, says that the
    cluster is not up (yet): no node answered, or those that did do not cover every slot. Not
    refused credentials, nor a server that is no cluster node: waiting mends neither."""
    if isinstance(err, redis.AuthenticationError) or any(a in str(err) for a in AUTH_REFUSED):
        return False
    if isinstance(err, UNAVAILABLE):
        return True
    if not isinstance(err, RedisClusterException):
        return False
    message = str(err)
    # being created, or nodes whose views of a failover differ for a moment
    if message.startswith(("All slots are not covered", "startup_nodes could not agree")):
        return True
    # redis-py raises it from the last node's error ("Cluster mode is not enabled" is none)
    cause = err.__cause__
    return message.startswith("Redis Cluster cannot be connected") and isinstance(
        cause, ConnectionError | TimeoutError
    )


def _unreachable_as_connection_error(initialize: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(initialize)
    def read_slot_map(*args: Any, **kwargs: Any) -> Any:
        try:
            return initialize(*args, **kwargs)
        except RedisClusterException as err:
            if isinstance(err, redis.RedisError) or not not_up_yet(err):
                raise
            raise ClusterUnreachable(str(err)) from err

    return read_slot_map


def wait_replicas_of(client: Any) -> int:
    """The replicas a script round trip on ``client`` waits for (``redis.wait_replicas``)."""
    return _wait_replicas.get(client, 1) if is_cluster(client) else 0


def _retryable(err: BaseException) -> bool:
    if isinstance(err, RETRYABLE):
        return True
    message = str(err)
    return isinstance(err, redis.ResponseError) and message.startswith(
        ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY")
    )


def refresh(client: RedisCluster) -> None:
    """Read the slot map again (after a failover or a resharding); quiet when no node
    answers yet (the next try reads it again)."""
    _replicas.pop(client, None)
    try:
        client.nodes_manager.initialize()
    except redis.RedisError as err:
        log.debug("cluster slot map not refreshed yet: %s", err)


def with_retry(client: RedisCluster, retry_seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, tried again (the slot map refreshed) while it fails with what a failover
    brings, until ``retry_seconds`` have passed; then the last error is raised."""
    deadline = time.monotonic() + retry_seconds
    wait = RETRY_FIRST
    while True:
        try:
            return fn()
        except (redis.RedisError, SlotNotCoveredError) as err:
            if not _retryable(err) or time.monotonic() + wait > deadline:
                raise
            log.warning("redis cluster: %s: trying again in %.2f s", err, wait)
            time.sleep(wait)
            wait = min(wait * 2, RETRY_MAX)
            refresh(client)


REPLICAS_TTL = 5.0
"""Seconds a node's count of connected replicas is used before it is read again."""
_replicas: weakref.WeakKeyDictionary[RedisCluster, dict[str, tuple[int, float]]] = (
    weakref.WeakKeyDictionary()
)


def connected_replicas(client: RedisCluster, node: Any) -> int:
    """The replicas connected to ``node`` now (INFO replication, read every
    :data:`REPLICAS_TTL` seconds, and again after the slot map was refreshed)."""
    known = _replicas.setdefault(client, {})
    count, at = known.get(node.name, (0, -REPLICAS_TTL))
    if time.monotonic() - at >= REPLICAS_TTL:
        info = client.get_redis_connection(node).info("replication")
        count = int(info.get("connected_slaves", 0))
        known[node.name] = (count, time.monotonic())
    return count


def send_by_node(
    client: RedisCluster,
    commands: Sequence[tuple[str, Sequence[Any]]],
    wait_replicas: int,
) -> list[Any]:
    """Each ``(first key, command args)`` sent to the node that owns its key's slot, one
    pipeline per node (``WAIT`` last where ``wait_replicas``); the replies in order, errors
    as exception objects (as ``execute(raise_on_error=False)`` gives them)."""
    by_node: dict[str, tuple[Any, list[int]]] = {}
    for i, (key, _) in enumerate(commands):
        node = client.get_node_from_key(key)
        by_node.setdefault(node.name, (node, []))[1].append(i)
    replies: list[Any] = [None] * len(commands)
    for node, indices in by_node.values():
        pipe = client.get_redis_connection(node).pipeline(transaction=False)
        for i in indices:
            pipe.execute_command(*commands[i][1])
        # no more than the node has (a master whose replica died, or a promoted replica whose
        # old master is dead, has none to wait for until one joins)
        wait = min(wait_replicas, connected_replicas(client, node)) if wait_replicas else 0
        if wait > 0:
            pipe.execute_command("WAIT", wait, WAIT_TIMEOUT_MS)
        answers = pipe.execute(raise_on_error=False)
        if wait > 0:
            acked = answers.pop()
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < wait:
                log.warning("redis cluster node %s: %s of %d replicas had the writes after "
                            "%d ms", node.name, acked, wait, WAIT_TIMEOUT_MS)  # fmt: skip
        for i, answer in zip(indices, answers, strict=True):
            if isinstance(answer, Exception) and _retryable(answer):
                raise answer  # the whole batch is sent again, to the slot's node of then
            replies[i] = answer
    return replies
