"""Labeler parameters in Redis: where equation (3) gets each labeler's alpha, and the two-coin
model each labeler's sensitivity and specificity.

``keys.labelers`` is a hash ``labeler_id -> JSON {"accuracy", "lower", "upper", "source",
"n", "correct"}``: the point estimate, an interval, where it came from (``config``, ``file``,
``assessment``, ``gold``: a person's answers to gold frames, :mod:`gtx_stream.store.gold`, or
``em``: ``gtx-stream estimator``, :mod:`gtx_stream.store.em_params`), how many gold items it
rests on (0 when it was given, not measured) and how many of them were right (absent when not
known). A labeler missing from the hash is unknown, and the aggregator refuses its labels.

A record may also hold ``"two_coin": {"sensitivity", "specificity", their "*_lower" and
"*_upper", "source", "positives", "negatives"}`` (:class:`TwoCoinRecord`): P(label 1 | y=1)
and P(label 0 | y=0), from the configuration or estimated per class from gold (equation (4)
per class, :func:`gtx_stream.core.accuracy.assess_two_coin`), with the gold items of each
class they rest on. Records without it are exactly the one-coin JSON above. Under
``aggregator.model = "two_coin"`` a labeler without it weighs with its accuracy for both
coins (:meth:`LabelerAccuracy.two_coin_params`): its labels count as in the one-coin
posterior. A person's record rewritten from gold answers (:mod:`gtx_stream.store.gold`) is
one-coin, so a measured accuracy replaces configured coins.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from gtx_stream.config import Settings
from gtx_stream.core import accuracy
from gtx_stream.core.models import OneCoin, TwoCoin
from gtx_stream.store.cluster import is_cluster
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import layout, stored_keys

SOURCES = ("config", "file", "assessment", "gold", "em")


class RegistryError(ValueError):
    """An accuracy that cannot be stored, or an accuracy file that cannot be read."""


def _check_probability(labeler_id: str, name: str, value: Any) -> None:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise RegistryError(f"labeler {labeler_id}: {name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class TwoCoinRecord:
    """One labeler's two-coin parameters, each with its interval (``lower == upper`` when
    given), their source, and the gold items of class 1 (``positives``) and of class 0
    (``negatives``) they rest on (0 when given)."""

    sensitivity: float
    specificity: float
    sensitivity_lower: float
    sensitivity_upper: float
    specificity_lower: float
    specificity_upper: float
    source: str
    positives: int = 0
    negatives: int = 0
    positives_right: int | None = None
    """Gold items of class 1 labeled 1 (None: not known); with ``negatives_right``, the counts
    EM's gold clamping needs."""
    negatives_right: int | None = None

    @classmethod
    def given(cls, sensitivity: float, specificity: float, source: str) -> TwoCoinRecord:
        return cls(sensitivity, specificity, sensitivity, sensitivity, specificity, specificity,
                   source)  # fmt: skip

    @classmethod
    def measured(cls, est: accuracy.TwoCoinLabelerEstimate, source: str) -> TwoCoinRecord:
        s, t = est.sensitivity, est.specificity
        return cls(s.accuracy, t.accuracy, s.lower, s.upper, t.lower, t.upper, source,
                   s.total, t.total, s.correct, t.correct)  # fmt: skip

    def params(self) -> TwoCoin:
        return TwoCoin(self.sensitivity, self.specificity)

    def check(self, labeler_id: str) -> TwoCoinRecord:
        """This record, or a :class:`RegistryError` naming the labeler and the bad value."""
        for coin in ("sensitivity", "specificity"):
            lower, value, upper = (
                getattr(self, f"{coin}{end}") for end in ("_lower", "", "_upper")
            )
            for name, x in ((coin, value), (f"{coin}_lower", lower), (f"{coin}_upper", upper)):
                _check_probability(labeler_id, name, x)
            if not lower <= value <= upper:
                raise RegistryError(
                    f"labeler {labeler_id}: need {coin}_lower <= {coin} <= {coin}_upper, "
                    f"got {lower} <= {value} <= {upper}"
                )
        if self.source not in SOURCES:
            raise RegistryError(f"labeler {labeler_id}: two-coin source must be one of {SOURCES}")
        if self.positives < 0 or self.negatives < 0:
            raise RegistryError(f"labeler {labeler_id}: positives and negatives must be >= 0")
        for right, of in ((self.positives_right, self.positives),
                          (self.negatives_right, self.negatives)):  # fmt: skip
            if right is not None and not 0 <= right <= of:
                raise RegistryError(f"labeler {labeler_id}: need 0 <= right <= {of}, got {right}")
        return self

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TwoCoinRecord:
        s, t = float(raw["sensitivity"]), float(raw["specificity"])
        return cls(
            s, t,
            float(raw.get("sensitivity_lower", s)), float(raw.get("sensitivity_upper", s)),
            float(raw.get("specificity_lower", t)), float(raw.get("specificity_upper", t)),
            str(raw.get("source", "")), int(raw.get("positives", 0)), int(raw.get("negatives", 0)),
            _optional_int(raw.get("positives_right")), _optional_int(raw.get("negatives_right")),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class LabelerAccuracy:
    """One labeler's accuracy with its interval; ``lower == upper == accuracy`` when given;
    and its two-coin parameters when known."""

    accuracy: float
    lower: float
    upper: float
    source: str
    n: int = 0
    two_coin: TwoCoinRecord | None = None
    correct: int | None = None
    """How many of the ``n`` gold items were right; None when not known."""

    @classmethod
    def given(cls, accuracy: float, source: str) -> LabelerAccuracy:
        return cls(accuracy, accuracy, accuracy, source, 0)

    def one_coin_params(self) -> OneCoin:
        return OneCoin(self.accuracy)

    def two_coin_params(self) -> TwoCoin:
        """Its two coins; without them, its accuracy for both (the one-coin posterior's weight)."""
        if self.two_coin is None:
            return TwoCoin.symmetric(self.accuracy)
        return self.two_coin.params()

    def check(self, labeler_id: str) -> LabelerAccuracy:
        """This record, or a :class:`RegistryError` naming the labeler and the bad value."""
        for name in ("accuracy", "lower", "upper"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise RegistryError(
                    f"labeler {labeler_id}: {name} must be in [0, 1], got {value!r}"
                )
        if not self.lower <= self.accuracy <= self.upper:
            raise RegistryError(
                f"labeler {labeler_id}: need lower <= accuracy <= upper, "
                f"got {self.lower} <= {self.accuracy} <= {self.upper}"
            )
        if self.source not in SOURCES:
            raise RegistryError(f"labeler {labeler_id}: source must be one of {SOURCES}")
        if self.n < 0:
            raise RegistryError(f"labeler {labeler_id}: n must be >= 0, got {self.n}")
        if self.correct is not None and not 0 <= self.correct <= self.n:
            raise RegistryError(
                f"labeler {labeler_id}: need 0 <= correct <= n, got {self.correct} of {self.n}"
            )
        if self.two_coin is not None:
            self.two_coin.check(labeler_id)
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["two_coin"] = None if self.two_coin is None else self.two_coin.to_dict()
        # a one-coin record without counts stays the JSON it always was
        return {k: v for k, v in out.items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> LabelerAccuracy:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LabelerAccuracy:
        coins = raw.get("two_coin")
        return cls(
            accuracy=float(raw["accuracy"]),
            lower=float(raw.get("lower", raw["accuracy"])),
            upper=float(raw.get("upper", raw["accuracy"])),
            source=str(raw.get("source", "")),
            n=int(raw.get("n", 0)),
            two_coin=None if coins is None else TwoCoinRecord.from_dict(coins),
            correct=_optional_int(raw.get("correct")),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# --- Redis ------------------------------------------------------------------------------------


def store(client: redis.Redis, keys: Keys, records: Mapping[str, LabelerAccuracy]) -> int:
    """Validate every record, then store them all in one HSET; returns how many."""
    checked: dict[Any, Any] = {lid: rec.check(lid).to_json() for lid, rec in records.items()}
    keys = layout(client, keys)  # the registry's name on a Redis Cluster
    if checked:
        client.hset(keys.labelers, mapping=checked)
        if is_cluster(client):
            mirror_labelers(client, keys, list(checked))
    return len(checked)


def mirror_labelers(
    client: redis.Redis, keys: Keys, labeler_ids: Sequence[str] | None = None
) -> None:
    """On a Redis Cluster: add ``labeler_ids`` (default: every registered one) to each shard's
    copy of the labelers hash (:attr:`Keys.script_labelers`), which ``apply_labels.lua`` checks
    a label's labeler in (only ids count there: the records stay in :attr:`Keys.labelers`)."""
    ids = (
        list(labeler_ids)
        if labeler_ids is not None
        else [k.decode() if isinstance(k, bytes) else str(k) for k in client.hkeys(keys.labelers)]
    )
    if not ids:
        return
    pipe = client.pipeline(transaction=False)
    for shard in stored_keys(client, keys).every_shard():
        pipe.hset(shard.script_labelers, mapping=dict.fromkeys(ids, "1"))
    pipe.execute()


def unmirror_labelers(client: redis.Redis, keys: Keys, labeler_ids: Sequence[str]) -> None:
    """On a Redis Cluster: take ``labeler_ids`` out of each shard's copy of the labelers hash
    (a person the gold book paused or an operator reset), so that ``apply_labels.lua``
    refuses their labels as it does off a cluster; nothing elsewhere."""
    if not labeler_ids or not is_cluster(client):
        return
    pipe = client.pipeline(transaction=False)
    for shard in stored_keys(client, keys).every_shard():
        pipe.hdel(shard.script_labelers, *labeler_ids)
    pipe.execute()


def get_labelers(client: redis.Redis, keys: Keys) -> dict[str, LabelerAccuracy]:
    """Every registered labeler, sorted by id."""
    raw = client.hgetall(layout(client, keys).labelers)
    out = {}
    for k, v in raw.items():
        lid = k.decode() if isinstance(k, bytes) else str(k)
        out[lid] = LabelerAccuracy.from_json(v)
    return dict(sorted(out.items()))


def get_accuracies(client: redis.Redis, keys: Keys) -> dict[str, float]:
    """labeler id -> accuracy, for equation (3)."""
    return {lid: rec.accuracy for lid, rec in get_labelers(client, keys).items()}


def register_configured(
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    labeler_ids: Iterable[str] | None = None,
    overwrite: bool = True,
) -> dict[str, LabelerAccuracy]:
    """Store the configured accuracies (``source = "config"``) of the labelers that have one,
    with their configured sensitivity and specificity.

    A labeler configured with sensitivity and specificity but no accuracy registers with
    their mean (s + t) / 2 as its accuracy: the share right at a class prior of 1/2.
    ``labeler_ids`` limits it to those labelers; with ``overwrite=False`` a labeler that has an
    accuracy stored already (from a file or an assessment, say) keeps it.
    """
    wanted = None if labeler_ids is None else set(labeler_ids)
    records = {}
    for lab in settings.labelers:
        coins = lab.two_coin()
        if (lab.accuracy is None and coins is None) or (
            wanted is not None and lab.id not in wanted
        ):
            continue
        if coins is None:
            records[lab.id] = LabelerAccuracy.given(lab.accuracy or 0.0, "config")
            continue
        given = TwoCoinRecord.given(*coins, "config")
        alpha = given.params().weight() if lab.accuracy is None else lab.accuracy
        records[lab.id] = dataclasses.replace(
            LabelerAccuracy.given(alpha, "config"), two_coin=given
        )
    if not overwrite and records:
        present = client.hmget(layout(client, keys).labelers, list(records))
        records = {
            lid: rec
            for (lid, rec), old in zip(records.items(), present, strict=True)
            if old is None
        }
    store(client, keys, records)
    return records
