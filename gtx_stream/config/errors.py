"""pydantic's report of a bad setting, as the one line :class:`~gtx_stream.config.ConfigError`
carries: the field, what is wrong, the value where it is safe to echo, and the ``GTX_*``
variable that set it."""

from __future__ import annotations

import json
import os
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

_CLASS_NAME = re.compile(r" or instance of \w+")
_UNPARSABLE_FIELD = re.compile(r'field "(\w+)" from source "EnvSettingsSource"')
_SECRET = (("redis",), ("redis", "url"), ("redis", "queue_url"))
"""Where a value may hold a password: never echoed."""


def describe(err: ValidationError) -> str:
    """The first problem, an unknown key first (a misspelt key also makes its real key look
    missing, and the typo is the one to fix), then ``[+N more]``."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in first["loc"]) or "config"
    # "a valid dictionary or instance of LabelerSettings": the class name means nothing here
    msg = _CLASS_NAME.sub("", first["msg"])
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    given = first.get("input")
    tail = ""
    # Only a single value is echoed: a section or the whole settings may hold redis.url and
    # its password, and so may a string given where the redis section belongs.
    if (
        first["type"] not in ("extra_forbidden", "missing")
        and isinstance(given, str | int | float | bool)
        and tuple(first["loc"]) not in _SECRET
    ):
        tail = f" (got {given!r})"
    env = env_variable(first["loc"])
    if env:
        tail += f" (in {env})"
    more = len(errors) - 1
    return f"config error: {loc}: {msg}{tail}" + (f" [+{more} more]" if more else "")


def env_variable(loc: tuple[int | str, ...]) -> str | None:
    """The ``GTX_*`` variable that set the value at ``loc``, if one did (the most specific).

    ``labelers.0.backend`` comes from ``GTX_LABELERS``; ``aggregator.tau`` from
    ``GTX_AGGREGATOR__TAU`` or from the JSON in ``GTX_AGGREGATOR``.
    """
    fields: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break  # a list index: the variable holds the whole list
        fields.append(part)
    present = {name.upper() for name in os.environ}
    for n in range(len(fields), 0, -1):
        name = "GTX_" + "__".join(fields[:n]).upper()
        if name in present:
            return name
    return None


def _shape(annotation: Any) -> str:
    origin = typing.get_origin(annotation) or annotation
    return "a JSON list" if origin in (list, tuple, set, frozenset) else "a JSON object"


def _not_json(value: str) -> str | None:
    """Why ``value`` is not JSON (a position, never the value: it may hold a password)."""
    try:
        json.loads(value)
    except ValueError as err:
        return str(err)
    return None


def describe_unparsable(err: SettingsError, settings: type[BaseModel]) -> str | None:
    """A ``GTX_*`` value that had to be JSON and is not: a list or a section given as one
    variable (``GTX_LABELERS``, ``GTX_EXPORT``), or a list field of a section
    (``GTX_EXPORT__CLASS_NAMES``), named by its own variable."""
    found = _UNPARSABLE_FIELD.search(str(err))
    if not found:
        return None
    field = found.group(1)
    section = settings.model_fields.get(field)
    fields = getattr(section.annotation if section else None, "model_fields", {})
    prefix = f"GTX_{field.upper()}__"
    for name, value in sorted(os.environ.items()):
        sub = name.upper().removeprefix(prefix).lower()
        why = _not_json(value) if name.upper().startswith(prefix) and sub in fields else None
        if why is not None and _shape(fields[sub].annotation) == "a JSON list":
            return f"config error: {field}.{sub}: {name} must be a JSON list ({why})"
    shape = _shape(section.annotation) if section else "a JSON object"
    why = str(err.__cause__) if err.__cause__ is not None else "not JSON"
    return f"config error: {field}: GTX_{field.upper()} must be {shape} ({why})"
