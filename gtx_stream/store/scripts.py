"""Lua scripts from ``store/lua``: the text of each, and the runner that sends calls of them.

A call (:class:`ScriptCall`) is built by the script's typed wrapper in
:mod:`gtx_stream.store.frame_scripts`, which alone knows its KEYS and ARGV order and how to
decode its reply. :class:`ScriptRunner` sends many calls as one pipelined round trip of
EVALSHA (the SHA computed here, no SCRIPT EXISTS first) and loads a script again only when
Redis answers NOSCRIPT (after a restart or a SCRIPT FLUSH).

``load_script(client, "open_frame")`` returns a :class:`redis.commands.core.Script` for code
that wants redis-py's own script object.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import redis
from redis.commands.core import Script

from gtx_stream.store.cluster import is_cluster, send_by_node, wait_replicas_of, with_retry

LUA_DIR = Path(__file__).resolve().parent / "lua"

T = TypeVar("T")

_Registered = weakref.WeakKeyDictionary[redis.Redis, dict[str, Script]]
_registered: _Registered = weakref.WeakKeyDictionary()


@functools.cache
def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` (``name`` with or without the ``.lua`` suffix)."""
    stem = name.removesuffix(".lua")
    path = LUA_DIR / f"{stem}.lua"
    if not path.is_file():
        raise FileNotFoundError(f"no Lua script named {stem!r} in {LUA_DIR}")
    return path.read_text(encoding="utf-8")


@functools.cache
def script_sha(name: str) -> str:
    """The SHA1 Redis knows ``lua/<name>.lua`` by once it is loaded."""
    return hashlib.sha1(script_source(name).encode()).hexdigest()


def load_script(client: redis.Redis, name: str) -> Script:
    """The script ``name`` registered on ``client`` (cached per client)."""
    stem = name.removesuffix(".lua")
    per_client = _registered.setdefault(client, {})
    script = per_client.get(stem)
    if script is None:
        script = client.register_script(script_source(stem))
        per_client[stem] = script
    return script


@dataclass(frozen=True)
class ScriptCall(Generic[T]):
    """One call of one script: its KEYS and ARGV in the script's order, and its reply decoder."""

    script: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    decode: Callable[[Any], T]


class ScriptRunner:
    """Runs script calls on one client, each batch in one pipelined round trip.

    One round trip costs about as much as a script doing a dozen Redis calls, so a batch of N
    calls costs about one round trip, not N.
    """

    def __init__(self, client: redis.Redis, retry_seconds: float = 30.0) -> None:
        """On a Redis Cluster (:mod:`gtx_stream.store.cluster`): each node's calls end with a
        ``WAIT`` for the client's ``redis.wait_replicas`` replicas, and a batch cut off by a
        failover is sent again for up to ``retry_seconds``."""
        self.client = client
        self.cluster = is_cluster(client)
        self.wait_replicas = wait_replicas_of(client)
        self.retry_seconds = retry_seconds

    def run(self, calls: Sequence[ScriptCall[T]]) -> list[T]:
        """Each call's decoded reply, in order.

        A call that got NOSCRIPT is sent again after the script is loaded; only those, since
        the others did run (another client may have loaded a script meanwhile). Every script
        is safe to run twice anyway: a redelivered label, a stale ask or finalise is refused.
        Any other error is raised.
        """
        if not calls:
            return []
        if self.cluster:
            return cast(list[T], with_retry(self.client, self.retry_seconds,  # type: ignore[arg-type]
                                            lambda: self._run(calls)))  # fmt: skip
        return self._run(calls)

    def _send(self, calls: Sequence[ScriptCall[Any]]) -> list[Any]:
        if self.cluster:
            commands = [(c.keys[0], ("EVALSHA", script_sha(c.script), len(c.keys), *c.keys,
                                     *c.args)) for c in calls]  # fmt: skip
            return send_by_node(self.client, commands, self.wait_replicas)  # type: ignore[arg-type]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(script_sha(call.script), len(call.keys), *call.keys, *call.args)
        return pipe.execute(raise_on_error=False)

    def _run(self, calls: Sequence[ScriptCall[T]]) -> list[T]:
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            answers = self._send([calls[i] for i in todo])
            missing: list[int] = []
            for i, answer in zip(todo, answers, strict=True):
                if isinstance(answer, redis.exceptions.NoScriptError) and not attempt:
                    missing.append(i)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    replies[i] = answer
            if not missing:
                break
            for name in sorted({calls[i].script for i in missing}):
                self.client.script_load(script_source(name))
            todo = missing
        return [call.decode(reply) for call, reply in zip(calls, replies, strict=True)]

    def run_one(self, call: ScriptCall[T]) -> T:
        return self.run([call])[0]
