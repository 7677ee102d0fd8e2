"""``gtx-stream demo``: the whole pipeline on a synthetic video, as separate processes.

1. Redis: the configured URL, else an embedded server started here.
2. A short synthetic video whose every frame has a known truth (a square inside or outside a
   marked region), and simulated labelers with accuracies drawn from ``alpha_range``.
3. One ingester, one worker per labeler and one aggregator, each its own process.
4. Live progress, then a summary against the truth: error rate, MAE and labels per frame;
   the same seeded label sequence run offline through the core math (it must agree frame by
   frame); and majority vote spending the same budget with k = kappa labels per frame.
   Under ``--model two_coin`` each labeler's sensitivity and specificity are its accuracy.
5. The finalised frames exported once (``gtx-stream export``, not following) into
   ``<workdir>/dataset``. Without ``--workdir`` the demo's temporary folder is removed at the
   end but for that dataset, so that there is something to train on.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import redis

from gtx_stream.config import Settings
from gtx_stream.core.decision import Stop, threshold_stop
from gtx_stream.core.draws import labeler_order, simulated_label
from gtx_stream.core.models import Method, ModelName, majority_vote
from gtx_stream.core.records import FinalRecord, decode_fields, text
from gtx_stream.offline.replay_stream import two_coin_stop
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.ops.status import pipeline_status
from gtx_stream.ops.supervisor import Supervisor
from gtx_stream.store.connection import connect
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)

DEMO_BLOCK_FRAMES = 10


@dataclass
class DemoOptions:
    frames: int = 300
    labelers: int = 10
    alpha_range: tuple[float, float] = (0.8, 1.0)
    method: str = "gtx"
    model: str = ModelName.ONE_COIN.value
    tau: float = 0.99
    kappa: int = 5
    seed: int = 0
    budget: int = 0
    json: bool = False
    timeout: float = 600.0
    workdir: Path | None = None
    people: bool = False
    """With the label server and one person (:mod:`gtx_stream.ops.people_demo`)."""


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))


def write_config(path: Path, sections: dict[str, dict[str, Any]], labelers: list[dict]) -> None:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for lab in labelers:
        lines.append("[[labelers]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in lab.items()]
        lines.append("")
    path.write_text("\n".join(lines))


def labeler_accuracies(n: int, alpha_range: tuple[float, float], seed: int) -> dict[str, float]:
    lo, hi = alpha_range
    rng = np.random.default_rng([seed, 2024])
    return {f"labeler-{j:02d}": float(a) for j, a in enumerate(rng.uniform(lo, hi, n))}


def run_demo(settings: Settings, opts: DemoOptions) -> dict[str, Any]:
    url = settings.redis.url.get_secret_value()
    embedded: EmbeddedRedis | None = None
    tmp = opts.workdir is None
    if opts.workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="gtx-demo-"))
    else:
        workdir = opts.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    prefix = settings.redis.prefix
    try:
        if not url:
            embedded = EmbeddedRedis(data_dir=workdir).start()
            url = embedded.url
            where = f"embedded redis-server on {url}"
        else:
            # never touch an existing pipeline's keys: a fresh prefix for this demo
            prefix = f"{prefix}-demo-{secrets.token_hex(3)}"
            where = "the configured Redis"
        method = opts.method + (" (two_coin)" if opts.model == "two_coin" else "")
        _say(opts, f"gtx-stream demo: {opts.frames} frames, {opts.labelers} labelers, "
                   f"alpha ~ U{opts.alpha_range}, method {method}, tau {opts.tau}, "
                   f"kappa {opts.kappa}; {where}, key prefix {prefix!r}")  # fmt: skip
        if opts.people:
            from gtx_stream.ops.people_demo import run_people_demo

            return run_people_demo(settings, opts, url, prefix, workdir, lambda t: _say(opts, t))
        return _run(settings, opts, url, prefix, workdir)
    finally:
        if embedded is not None:
            embedded.stop()
        if tmp:
            _keep_only_the_dataset(workdir)


def _run(
    settings: Settings, opts: DemoOptions, url: str, prefix: str, workdir: Path
) -> dict[str, Any]:
    from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv

    video = workdir / "demo.avi"
    truths = write_synthetic_video(video, opts.frames, seed=opts.seed)
    write_truth_csv(workdir / "truth.csv", truths)
    accuracies = labeler_accuracies(opts.labelers, opts.alpha_range, opts.seed)
    config = workdir / "demo.toml"
    write_config(
        config,
        {
            "redis": {"url": url, "prefix": prefix},
            "aggregator": {
                "method": opts.method,
                "model": opts.model,
                "tau": opts.tau,
                "kappa": opts.kappa,
                "budget": opts.budget,
                "seed": opts.seed,
                "lease_seconds": 30.0,
                "max_open_frames": settings.aggregator.max_open_frames,
            },
            "ingest": {"jpeg_quality": settings.ingest.jpeg_quality},
        },  # fmt: skip
        [
            {"id": lab, "backend": "simulated", "accuracy": a, "seed": opts.seed}
            | ({"sensitivity": a, "specificity": a} if opts.model == "two_coin" else {})
            for lab, a in accuracies.items()
        ],
    )
    client = connect(settings, url, decode_responses=True)
    keys = Keys(prefix)
    sup = Supervisor(config=config, log_dir=workdir / "logs")
    started = time.monotonic()
    try:
        sup.start("aggregator", "aggregator")
        for lab in accuracies:
            sup.start(f"labeler-{lab}", "labeler", "--id", lab)
        # Frames opened before every labeler serves would be dispatched among fewer labelers
        # than the offline run assumes: start the ingester once all of them are live.
        _wait_for_labelers(sup, client, keys, list(accuracies), opts.timeout)
        sup.start("ingester", "ingest", str(video), "--truth", str(workdir / "truth.csv"),
                  "--source-id", "demo")  # fmt: skip
        _wait(sup, client, keys, opts, started)
    finally:
        codes = sup.stop_all()
    elapsed = time.monotonic() - started
    bad = {k: v for k, v in codes.items() if v not in (0, None)}
    summary = summarise(client, keys, truths, accuracies, opts)
    client.close()
    if not bad:
        summary["dataset"] = export_dataset(settings, url, keys, workdir / "dataset")
    summary["seconds"] = round(elapsed, 2)
    summary["exit_codes"] = codes
    if bad:
        summary["failed_services"] = bad
    return summary


def export_dataset(settings: Settings, url: str, keys: Keys, out: Path) -> dict[str, Any]:
    """Export every finalised frame once into ``out`` (what ``gtx-stream export --out`` does)."""
    from gtx_stream.pipeline.export.exporter import Exporter

    client = connect(settings, url)
    # the demo's video is 300 frames: blocks of 10 frames give it a val and a test split (a
    # real camera keeps export.block_frames, a minute at 30 fps by default)
    export = settings.export.model_copy(update={"block_frames": DEMO_BLOCK_FRAMES})
    exporter = Exporter(client, keys, export, out, consumer="demo")
    try:
        exporter.setup()
        report = exporter.run(threading.Event(), follow=False)
    finally:
        exporter.close()
        client.close()
    return {"path": str(out), "exported": report.exported, "missing": report.missing,
            "filtered": report.filtered}  # fmt: skip


def _keep_only_the_dataset(workdir: Path) -> None:
    for path in workdir.iterdir():
        if path.name != "dataset":
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    if not any(workdir.iterdir()):
        workdir.rmdir()


def _wait_for_labelers(
    sup: Supervisor, client: redis.Redis, keys: Keys, ids: list[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        live = set(client.zrangebyscore(keys.live, time.time() - 5, "+inf"))
        registered = set(client.hkeys(keys.labelers))
        if set(ids) <= live & registered:
            return
        sup.raise_if_failed()
        if time.monotonic() > deadline:
            raise RuntimeError("labeler workers did not come up in time")
        time.sleep(0.1)


def _wait(
    sup: Supervisor, client: redis.Redis, keys: Keys, opts: DemoOptions, started: float
) -> None:
    tty = sys.stderr.isatty()
    last_print = 0.0
    while True:
        time.sleep(0.25)
        sup.raise_if_failed()
        st = pipeline_status(client, keys)
        done = not sup.services["ingester"].running and st["frames_open"] == 0
        now = time.monotonic()
        if tty or now - last_print >= 2.0 or done:
            budget = "unlimited" if st["budget_left"] is None else st["budget_left"]
            line = (f"  {now - started:6.1f}s  frames finalised {st['frames_finalised']:>5}"
                    f" / opened {st['frames_opened']:>5}  labels spent {st['budget_spent']:>6}"
                    f"  budget left {budget}")  # fmt: skip
            if not opts.json:
                print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr)
            last_print = now
        if done:
            if tty and not opts.json:
                print(file=sys.stderr)
            return
        if now - started > opts.timeout:
            raise RuntimeError(f"demo did not finish within {opts.timeout:.0f} s")


def summarise(
    client: redis.Redis,
    keys: Keys,
    truths: list[int],
    accuracies: dict[str, float],
    opts: DemoOptions,
) -> dict[str, Any]:
    """Error, MAE and labels per frame of the finalised stream, and the offline/MV references."""
    records = [
        FinalRecord.from_fields(decode_fields(f), text(entry_id))
        for entry_id, f in cast(list[Any], client.xrange(keys.final))
    ]
    if not records:
        return {"frames_finalised": 0}
    idx = np.array([rec.frame_index for rec in records])
    y = np.array([truths[i] for i in idx])
    label = np.array([rec.label for rec in records])
    p1 = np.array([rec.p1 for rec in records])
    n = np.array([rec.n_labels for rec in records])
    spent = int(n.sum())
    reasons: dict[str, int] = {}
    for rec in records:
        reasons[rec.reason] = reasons.get(rec.reason, 0) + 1

    # the same draws, offline: labeler order and labels depend on (seed, frame id) only
    fids = [rec.frame_id for rec in records]
    ids = list(accuracies)
    orders = [labeler_order(opts.seed, fid, ids) for fid in fids]
    seq = np.array([[simulated_label(opts.seed, fid, lab, int(t), accuracies[lab]) for lab in o]
                    for fid, o, t in zip(fids, orders, y, strict=True)])  # fmt: skip
    acc = np.array([[accuracies[lab] for lab in o] for o in orders])
    offline = offline_stop(opts, seq, acc)
    two = opts.model == "two_coin"  # each record then carries the coins it was weighed with
    coins = [[accuracies[j] for j in r.labelers if two] for r in records]
    carried = [(r.model, r.sensitivities, r.specificities) for r in records]
    agree = bool(
        np.array_equal(offline.n_labels, n)
        and np.array_equal(offline.posterior.label, label)
        and np.array_equal(offline.posterior.p1, p1)
        and carried == [(opts.model, c, c) for c in coins]
    )
    # majority vote, k = kappa labels per frame, the same number of labels, on the first frames
    k, n_mv = opts.kappa, min(len(records), spent // opts.kappa)  # by index, not by timing
    first = np.argsort(idx, kind="stable")[:n_mv]
    mv = majority_vote(seq[first, :k])
    y_mv = y[first]

    def metrics(lab: np.ndarray, p: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        return {
            "error_rate": float(np.mean(lab != truth)) if len(truth) else float("nan"),
            "mae": float(np.mean(np.abs(truth - p))) if len(truth) else float("nan"),
        }

    expected = expected_for_labelers(accuracies, opts)
    return {
        "frames_finalised": len(records),
        "labels_spent": spent,
        "labels_per_frame": spent / len(records),
        **metrics(label, p1, y),
        "reasons": reasons,
        "offline_same_seed_agrees": agree,
        "offline_labels_per_frame": float(offline.n_labels.mean()),
        "offline_error_rate": float(np.mean(offline.posterior.label != y)),
        "expected_for_these_labelers": expected,
        "majority_vote_same_budget": {
            "k": k,
            "frames_labeled": n_mv,
            **metrics(mv.label, mv.p1, y_mv),
        },  # fmt: skip
        "method": str(Method(opts.method)),
        "model": opts.model,
        "tau": opts.tau,
        "kappa": opts.kappa,
        "labelers": {lab: round(a, 4) for lab, a in accuracies.items()},
    }


def expected_for_labelers(
    accuracies: dict[str, float], opts: DemoOptions, frames: int = 20_000
) -> dict[str, float]:
    """Labels per frame, error and MAE to expect from these labelers: the same threshold rule
    over many fresh simulated frames (the simulator's draws, with this cohort's accuracies)."""
    acc = np.array(list(accuracies.values()))
    rng = np.random.default_rng([opts.seed, 77])
    truth = rng.integers(0, 2, frames)
    order = np.argsort(rng.random((frames, len(acc))), axis=1)  # a random order per frame
    a = acc[order]
    right = rng.random(a.shape) < a
    labels = np.where(right, truth[:, None], 1 - truth[:, None])
    stop = offline_stop(opts, labels, a)
    return {
        "frames": frames,
        "labels_per_frame": float(stop.n_labels.mean()),
        "error_rate": float(np.mean(stop.posterior.label != truth)),
        "mae": float(np.mean(np.abs(truth - stop.posterior.p1))),
    }


def offline_stop(opts: DemoOptions, labels: np.ndarray, accuracies: np.ndarray) -> Stop:
    """The core rule along each frame's labels, under the demo's model (coins = accuracy)."""
    if ModelName(opts.model) is ModelName.TWO_COIN:
        ones = np.ones(labels.shape, dtype=bool)
        return two_coin_stop(labels, accuracies, accuracies, ones, opts.tau, opts.kappa)
    return threshold_stop(opts.method, labels, accuracies, opts.tau, opts.kappa)


def print_summary(s: dict[str, Any]) -> None:
    if not s.get("frames_finalised"):
        print("no frame was finalised")
        return
    mv = s["majority_vote_same_budget"]
    print()
    print(f"frames finalised   {s['frames_finalised']}  in {s.get('seconds', 0):.1f} s")
    print(f"labels spent       {s['labels_spent']}  ({s['labels_per_frame']:.2f} per frame)")
    print(f"reasons            {', '.join(f'{k} {v}' for k, v in sorted(s['reasons'].items()))}")
    print(f"{s['method'].upper()} error rate     {100 * s['error_rate']:.2f}%   MAE "
          f"{100 * s['mae']:.2f}%{'   (two-coin)' * (s.get('model') == 'two_coin')}")  # fmt: skip
    print(f"MV, same budget    {mv['frames_labeled']} frames at k={mv['k']}: error "
          f"{100 * mv['error_rate']:.2f}%   MAE {100 * mv['mae']:.2f}%")  # fmt: skip
    ex = s["expected_for_these_labelers"]
    print(f"expected for these labelers (simulated, {ex['frames']} frames): "
          f"{ex['labels_per_frame']:.2f} labels per frame, error {100 * ex['error_rate']:.2f}%, "
          f"MAE {100 * ex['mae']:.2f}%")  # fmt: skip
    same = "yes" if s["offline_same_seed_agrees"] else "NO"
    print(f"offline run of the same seeded labels agrees frame by frame: {same}")
    ds = s.get("dataset")
    if ds:
        print(f"dataset            {ds['exported']} images ({ds['missing']} missing, "
              f"{ds['filtered']} filtered) in {ds['path']}")  # fmt: skip
        print(
            "                   <split>/<class>/<frame id>.jpg and manifest.jsonl; load it "
            "with datasets.load_dataset('imagefolder', data_dir=...) (docs/export.md)"
        )


def _say(opts: DemoOptions, text: str) -> None:
    if not opts.json:
        print(text, file=sys.stderr)
