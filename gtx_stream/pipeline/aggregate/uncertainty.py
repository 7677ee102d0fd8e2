"""Strategy 2 of the paper live: uncertainty sampling (``aggregator.strategy = "uncertainty"``).

For sources whose frames are all there at once (a folder of images, a dataset of tasks) and a
fixed budget, the same rules as the simulator (:mod:`gtx_stream.offline.simulate.uncertainty`):

1. every open frame gets one label (the decider asks each unlabeled frame, all at once);
2. then, once no open frame is without a label, the next request goes to the frame of highest
   uncertainty u = 1 - max_y P(y | labels) (equation 5) among those that may get another label
   (fewer than kappa labels, a labeler left who was not asked), a tie going to the
   :func:`~gtx_stream.core.decision.nth_tied` of the tied frames in frame-id order, drawn by
   :func:`~gtx_stream.core.decision.tie_break` (aggregator.seed, pick number);
3. a frame that can get no more labels is finalised once nothing is outstanding on it; when the
   budget is spent and no request is outstanding anywhere, every open frame is finalised.
   The reason is the decision rule's with no budget left (confident, kappa, exhausted, budget).

Tau stops nothing here: the budget does. The selection rule is
:func:`~gtx_stream.core.decision.most_uncertain`'s, kept in Redis so that a restarted aggregator
continues exactly: ``Keys.uncertain`` (a ZSET frame -> uncertainty of the frames that may be
picked), ``Keys.unlabeled`` (open frames without a label yet) and ``Keys.uncertainty``
(``picks``, the number of the next tie-break draw). Redis orders equal scores by member, which
is the frame-id order of the tie rule; scores are doubles, written and read back exactly.

``aggregator.uncertainty_inflight`` (default 1) requests after the first labels may be
outstanding at once over all frames; with 1 the picks come in exactly the offline order. A frame
opened late gets its first label before any further pick. Frames leave the open set only when
they can get no more labels or the budget ends, so with fewer ``max_open_frames`` than frames
the strategy ranks a window of the source, not all of it: a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import redis

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.decision import TIE_BLOCK, Decision, decide, nth_tied, tie_breaks
from gtx_stream.core.models import FloatArray, IntArray
from gtx_stream.core.records import text
from gtx_stream.pipeline.dispatch import Slot
from gtx_stream.store.frames import FrameState, read_frames
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)

ASK = Decision.ASK.value


@dataclass
class Ranking:
    """What one decision step changes in the sampler's sets."""

    pickable: dict[str, float] = field(default_factory=dict)
    """Frame -> uncertainty, for frames that may be picked now."""
    unpickable: list[str] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)
    labeled: list[str] = field(default_factory=list)
    """Frames with a label, finalised or gone: out of :attr:`Keys.unlabeled`."""


def uncertainty_codes(
    s: AggregatorSettings,
    confidence: FloatArray,
    n_labels: IntArray,
    eligible: IntArray,
    outstanding: IntArray,
    budget_over: bool,
) -> tuple[IntArray, np.ndarray]:
    """Decision codes under strategy 2, and which frames may still get another label.

    A frame is settled (finalised) once nothing is outstanding on it and it can get no more
    labels, or when the budget is over (``budget_over``: spent, nothing outstanding anywhere);
    its reason is :func:`~gtx_stream.core.decision.decide`'s with no budget left.
    """
    running = (n_labels + outstanding < s.kappa) & (eligible > 0)
    settle = (outstanding == 0) & (~running | budget_over)
    reason = decide(s.method, confidence, n_labels, s.tau, s.kappa,
                    eligible_left=eligible + outstanding, budget_left=0)  # fmt: skip
    codes: IntArray = np.where(settle, reason, ASK)
    return codes, running


def rank(
    frames: Sequence[FrameState],
    codes: IntArray,
    running: np.ndarray,
    uncertainty: FloatArray,
) -> Ranking:
    out = Ranking()
    for f, code, run, u in zip(frames, codes.tolist(), running.tolist(), uncertainty.tolist(),
                               strict=True):  # fmt: skip
        fid = f.frame_id
        if code == ASK and f.n_labels == 0:
            out.unlabeled.append(fid)
        else:
            out.labeled.append(fid)
        if code == ASK and run and f.n_labels >= 1 and f.outstanding == 0:
            out.pickable[fid] = u
        else:
            out.unpickable.append(fid)
    return out


Ask = Callable[[Sequence[Slot]], int]
Allowed = Callable[[FrameState], list[str]]


class UncertaintySampler:
    """The sets of strategy 2 in Redis, and the picks made from them."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: AggregatorSettings) -> None:
        self.r = client
        self.keys = keys
        self.s = settings
        self._ties: dict[int, FloatArray] = {}
        self._warned = False

    def budget_over(self, budget_left: int | None) -> bool:
        """The budget is spent and nothing is outstanding anywhere (a failure would refund)."""
        if budget_left is None or budget_left > 0:
            return False
        return int(self.r.zcard(self.keys.leases)) == 0

    def open_frames(self) -> set[str]:
        """Every open frame (decided, and so finalised, at the end of the budget)."""
        return {text(f) for f in self.r.zrange(self.keys.open_frames, 0, -1)}

    def record(self, ranking: Ranking, gone: Iterable[str] = ()) -> None:
        k = self.keys
        pipe = self.r.pipeline(transaction=False)
        drop = [*ranking.unpickable, *gone]
        if drop:
            pipe.zrem(k.uncertain, *drop)
        if ranking.pickable:
            pipe.zadd(k.uncertain, ranking.pickable)
        settled = [*ranking.labeled, *gone]
        if settled:
            pipe.zrem(k.unlabeled, *settled)
        if ranking.unlabeled:
            pipe.zadd(k.unlabeled, dict.fromkeys(ranking.unlabeled, 0))
        pipe.execute()

    def tie(self, step: int) -> float:
        block = step // TIE_BLOCK
        if block not in self._ties:
            self._ties = {block: tie_breaks(self.s.seed, block * TIE_BLOCK, TIE_BLOCK)}
        return float(self._ties[block][step % TIE_BLOCK])

    def pick(self, ask: Ask, allowed: Allowed) -> int:
        """Ask about the most uncertain frames while there is room; how many were asked."""
        k = self.keys
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(k.unlabeled)
        pipe.zcard(k.leases)
        pipe.hget(k.uncertainty, "picks")
        pipe.zcard(k.open_frames)
        unlabeled, outstanding, picks, n_open = pipe.execute()
        if n_open >= self.s.max_open_frames and not self._warned:
            log.warning("strategy uncertainty: %d frames open, max_open_frames: it ranks only "
                        "the open frames, raise max_open_frames to the source's frame count",
                        n_open)  # fmt: skip
            self._warned = True
        room = self.s.uncertainty_inflight - int(outstanding)
        if int(unlabeled) > 0 or room <= 0:
            return 0
        step = int(picks or 0)
        asked = 0
        while asked < room:
            fid = self._next(step)
            if fid is None:
                break
            frame = read_frames(self.r, self.keys, [fid])[fid]
            if frame is None or not frame.is_open or frame.outstanding or not frame.n_labels:
                self.r.zrem(k.uncertain, fid)  # stale: re-ranked when next decided
                continue
            if not ask([Slot(frame, allowed(frame), 1)]):
                break  # nobody available to ask now, or no budget: try again next step
            pipe = self.r.pipeline(transaction=False)
            pipe.zrem(k.uncertain, fid)
            pipe.hincrby(k.uncertainty, "picks", 1)
            pipe.execute()
            step += 1
            asked += 1
        return asked

    def _next(self, step: int) -> str | None:
        """The frame :func:`~gtx_stream.core.decision.most_uncertain` picks from the ZSET."""
        k = self.keys
        top = self.r.zrange(k.uncertain, "+inf", "-inf", desc=True, byscore=True, offset=0,
                            num=1, withscores=True)  # fmt: skip
        if not top:
            return None
        score = float(top[0][1])
        ties = int(self.r.zcount(k.uncertain, score, score))
        nth = int(nth_tied(self.tie(step), ties))
        found = self.r.zrangebyscore(k.uncertain, score, score, start=nth, num=1)
        return text(found[0]) if found else None
