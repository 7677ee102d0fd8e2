"""``[[labelers]]``: one entry per labeler, its backend and what is known of its accuracy.

A labeler's accuracy is one number (``accuracy``, the one-coin model of equation (3)) and,
optionally, one per class (``sensitivity`` = P(label 1 | y = 1) and ``specificity`` =
P(label 0 | y = 0), the two-coin model that ``aggregator.model = "two_coin"`` reads). Both
are stored in Redis with source ``config`` when the labeler registers
(:func:`gtx_stream.store.params.register_configured`).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

HUMAN_LEASE_SECONDS = 120.0
"""A person's lease when their ``lease_seconds`` is not set: a page needs more time than a model."""

LABELER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
"""What a labeler id is made of (also checked on ids of accuracy files)."""

MAX_BATCH = 256
"""The most frames one labeler worker job may take at once (``batch``)."""


class LabelerSettings(BaseModel):
    """One ``[[labelers]]`` entry; a backend's required fields are checked when it is loaded."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str = Field(pattern=LABELER_ID_PATTERN)
    backend: Literal["simulated", "replay", "python", "http", "human"] = "simulated"
    accuracy: float | None = Field(default=None, ge=0.0, le=1.0, validate_default=True)
    target: str = Field(
        default="", description="python: module:function; http: URL", validate_default=True
    )
    timeout: float = Field(default=10.0, gt=0)
    seed: int = 0
    lease_seconds: float | None = Field(
        default=None, gt=0, description="none: 120 s for a human, aggregator.lease_seconds else"
    )
    sensitivity: float | None = Field(
        default=None, ge=0.0, le=1.0, description="two-coin: P(label 1 | y = 1)"
    )
    specificity: float | None = Field(
        default=None, ge=0.0, le=1.0, description="two-coin: P(label 0 | y = 0)"
    )
    batch: int = Field(
        default=1,
        ge=1,
        le=MAX_BATCH,
        description="frames the worker takes in one job (one backend call); human: 1",
    )

    def lease(self, default: float) -> float:
        """Seconds this labeler has to answer a request (``default``: the aggregator's)."""
        if self.lease_seconds is not None:
            return self.lease_seconds
        return HUMAN_LEASE_SECONDS if self.backend == "human" else default

    @field_validator("accuracy")
    @classmethod
    def _simulated_needs_accuracy(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None and info.data.get("backend") == "simulated":
            raise _labeler_error(info, "needs an accuracy (it draws its labels with it)")
        return value

    @field_validator("target")
    @classmethod
    def _target_fits_backend(cls, value: str, info: ValidationInfo) -> str:
        backend = info.data.get("backend")
        if backend == "python" and not _PYTHON_TARGET.fullmatch(value):
            raise _labeler_error(info, "needs target = 'module:function'")
        if backend == "http":
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise _labeler_error(info, "needs target = an http:// or https:// URL")
        if backend == "replay" and not value.strip():
            raise _labeler_error(info, "needs target = its dataset folder")
        return value

    @field_validator("batch")
    @classmethod
    def _people_take_one_frame(cls, value: int, info: ValidationInfo) -> int:
        # the label server hands a person one request at a time (server/feed.py)
        if value > 1 and info.data.get("backend") == "human":
            raise _labeler_error(info, "takes one frame per request: batch must be 1")
        return value

    @model_validator(mode="after")
    def _both_coins_or_neither(self) -> LabelerSettings:
        # one coin given alone would leave the other to a default nobody chose
        if (self.sensitivity is None) != (self.specificity is None):
            raise PydanticCustomError(
                "labeler_settings",
                "labeler {who} needs both sensitivity and specificity, or neither",
                {"who": repr(self.id)},
            )
        return self

    def two_coin(self) -> tuple[float, float] | None:
        """(sensitivity, specificity) when configured, else None."""
        if self.sensitivity is None or self.specificity is None:
            return None
        return self.sensitivity, self.specificity


def _labeler_error(info: ValidationInfo, needs: str) -> PydanticCustomError:
    # a message of our own (no "Value error, " prefix); config errors append the value given
    who = f"{info.data.get('backend')} labeler {info.data.get('id', '?')!r}"
    return PydanticCustomError("labeler_settings", "{who} {needs}", {"who": who, "needs": needs})


_PYTHON_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
