"""The aggregator under ``aggregator.model = "two_coin"``, against a real Redis.

Invariant 6 for the two-coin model: with seeded class-conditional labelers, every final record
equals the offline two-coin posterior (``core.models.two_coin_posterior`` on each label
prefix, GTX's stopping rule from ``core.decision.decide``) on the same label sequences, bit for
bit, and names the model and the coins it was decided with.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import redis

from gtx_stream.config import Settings
from gtx_stream.core.decision import Decision, decide
from gtx_stream.core.draws import labeler_order, simulated_label
from gtx_stream.core.models import Method, gtx_posterior, two_coin_posterior
from gtx_stream.core.records import LabelEntry
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import register_configured
from tests.aggregator_harness import Capture, final_records, make_aggregator, open_frame

# class-conditional labelers: some good at one class only; "plain" has no coins, so it weighs
# with its accuracy for both
COINS = {
    "lab0": (0.95, 0.60), "lab1": (0.60, 0.95), "lab2": (0.90, 0.80), "lab3": (0.70, 0.70),
    "lab4": (0.98, 0.55), "lab5": (0.55, 0.98), "lab6": (0.85, 0.90),
}  # fmt: skip
PLAIN = {"plain": 0.8}
TAU, KAPPA, DISPATCH_SEED, LABEL_SEED = 0.97, 5, 7, 3


def _register(r: redis.Redis, keys: Keys) -> None:
    labelers = [{"id": lid, "accuracy": (s + t) / 2, "sensitivity": s, "specificity": t}
                for lid, (s, t) in COINS.items()]  # fmt: skip
    labelers += [{"id": lid, "accuracy": a} for lid, a in PLAIN.items()]
    register_configured(r, keys, Settings(labelers=labelers))
    r.zadd(keys.live, {lid: time.time() + 3600 for lid in [*COINS, *PLAIN]})


def _coins(labeler: str) -> tuple[float, float]:
    return COINS[labeler] if labeler in COINS else (PLAIN[labeler], PLAIN[labeler])


def _label(frame_id: str, labeler: str, truth: int) -> int:
    """A seeded two-coin draw: right with probability s on class 1, t on class 0."""
    s, t = _coins(labeler)
    return simulated_label(LABEL_SEED, frame_id, labeler, truth, s if truth == 1 else t)


def _run(agg: Aggregator, r: redis.Redis, keys: Keys, cap: Capture, truths: dict[str, int]) -> None:
    for _ in range(10_000):
        report = agg.step(block_ms=1)
        answered = 0
        while cap.pending:
            req = cap.pending.pop(0)
            label = _label(req.frame_id, req.labeler_id, truths[req.frame_id])
            entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label)
            r.xadd(keys.labels, entry.to_fields())  # type: ignore[arg-type]
            answered += 1
        if not answered and not report.labels_read and r.zcard(keys.open_frames) == 0:
            return
    raise AssertionError("aggregator did not finish")


def _frames(r: redis.Redis, keys: Keys, n: int) -> dict[str, int]:
    rng = np.random.default_rng(11)
    return {open_frame(r, keys, i, int(t)): int(t) for i, t in enumerate(rng.integers(0, 2, n))}


def _offline(fids: list[str], truths: dict[str, int], two_coin: bool) -> dict[str, dict]:
    """GTX's rule along each frame's label sequence, with the batch posterior of each prefix."""
    ids = [*COINS, *PLAIN]
    orders = [labeler_order(DISPATCH_SEED, fid, ids) for fid in fids]
    pairs = zip(fids, orders, strict=True)
    labels = np.array([[_label(f, lab, truths[f]) for lab in o] for f, o in pairs])
    sens = np.array([[_coins(lab)[0] for lab in o] for o in orders])
    spec = np.array([[_coins(lab)[1] for lab in o] for o in orders])
    acc = (sens + spec) / 2
    out: dict[str, dict] = {}
    for t in range(KAPPA + 1):
        mask = np.arange(labels.shape[1]) < t
        if two_coin:
            post = two_coin_posterior(labels, sens, spec, np.broadcast_to(mask, labels.shape))
        else:
            post = gtx_posterior(labels, acc, np.broadcast_to(mask, labels.shape))
        codes = decide(Method.GTX, post.confidence, t, TAU, KAPPA,
                       eligible_left=len(ids) - t)  # fmt: skip
        for i, fid in enumerate(fids):
            if fid not in out and codes[i] != Decision.ASK.value:
                out[fid] = {"n": t, "labelers": orders[i][:t], "labels": labels[i, :t].tolist(),
                            "label": int(post.label[i]), "p1": float(post.p1[i]),
                            "confidence": float(post.confidence[i])}  # fmt: skip
    assert sorted(out) == sorted(fids)
    return out


@pytest.mark.redis
def test_two_coin_streaming_equals_offline(r: redis.Redis, keys: Keys) -> None:
    """Invariant 6 for two-coin: the same labels, label counts, p1 and confidence, bit for bit."""
    _register(r, keys)
    truths = _frames(r, keys, 60)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, model="two_coin", tau=TAU, kappa=KAPPA, seed=DISPATCH_SEED)
    _run(agg, r, keys, cap, truths)

    records = {rec["frame_id"]: rec for rec in final_records(r, keys)}
    fids = sorted(truths)
    assert sorted(records) == fids
    offline = _offline(fids, truths, two_coin=True)
    for fid in fids:
        rec, want = records[fid], offline[fid]
        assert int(rec["n_labels"]) == want["n"]
        assert json.loads(rec["labelers"]) == want["labelers"]
        assert json.loads(rec["labels"]) == want["labels"]
        assert int(rec["label"]) == want["label"]
        assert float(rec["p1"]) == want["p1"]
        assert float(rec["confidence"]) == want["confidence"]
        # the record names the model and the coins each label was weighed with
        assert rec["model"] == "two_coin" and rec["method"] == "gtx"
        coins = [_coins(lab) for lab in want["labelers"]]
        assert json.loads(rec["sensitivities"]) == [s for s, _ in coins]
        assert json.loads(rec["specificities"]) == [t for _, t in coins]
        assert json.loads(rec["accuracies"]) == [(s + t) / 2 for s, t in coins]
    # the check can fail: the one-coin posterior of the same sequences differs on these labelers
    one_coin = _offline(fids, truths, two_coin=False)
    assert any(one_coin[f]["p1"] != offline[f]["p1"] for f in fids)


@pytest.mark.redis
def test_one_coin_stays_the_default_and_carries_no_coins(r: redis.Redis, keys: Keys) -> None:
    """The same registered coins under the default model: the one-coin posterior, as before."""
    _register(r, keys)
    truths = _frames(r, keys, 30)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=TAU, kappa=KAPPA, seed=DISPATCH_SEED)
    _run(agg, r, keys, cap, truths)
    records = {rec["frame_id"]: rec for rec in final_records(r, keys)}
    fids = sorted(truths)
    offline = _offline(fids, truths, two_coin=False)
    for fid in fids:
        rec = records[fid]
        assert float(rec["p1"]) == offline[fid]["p1"]
        assert int(rec["n_labels"]) == offline[fid]["n"]
        assert rec["model"] == "one_coin"
        assert "sensitivities" not in rec and "specificities" not in rec
