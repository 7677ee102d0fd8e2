"""Labeler records learned by EM (``gtx-stream estimator``): the gold they rest on, and writes
that never undo a newer record.

An ``em`` record is a :class:`~gtx_stream.store.params.LabelerAccuracy` with source ``em``
(the aggregator reads it as any other) and four more fields:

- ``base``: the record it was fitted over (``gold``, ``assessment``, ``config`` or ``file``).
  Its gold counts clamp every later fit too, so a refit never forgets gold; a person's next
  gold answer, or an operator's ``labelers set``, replaces the whole record, base and all,
  and the next fit starts from that;
- ``fitted_at``: Unix time of the fit; ``labels``: this labeler's labels in the fit;
- ``fallback``: why a guard replaced EM's estimate by the gold one, when one did.

Records are written with ``write_params.lua``: only where the hash still holds what the fit
read, so a gold answer that lands during a fit is kept, and a person paused meanwhile is not
registered again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from gtx_stream.core.records import text
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy
from gtx_stream.store.scripts import ScriptCall, ScriptRunner
from gtx_stream.store.shards import layout

EM_SOURCE = "em"


@dataclass(frozen=True)
class GoldCounts:
    """The gold answers a record rests on: right of total, and per class when known."""

    right: int
    total: int
    positives_right: int | None = None
    positives: int = 0
    negatives_right: int | None = None
    negatives: int = 0

    @property
    def per_class(self) -> bool:
        return self.positives_right is not None and self.negatives_right is not None


@dataclass(frozen=True)
class Registered:
    """One labeler as the hash holds it: the raw JSON, and the record a fit starts from."""

    raw: str
    base: LabelerAccuracy


def base_of(raw: str | bytes | Mapping[str, Any]) -> LabelerAccuracy:
    """The record an ``em`` record was fitted over; any other record is its own base."""
    doc = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if doc.get("source") == EM_SOURCE and isinstance(doc.get("base"), dict):
        return LabelerAccuracy.from_dict(doc["base"])
    return LabelerAccuracy.from_dict(doc)


def rests_on_gold(raw: str | bytes) -> bool:
    """Whether a person's gold answers registered this record (directly, or as an em base)."""
    return base_of(raw).source == "gold"


def gold_counts(rec: LabelerAccuracy) -> GoldCounts | None:
    """The gold answers behind ``rec``; None when it rests on none (given, not measured).

    A record that gives ``n`` but not how many were right (an accuracy file, a record from an
    older release) counts round(accuracy x n) right.
    """
    if rec.n <= 0:
        return None
    right = rec.correct if rec.correct is not None else round(rec.accuracy * rec.n)
    coins = rec.two_coin
    if (
        coins is not None
        and coins.positives_right is not None
        and coins.negatives_right is not None
    ):
        return GoldCounts(right, rec.n, coins.positives_right, coins.positives,
                          coins.negatives_right, coins.negatives)  # fmt: skip
    return GoldCounts(int(right), rec.n)


def registered(client: redis.Redis, keys: Keys) -> dict[str, Registered]:
    """Every registered labeler, sorted by id, with the base a fit starts from."""
    raw = client.hgetall(layout(client, keys).labelers)
    return {text(k): Registered(text(v), base_of(v)) for k, v in sorted(raw.items())}


def em_record(
    base: LabelerAccuracy,
    fitted: LabelerAccuracy,
    labels: int,
    fitted_at: float,
    fallback: str = "",
) -> str:
    """The JSON of an ``em`` record: ``fitted`` (source em; n and correct of the base) with
    the base it was fitted over and when."""
    doc = fitted.check("em").to_dict()
    doc.update(base=base.to_dict(), fitted_at=fitted_at, labels=labels)
    if fallback:
        doc["fallback"] = fallback
    return json.dumps(doc, sort_keys=True)


def write_fitted(
    client: redis.Redis, keys: Keys, records: Mapping[str, tuple[str, str]]
) -> list[str]:
    """Write ``labeler -> (the JSON the fit read, the new JSON)`` where the hash still holds
    what the fit read; returns the ids written."""
    if not records:
        return []
    args: list[str] = []
    for lid, (old, new) in records.items():
        args += [lid, old, new]
    call = ScriptCall("write_params", (layout(client, keys).labelers,), tuple(args),
                      lambda reply: [text(x) for x in reply])  # fmt: skip
    return ScriptRunner(client).run_one(call)
