"""The decision about each open frame: finalise it (and with what record) or ask for more.

Posteriors come from :func:`gtx_stream.core.models.posterior_of`, the rule from
:func:`gtx_stream.core.decision.decide`: the same code the simulator runs (invariant 6).
Under ``aggregator.model = "two_coin"`` the posterior is the two-coin model's (its
parameters come from :class:`~gtx_stream.pipeline.aggregate.labelers.LabelerBook`) and the
rule stays GTX's; the record names the model and carries each labeler's two coins.
Under ``aggregator.strategy = "uncertainty"`` the codes come from
:func:`~gtx_stream.pipeline.aggregate.uncertainty.uncertainty_codes` instead: only frames
without a label are asked here, the others are ranked for the sampler to pick from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.decision import Decision, decide, uncertainty
from gtx_stream.core.models import (
    UNKNOWN_LABELER,
    UNKNOWN_TWO_COIN,
    LabelerParams,
    ModelName,
    posterior_of,
)
from gtx_stream.core.records import FinalRecord
from gtx_stream.pipeline.aggregate.uncertainty import Ranking, rank, uncertainty_codes
from gtx_stream.pipeline.dispatch import Slot
from gtx_stream.store.frames import FrameState
from gtx_stream.store.keys import Keys

ASK = Decision.ASK.value
REASONS = {d.value: d.reason for d in Decision}
"""The final record's ``reason`` of each decision code."""


@dataclass
class Decisions:
    finals: list[FinalRecord] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    """Frames to ask one more labeler about (``room``: how many requests may go out now)."""
    ranking: Ranking | None = None
    """Under strategy uncertainty: what the decided frames change in the sampler's sets."""


class Decider:
    def __init__(self, settings: AggregatorSettings, keys: Keys) -> None:
        self.s = settings
        self.keys = keys
        self.two_coin = settings.model is ModelName.TWO_COIN
        # a label whose labeler is no longer registered weighs nothing, in either model
        self._unknown: LabelerParams = UNKNOWN_TWO_COIN if self.two_coin else UNKNOWN_LABELER
        self._posterior_of = ModelName.TWO_COIN if self.two_coin else settings.method
        self.uncertain = settings.strategy == "uncertainty"

    def decide(
        self,
        frames: Sequence[FrameState],
        params: Mapping[str, LabelerParams],
        budget_left: int | None,
        budget_over: bool = False,
        source_left: Mapping[str, int] | None = None,
    ) -> Decisions:
        """``budget_over`` (strategy uncertainty): spent, and nothing outstanding anywhere.
        ``source_left``: source id -> labels its frames may still buy (its share of the
        budget, ``aggregator.budget_per_source``), where sources have shares."""
        out = Decisions()
        if not frames:
            return out
        s = self.s
        # one pass per frame where a pass is needed, plain lists where numpy would be called
        # per element: this runs for every frame every step touches
        get, unknown = params.get, self._unknown
        rows = [[(label, get(lab, unknown)) for lab, label in f.labels] for f in frames]
        post = posterior_of(self._posterior_of, rows, s.prior)
        everyone = sorted(params)  # who is allowed on a frame that names nobody
        allowed = [f.allowed(everyone) if f.restricted else everyone for f in frames]
        eligible = [len(f.not_asked(a)) for f, a in zip(frames, allowed, strict=True)]
        outstanding = np.array([f.outstanding for f in frames])
        n_labels = np.array([f.n_labels for f in frames])
        # Labels still on their way count as possible: wait for them, do not finalise early
        # as exhausted or out of budget.
        left: float | np.ndarray = np.inf if budget_left is None else budget_left
        if source_left is not None:
            own = [source_left.get(f.meta.get("source_id", ""), np.inf) for f in frames]
            left = np.minimum(left, np.array(own, dtype=float))
        if self.uncertain:
            codes, running = uncertainty_codes(s, post.confidence, n_labels, np.array(eligible),
                                               outstanding, budget_over)  # fmt: skip
            out.ranking = rank(frames, codes, running, uncertainty(post))
        else:
            codes = decide(
                s.method, post.confidence, n_labels, s.tau, s.kappa,
                eligible_left=np.array(eligible) + outstanding, budget_left=left + outstanding,
            )  # fmt: skip
        now = time.time()
        method, model = str(s.method), str(s.model)
        labels, p1, confidence = post.label.tolist(), post.p1.tolist(), post.confidence.tolist()
        for i, code in enumerate(codes.tolist()):
            f = frames[i]
            if code == ASK and self.uncertain:
                if f.n_labels == 0 and f.outstanding == 0 and eligible[i]:
                    out.slots.append(Slot(f, allowed[i], 1))  # its first label
                continue
            if code == ASK:
                room = min(s.max_inflight - f.outstanding, s.kappa - f.n_labels - f.outstanding)
                if room > 0 and eligible[i]:
                    out.slots.append(Slot(f, allowed[i], room))
                continue
            coins = rows[i] if self.two_coin else []
            out.finals.append(
                FinalRecord(
                    frame_id=f.frame_id,
                    label=int(labels[i]),
                    p1=p1[i],
                    confidence=confidence[i],
                    reason=REASONS[code],
                    method=method,
                    labelers=[lab for lab, _ in f.labels],
                    labels=[label for _, label in f.labels],
                    accuracies=[p.weight() for _, p in rows[i]],
                    finalised_at=now,
                    source=f.source,
                    frame_index=f.frame_index,
                    opened_at=f.opened_at,
                    file_name=f.meta.get("file_name", ""),
                    image_key=self.keys.image(f.frame_id),
                    model=model,
                    sensitivities=[p.value("sensitivity") for _, p in coins],
                    specificities=[p.value("specificity") for _, p in coins],
                )
            )
        return out
