"""Stream fields as strings: decoding Redis replies, and the field helpers of the records.

Every stream field is a string; :mod:`gtx_stream.core.records` builds its records from them
with these helpers, which raise :class:`RecordError` with a one-line reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

Fields = dict[str, str]


class RecordError(ValueError):
    """A stream entry that is not a well-formed record; the message is the reason."""


def text(value: Any) -> str:
    """A Redis reply as ``str``: bytes that are not UTF-8 become U+FFFD instead of raising.

    Stream entries are anyone's bytes; a bad one must be refused as malformed, never stop a
    service with a ``UnicodeDecodeError``.
    """
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def decode_fields(raw: Mapping[Any, Any]) -> Fields:
    """A stream entry's field map as ``str -> str``."""
    # the aggregator decodes every entry of every batch and every frame hash it decides on:
    # with ``decode_responses`` they are all str already, and a copy is all there is to do
    for k, v in raw.items():
        if type(k) is not str or type(v) is not str:
            break
    else:
        return dict(raw)
    # bytes decoded inline, as text() does: the aggregator decodes every field of every frame
    # view it decides on, and a call of text() per field was most of that
    return {
        (k.decode(errors="replace") if type(k) is bytes else text(k)): (
            v.decode(errors="replace") if type(v) is bytes else text(v)
        )
        for k, v in raw.items()
    }


def _no_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _list_encoder() -> Callable[[list[Any]], str]:
    """``json.dumps`` for plain lists, the same text: ``json.dumps`` builds its C encoder again
    on every call, which costs more than encoding a final record's five labels. Built once
    here (no circular check: plain values); ``json.dumps`` itself where that C encoder is
    missing or takes other arguments."""
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring_ascii,
        )

        iterencode = c_make_encoder(
            None, _no_default, encode_basestring_ascii, None, ": ", ", ", False, False, True
        )
        if "".join(iterencode(["a", 1, 0.5], 0)) != '["a", 1, 0.5]':
            raise TypeError("unexpected encoder")
    except (ImportError, TypeError):
        return json.dumps
    return lambda values: "".join(iterencode(values, 0))


dumps_list = _list_encoder()


def required(fields: Mapping[str, str], *names: str) -> None:
    for name in names:
        if not fields.get(name):
            raise RecordError(f"missing field: {name}")


def float_field(fields: Mapping[str, str], name: str, default: float = math.nan) -> float:
    raw = fields.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise RecordError(f"{name} must be a number, got {raw[:40]!r}") from None


def int_field(fields: Mapping[str, str], name: str, default: int = -1) -> int:
    raw = fields.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RecordError(f"{name} must be an integer, got {raw[:40]!r}") from None
