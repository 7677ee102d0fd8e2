"""Lua scripts from ``gtx_stream/lua``: each file read once, registered once per client.

``load_script(client, "open_frame")`` returns a :class:`redis.commands.core.Script`, which
calls EVALSHA and loads the script again by itself after a ``SCRIPT FLUSH`` or a restart.
"""

from __future__ import annotations

import functools
import weakref
from pathlib import Path

import redis
from redis.commands.core import Script

LUA_DIR = Path(__file__).resolve().parent / "lua"

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


def load_script(client: redis.Redis, name: str) -> Script:
    """The script ``name`` registered on ``client`` (cached per client)."""
    stem = name.removesuffix(".lua")
    per_client = _registered.setdefault(client, {})
    script = per_client.get(stem)
    if script is None:
        script = client.register_script(script_source(stem))
        per_client[stem] = script
    return script
