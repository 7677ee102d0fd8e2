"""The estimator service: every so often, semi-supervised Dawid-Skene EM over the window of
final labels plus each labeler's gold, written back as ``em`` records.

A fit (:meth:`Estimator.fit_once`):

1. reads the registered labelers (:func:`gtx_stream.store.em_params.registered`): each one's
   base record, whose gold answers become gold tasks that EM clamps
   (:func:`gtx_stream.core.em_steps.gold_items`; counts per class when the base has them,
   else its right and wrong answers split evenly over the classes);
2. runs :func:`gtx_stream.core.em.dawid_skene` over the window's labels plus those gold
   tasks: one-coin always (the records' ``accuracy``), two-coin too under
   ``aggregator.model = "two_coin"`` (the records' coins), with the pooled prior of
   ``estimator.prior_strength`` and the class prior fixed at ``aggregator.prior``;
3. writes a record (source ``em``, intervals, ``fitted_at``, the base kept inside) for every
   registered labeler with labels in the window, where the hash still holds what step 1 read
   (:func:`~gtx_stream.store.em_params.write_fitted`).

The aggregator re-reads the labelers hash at most a second later and decides its next frames
with the new parameters; final records already written keep the parameters they were decided
with. A labeler without labels in the window keeps its record.

The service (:meth:`Estimator.run`) skips a due fit, and writes nothing, when its inputs are
those of its last fit: no final label read since, and the labelers hash exactly as that fit
left it (what it read, with its own writes in place; one HGETALL). A gold answer, a record
loaded or assessed, a labeler registered or paused, or a write of its own that lost to one of
those, changes the hash, and the next due fit runs. So ``fitted_at`` is the time of the last
fit, over the same labels and gold as now, not a heartbeat of the estimator.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import redis

from gtx_stream.config import AggregatorSettings, EstimatorSettings
from gtx_stream.core import em_steps
from gtx_stream.core.em import EMResult, EMSettings, dawid_skene
from gtx_stream.core.models import ModelName
from gtx_stream.pipeline.estimate.window import LabelWindow
from gtx_stream.store import em_params
from gtx_stream.store.cluster import UNAVAILABLE
from gtx_stream.store.em_params import GoldCounts, Registered
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, TwoCoinRecord

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # the final stream is read this often between fits


@dataclass(frozen=True)
class FitReport:
    fitted_at: float
    labels: int  # labels of the window
    frames: int
    gold_answers: int
    written: tuple[str, ...]
    skipped: tuple[str, ...]  # fitted, but their record changed meanwhile
    fallbacks: int
    iterations: int
    converged: bool
    seconds: float


def class_counts(g: GoldCounts) -> tuple[int, int, int, int]:
    """(class 1 labeled 1, class 1 labeled 0, class 0 labeled 0, class 0 labeled 1)."""
    if g.per_class:
        pr, nr = g.positives_right or 0, g.negatives_right or 0
        return pr, g.positives - pr, nr, g.negatives - nr
    wrong = g.total - g.right
    return (g.right + 1) // 2, wrong // 2, g.right // 2, (wrong + 1) // 2


class Estimator:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: EstimatorSettings,
        aggregator: AggregatorSettings,
    ) -> None:
        self.r = client
        self.keys = keys
        self.s = settings
        self.model = ModelName(aggregator.model)
        self.prior = aggregator.prior
        self.window = LabelWindow(client, keys, settings.window_labels)
        self._new_labels = 0
        self._last_check = -float("inf")  # monotonic time of the last fit or skipped one
        self._fitted_at = 0.0  # Unix time of the last fit
        # each frame's P(y=1) in the last fit: the next fit starts from them (a warm start:
        # about half the iterations), frames new to the window from 1/2
        self._p1: dict[str, float] = {}
        # the labelers hash as the last fit left it; None before the first fit
        self._left: dict[str, str] | None = None
        self._told_waiting = False  # the service said once that it waits for min_labels

    def em_settings(self, model: ModelName) -> EMSettings:
        return EMSettings(model=model, prior_strength=self.s.prior_strength,
                          class_prior=self.prior)  # fmt: skip

    def fit_once(self, if_changed: bool = False) -> FitReport | None:
        """Read the stream, fit, write; None when the window holds fewer than ``min_labels``,
        or, with ``if_changed``, when nothing changed since the last fit (see the module)."""
        self._new_labels += self.window.fill()
        return self._fit_window(if_changed)

    def _fit_window(self, if_changed: bool) -> FitReport | None:
        """:meth:`fit_once` on the window as read."""
        if self.window.n_labels < self.s.min_labels:
            return None
        labelers = em_params.registered(self.r, self.keys)
        if if_changed and self.unchanged(labelers):
            log.debug(
                "no final label and no labeler record changed since the fit of %.0f s ago: "
                "not refitted", time.time() - self._fitted_at,
            )  # fmt: skip
            return None
        return self._fit(labelers)

    def unchanged(self, labelers: Mapping[str, Registered]) -> bool:
        """Whether a fit now would see what the last one saw: no new label in the window, and
        ``labelers`` (the hash as just read) as the last fit left it."""
        if self._left is None or self._new_labels:
            return False
        return {lid: reg.raw for lid, reg in labelers.items()} == self._left

    def _fit(self, labelers: Mapping[str, Registered]) -> FitReport:
        start = time.perf_counter()
        ids = sorted(self.window.labelers() | set(labelers))
        index = {lid: j for j, lid in enumerate(ids)}
        win = self.window.arrays(index)
        counts = np.zeros((len(ids), 4), dtype=np.int64)
        for lid, reg in labelers.items():
            g = em_params.gold_counts(reg.base)
            if g is not None:
                counts[index[lid]] = class_counts(g)
        g_who, g_label, g_truth = em_steps.gold_items(counts)
        n_gold = len(g_who)
        task = np.concatenate([win.task, win.n_tasks + np.arange(n_gold)])
        who = np.concatenate([win.labeler, g_who])
        label = np.concatenate([win.label, g_label])
        gold = np.concatenate([np.full(win.n_tasks, -1), g_truth])

        frames = [f.frame_id for f in self.window.frames]
        init = None
        if self._p1:
            warm = [self._p1.get(fid, 0.5) for fid in frames]
            init = np.concatenate([np.asarray(warm), g_truth.astype(np.float64)])

        def fit(model: ModelName) -> EMResult:
            return dawid_skene(task, who, label, gold, self.em_settings(model),
                               n_tasks=win.n_tasks + n_gold, n_labelers=len(ids),
                               init=init)  # fmt: skip

        one = fit(ModelName.ONE_COIN)
        two = fit(ModelName.TWO_COIN) if self.model is ModelName.TWO_COIN else None
        used = two or one
        self._p1 = dict(zip(frames, used.p1[: win.n_tasks].tolist(), strict=True))
        per_labeler = np.bincount(win.labeler, minlength=len(ids))
        now = time.time()
        records = {
            lid: (
                reg.raw,
                self._record(reg, index[lid], one, two, int(per_labeler[index[lid]]), now),
            )
            for lid, reg in labelers.items()
            if per_labeler[index[lid]] > 0
        }
        written = em_params.write_fitted(self.r, self.keys, records)
        # the hash as this fit leaves it: a record it could not write differs from what it
        # read (the write lost to a newer one), so the next check sees a change there
        self._left = {lid: reg.raw for lid, reg in labelers.items()}
        self._left.update((lid, records[lid][1]) for lid in written)
        self._new_labels = 0
        self._last_check, self._fitted_at = time.monotonic(), now
        fallbacks = len(one.fallbacks) + (len(two.fallbacks) if two else 0)
        report = FitReport(
            now, self.window.n_labels, len(self.window.frames), n_gold, tuple(written),
            tuple(sorted(set(records) - set(written))), fallbacks,
            one.iterations + (two.iterations if two else 0),
            one.converged and (two is None or two.converged), time.perf_counter() - start,
        )  # fmt: skip
        log.info(
            "EM over %d labels of %d frames plus %d gold answers: %d labelers written, "
            "%d changed meanwhile, %d guard fallbacks, %.3f s",
            report.labels, report.frames, n_gold, len(written), len(report.skipped),
            fallbacks, report.seconds,
        )  # fmt: skip
        return report

    def _record(
        self,
        reg: Registered,
        j: int,
        one: EMResult,
        two: EMResult | None,
        labels: int,
        now: float,
    ) -> str:
        base = reg.base
        fitted = LabelerAccuracy(
            float(one.params["accuracy"][j]), float(one.lower["accuracy"][j]),
            float(one.upper["accuracy"][j]), em_params.EM_SOURCE, base.n, correct=base.correct,
        )  # fmt: skip
        why = [fb.reason for fb in one.fallbacks if fb.labeler in (j, None)]
        if two is not None:
            s, t = "sensitivity", "specificity"
            old = base.two_coin
            coins = TwoCoinRecord(
                float(two.params[s][j]), float(two.params[t][j]),
                float(two.lower[s][j]), float(two.upper[s][j]),
                float(two.lower[t][j]), float(two.upper[t][j]), em_params.EM_SOURCE,
                old.positives if old else 0, old.negatives if old else 0,
                old.positives_right if old else None, old.negatives_right if old else None,
            )  # fmt: skip
            fitted = dataclasses.replace(fitted, two_coin=coins)
            why += [fb.reason for fb in two.fallbacks if fb.labeler in (j, None)]
        return em_params.em_record(base, fitted, labels, now, "; ".join(why))

    def due(self) -> bool:
        if time.monotonic() - self._last_check >= self.s.every_seconds:
            return True
        return bool(self.s.every_labels) and self._new_labels >= self.s.every_labels

    def _tell_waiting(self) -> None:
        """Log once, at INFO, that too few final labels are in for a first fit: a service
        that says nothing after its start line looks stuck."""
        if (
            self._told_waiting
            or self._left is not None
            or self.window.n_labels >= self.s.min_labels
        ):
            return
        self._told_waiting = True
        log.info(
            "%d final labels so far, fewer than estimator.min_labels = %d: the first fit "
            "waits for them", self.window.n_labels, self.s.min_labels,
        )  # fmt: skip

    def run(self, stop: threading.Event | None = None) -> None:
        """Fit whenever due (``every_seconds``, or ``every_labels`` new labels) until ``stop``."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self._new_labels += self.window.fill()
                if self.due() and self._fit_window(if_changed=True) is None:
                    # too few labels, or nothing new: look again in every_seconds
                    self._last_check = time.monotonic()
                    self._tell_waiting()
            except UNAVAILABLE as err:
                log.warning("redis unavailable (%s): retrying", err)
            stop.wait(min(POLL_SECONDS, self.s.every_seconds))
