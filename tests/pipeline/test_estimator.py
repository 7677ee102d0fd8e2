"""``gtx-stream estimator`` against a real Redis: EM over the final labels plus gold, written as
``em`` records that the aggregator decides its next frames with (invariant 6 across parameter
snapshots), and writes that never undo a newer record."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from gtx_stream.config import AggregatorSettings, EstimatorSettings
from gtx_stream.core.decision import Decision, decide
from gtx_stream.core.em import EMSettings, dawid_skene
from gtx_stream.core.models import Method, ModelName, gtx_posterior
from gtx_stream.core.records import FinalRecord
from gtx_stream.pipeline.estimate import Estimator
from gtx_stream.pipeline.estimate.window import LabelWindow
from gtx_stream.store import em_params
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, TwoCoinRecord, get_labelers, store
from tests.aggregator_harness import (
    Capture,
    final_records,
    make_aggregator,
    open_frame,
    run_until_idle,
)

TRUE = {"good": 0.92, "fair": 0.8, "new": 0.85, "weak": 0.65}
TAU, KAPPA = 0.97, 4


def _final(r: redis.Redis, keys: Keys, i: int, labelers: list[str], labels: list[int]) -> None:
    rec = FinalRecord(frame_id=f"f{i}", label=labels[0], p1=0.5, confidence=0.5,
                      reason="kappa", method="gtx", labelers=labelers, labels=labels,
                      accuracies=[0.5] * len(labels), finalised_at=time.time())  # fmt: skip
    r.xadd(keys.final, rec.to_fields())  # type: ignore[arg-type]


def _draw_finals(r: redis.Redis, keys: Keys, n: int, seed: int = 1) -> list[int]:
    """n final records, each labeled by every labeler of TRUE; returns the truths."""
    rng = np.random.default_rng(seed)
    truths = rng.integers(0, 2, n).tolist()
    ids = sorted(TRUE)
    for i, y in enumerate(truths):
        labels = [y if rng.random() < TRUE[lab] else 1 - y for lab in ids]
        _final(r, keys, i, ids, labels)
    return truths


def _gold_record(acc: float, n: int) -> LabelerAccuracy:
    right = round(acc * n)
    return LabelerAccuracy((right + 1) / (n + 2), 0.0, 1.0, "assessment", n, correct=right)


def _register(r: redis.Redis, keys: Keys) -> None:
    store(r, keys, {
        "good": _gold_record(0.9, 20), "fair": _gold_record(0.8, 10),
        # no gold at all: a configured guess, which EM replaces once it has labels
        "new": LabelerAccuracy.given(0.6, "config"),
        "weak": _gold_record(0.6, 10),
    })  # fmt: skip
    r.zadd(keys.live, {lab: time.time() + 3600 for lab in TRUE})


def _estimator(r: redis.Redis, keys: Keys, **kw: object) -> Estimator:
    settings = EstimatorSettings(**{"min_labels": 10, **kw})  # type: ignore[arg-type]
    return Estimator(r, keys, settings, AggregatorSettings())


@pytest.mark.redis
def test_the_window_reads_what_is_new_and_stays_bounded(r: redis.Redis, keys: Keys) -> None:
    for i in range(30):
        _final(r, keys, i, ["a", "b"], [1, 0])
    win = LabelWindow(r, keys, capacity=21)
    assert win.fill() == 20  # the newest whole frames that fit: 10 frames of 2 labels
    assert [f.labels for f in win.frames] == [(1, 0)] * 10
    assert win.fill() == 0
    for i in range(30, 33):
        _final(r, keys, i, ["a", "b", "c"], [1, 1, 0])
    assert win.fill() == 9
    assert win.n_labels <= 21 and win.n_labels == sum(len(f.labels) for f in win.frames)
    assert win.frames[-1].labelers == ("a", "b", "c")
    arrays = win.arrays({"a": 0, "b": 1, "c": 2})
    assert len(arrays.task) == win.n_labels and arrays.n_tasks == len(win.frames)


@pytest.mark.redis
def test_a_fit_writes_em_records_with_intervals_time_and_base(r: redis.Redis, keys: Keys) -> None:
    _register(r, keys)
    _draw_finals(r, keys, 400)
    before = time.time()
    report = _estimator(r, keys).fit_once()
    assert report is not None and report.labels == 1600 and report.frames == 400
    assert sorted(report.written) == sorted(TRUE) and report.gold_answers == 40
    raw = {k: json.loads(v) for k, v in r.hgetall(keys.labelers).items()}
    for lid, doc in raw.items():
        rec = LabelerAccuracy.from_dict(doc)
        assert rec.source == "em" and rec.lower < rec.accuracy < rec.upper
        assert doc["fitted_at"] >= before and doc["labels"] == 400
        # within a few points of the truth, from 400 labels each
        assert abs(rec.accuracy - TRUE[lid]) < 0.05, (lid, rec.accuracy)
    # the labeler without gold is measured from its labels, not left at its configured 0.6
    assert raw["new"]["base"] == {"accuracy": 0.6, "lower": 0.6, "upper": 0.6,
                                  "source": "config", "n": 0}  # fmt: skip
    assert raw["good"]["base"]["correct"] == 18 and raw["good"]["n"] == 20

    # a refit starts from the same base: the gold is never forgotten, nor an em record nested
    _draw_finals(r, keys, 50, seed=2)
    again = _estimator(r, keys).fit_once()
    assert again is not None and sorted(again.written) == sorted(TRUE)
    doc = json.loads(r.hget(keys.labelers, "good"))
    assert doc["base"]["source"] == "assessment" and "base" not in doc["base"]


@pytest.mark.redis
def test_the_fit_is_em_over_the_window_plus_gold(r: redis.Redis, keys: Keys) -> None:
    """The written parameters are core EM's on the same labels, gold tasks shared or not."""
    _register(r, keys)
    _draw_finals(r, keys, 200)
    _estimator(r, keys).fit_once()
    ids = sorted(TRUE)
    task, who, label = [], [], []
    for i, rec in enumerate(final_records(r, keys)):
        for lab, y in zip(json.loads(rec["labelers"]), json.loads(rec["labels"]), strict=True):
            task.append(i), who.append(ids.index(lab)), label.append(y)
    # the gold answers as 20 shared gold tasks (truth 1 for the first half), answered by
    # whoever has that many: the same counts per labeler as the records'
    gold = {}
    n_tasks = 200
    counts = {"good": (18, 20), "fair": (8, 10), "weak": (6, 10)}
    for lab, (right, n) in counts.items():
        for k in range(n):
            t, y = n_tasks + k, 1 if k % 2 == 0 else 0
            gold[t] = y
            # right answers first, alternating the classes as the estimator splits them
            task.append(t), who.append(ids.index(lab)), label.append(y if k < right else 1 - y)
    want = dawid_skene(task, who, label, gold, EMSettings(model=ModelName.ONE_COIN),
                       n_tasks=n_tasks + 20, n_labelers=len(ids))  # fmt: skip
    got = get_labelers(r, keys)
    for j, lid in enumerate(ids):
        assert got[lid].accuracy == pytest.approx(float(want.params["accuracy"][j]), abs=1e-9)


@pytest.mark.redis
def test_a_record_changed_during_the_fit_is_kept(
    r: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(r, keys)
    _draw_finals(r, keys, 100)
    read = em_params.registered

    def read_then_change(client: redis.Redis, k: Keys) -> dict[str, em_params.Registered]:
        got = read(client, k)
        # a gold answer lands while EM runs, and a person is paused (unregistered)
        store(client, k, {"fair": _gold_record(0.8, 11)})
        client.hdel(k.labelers, "weak")
        return got

    monkeypatch.setattr(em_params, "registered", read_then_change)
    est = _estimator(r, keys)
    report = est.fit_once()
    assert report is not None
    assert sorted(report.skipped) == ["fair", "weak"]
    assert sorted(report.written) == ["good", "new"]
    assert get_labelers(r, keys)["fair"].source == "assessment"
    assert r.hget(keys.labelers, "weak") is None  # not registered again
    # the hash is not as the fit left it: the next due fit runs, over the new gold
    monkeypatch.undo()
    assert est.fit_once(if_changed=True) is not None
    assert get_labelers(r, keys)["fair"].source == "em"


def _count_commands(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the commands ``r`` sends from now on."""
    sent: list[str] = []
    send = r.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return send(*args, **options)

    monkeypatch.setattr(r, "execute_command", counted)
    return sent


@pytest.mark.redis
def test_nothing_new_since_the_last_fit_fits_and_writes_nothing(
    r: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _register(r, keys)
    _draw_finals(r, keys, 100)
    est = _estimator(r, keys)
    assert est.fit_once(if_changed=True) is not None  # the first fit has nothing to compare to
    fitted = r.hgetall(keys.labelers)
    sent = _count_commands(r, monkeypatch)
    with caplog.at_level(logging.DEBUG, logger="gtx_stream.pipeline.estimate.service"):
        assert est.fit_once(if_changed=True) is None
    # the check: the stream's poll (the shard count, what the final stream gained) and one
    # read of the labelers hash; nothing written
    assert sent == ["GET", "XRANGE", "HGETALL"], sent
    assert r.hgetall(keys.labelers) == fitted  # not rewritten: fitted_at is the fit's
    assert "not refitted" in caplog.text
    assert est.fit_once() is not None  # a forced fit (--once, benchmarks) still fits


@pytest.mark.redis
@pytest.mark.parametrize("change", ["new labels", "gold answer", "labeler paused", "loaded"])
def test_something_new_since_the_last_fit_refits(r: redis.Redis, keys: Keys, change: str) -> None:
    _register(r, keys)
    _draw_finals(r, keys, 100)
    est = _estimator(r, keys)
    first = est.fit_once(if_changed=True)
    assert first is not None and est.fit_once(if_changed=True) is None
    if change == "new labels":
        _draw_finals(r, keys, 5, seed=7)
    elif change == "gold answer":  # a person's gold answer replaces the em record
        store(r, keys, {"fair": _gold_record(0.8, 11)})
    elif change == "labeler paused":  # unregistered: the others' fit no longer pools it
        r.hdel(keys.labelers, "weak")
    else:  # an operator's labelers load replaces an em record
        store(r, keys, {"good": LabelerAccuracy.given(0.7, "file")})
    again = est.fit_once(if_changed=True)
    assert again is not None and again.fitted_at > first.fitted_at
    assert est.fit_once(if_changed=True) is None  # and that fit is the last one again
    if change == "gold answer":
        doc = json.loads(r.hget(keys.labelers, "fair"))
        assert doc["source"] == "em" and doc["base"]["n"] == 11
    if change == "loaded":
        assert json.loads(r.hget(keys.labelers, "good"))["base"]["source"] == "file"


@pytest.mark.redis
def test_too_few_labels_fit_nothing(r: redis.Redis, keys: Keys) -> None:
    _register(r, keys)
    _draw_finals(r, keys, 3)
    assert _estimator(r, keys, min_labels=50).fit_once() is None
    assert all(rec.source != "em" for rec in get_labelers(r, keys).values())


@pytest.mark.redis
def test_two_coin_fits_write_the_coins(r: redis.Redis, keys: Keys) -> None:
    coins = TwoCoinRecord(0.9, 0.9, 0.8, 0.95, 0.8, 0.95, "assessment", 10, 10, 9, 9)
    _register(r, keys)
    store(r, keys, {"good": LabelerAccuracy(0.86, 0.7, 0.95, "assessment", 20, coins, 18)})
    _draw_finals(r, keys, 300)
    est = Estimator(r, keys, EstimatorSettings(min_labels=10),
                    AggregatorSettings(model="two_coin"))  # fmt: skip
    assert est.fit_once() is not None
    for lid, rec in get_labelers(r, keys).items():
        assert rec.two_coin is not None and rec.two_coin.source == "em"
        c = rec.two_coin
        assert c.sensitivity_lower < c.sensitivity < c.sensitivity_upper
        assert abs(c.sensitivity - TRUE[lid]) < 0.08 and abs(c.specificity - TRUE[lid]) < 0.08
    assert get_labelers(r, keys)["good"].two_coin.positives_right == 9  # type: ignore[union-attr]


def _check_offline(record: dict[str, str], params: dict[str, float], n_ids: int) -> None:
    """GTX's rule along the record's label sequence, with ``params``: the same stop, p1."""
    labelers, labels = json.loads(record["labelers"]), json.loads(record["labels"])
    acc = np.array([[params[lab] for lab in labelers]])
    seq = np.array([labels])
    for t in range(1, len(labels) + 1):
        mask = np.arange(len(labels))[None, :] < t
        post = gtx_posterior(seq, acc, mask)
        code = decide(Method.GTX, post.confidence, np.array([t]), TAU, KAPPA,
                      eligible_left=np.array([n_ids - t]))[0]  # fmt: skip
        if code != Decision.ASK.value:
            assert t == len(labels)
            assert float(record["p1"]) == float(post.p1[0])
            assert float(record["confidence"]) == float(post.confidence[0])
            assert json.loads(record["accuracies"]) == [params[lab] for lab in labelers]
            return
    raise AssertionError(f"{record['frame_id']}: the offline rule asks for more labels")


@pytest.mark.redis
def test_streaming_equals_offline_across_em_snapshots(r: redis.Redis, keys: Keys) -> None:
    """Invariant 6 with parameter updates: each batch of frames is decided with the snapshot
    in force (the gold estimates, then each fit's), exactly as offline; earlier final records
    keep the parameters they were decided with."""
    _register(r, keys)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=TAU, kappa=KAPPA, seed=3)
    est = _estimator(r, keys)
    snapshots: list[dict[str, float]] = []
    seen: set[str] = set()
    rng = np.random.default_rng(5)
    for phase in range(3):
        snapshots.append({lid: rec.accuracy for lid, rec in get_labelers(r, keys).items()})
        agg.labelers.params(max_age=0.0)  # the aggregator's next decisions read the snapshot
        for i in range(60):
            open_frame(r, keys, phase * 100 + i, int(rng.integers(0, 2)))
        run_until_idle(agg, r, keys, cap, TRUE, seed=phase)
        records = [rec for rec in final_records(r, keys) if rec["frame_id"] not in seen]
        assert len(records) == 60
        for rec in records:
            _check_offline(rec, snapshots[-1], len(TRUE))
        seen |= {rec["frame_id"] for rec in records}
        assert est.fit_once() is not None
    assert snapshots[0] != snapshots[1] != snapshots[2]  # the check can fail
    # final records are never rewritten: the first batch still carries the first snapshot
    first = [rec for rec in final_records(r, keys) if int(rec["frame_id"].split("-")[1]) < 100]
    assert len(first) == 60
    for rec in first:
        _check_offline(rec, snapshots[0], len(TRUE))


@pytest.mark.redis
def test_the_estimator_service_runs_and_stops_on_sigterm(
    r: redis.Redis, keys: Keys, redis_url: str, tmp_path: Path
) -> None:
    _register(r, keys)
    _draw_finals(r, keys, 100)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_url}"\nprefix = "{keys.prefix}"\n'
                   "[estimator]\nevery_seconds = 0.2\nmin_labels = 10\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTX_")}
    proc = subprocess.Popen([sys.executable, "-m", "gtx_stream.cli", "--config", str(cfg),
                             "--log-level", "DEBUG", "estimator"], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            if all(rec.source == "em" for rec in get_labelers(r, keys).values()):
                break
            time.sleep(0.1)
        assert all(rec.source == "em" for rec in get_labelers(r, keys).values())
        first = json.loads(r.hget(keys.labelers, "good"))["fitted_at"]
        time.sleep(1.0)  # five periods with nothing new: no refit
        assert json.loads(r.hget(keys.labelers, "good"))["fitted_at"] == first
        _draw_finals(r, keys, 20, seed=9)
        deadline = time.time() + 30
        while json.loads(r.hget(keys.labelers, "good"))["fitted_at"] == first:
            assert time.time() < deadline, "no refit"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "EM over" in err and "not refitted" in err


@pytest.mark.redis
def test_the_service_says_once_that_it_waits_for_min_labels(
    r: redis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, a service with too few final labels logged its start line and then nothing."""
    import threading

    _register(r, keys)
    _draw_finals(r, keys, 3)  # 12 labels
    est = _estimator(r, keys, min_labels=50, every_seconds=0.05)
    stop = threading.Event()
    worker = threading.Thread(target=est.run, args=(stop,))
    with caplog.at_level(logging.INFO, logger="gtx_stream.pipeline.estimate.service"):
        worker.start()
        time.sleep(0.6)  # a dozen due checks
        stop.set()
        worker.join(10)
    said = [rec.getMessage() for rec in caplog.records if "min_labels" in rec.getMessage()]
    assert said == [
        "12 final labels so far, fewer than estimator.min_labels = 50: the first fit waits for them"
    ]
