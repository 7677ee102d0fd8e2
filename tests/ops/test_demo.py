"""``gtx-stream demo`` as a user runs it: a subprocess, its JSON summary, and Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from gtx_stream.pipeline.export.check import check_folder
from gtx_stream.pipeline.export.layout import class_folder_files

# every demo runs a Redis: the configured one, else an embedded redis-server of its own
pytestmark = pytest.mark.redis


def _env(**extra: str) -> dict[str, str]:
    """The environment without any GTX_* setting (so no Redis URL is configured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTX_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "gtx_stream", "demo", *args]


def _run_json(cwd: Path, env: dict[str, str], *args: str) -> dict:
    out = subprocess.run(
        _demo(*args, "--json"), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary: dict = json.loads(out.stdout)
    return summary


@pytest.mark.slow
def test_demo_on_an_embedded_redis_finalises_every_frame(tmp_path: Path) -> None:
    # tmp_path as working directory: no ./config.toml, no GTX_REDIS__URL -> embedded server
    work = tmp_path / "work"
    summary = _run_json(tmp_path, _env(), "--frames", "40", "--workdir", str(work))
    assert summary["frames_finalised"] == 40
    # it ends by exporting every frame into its workdir, once, in class folders per split
    dataset = work / "dataset"
    assert summary["dataset"] == {"path": str(dataset), "exported": 40, "missing": 0,
                                  "filtered": 0}  # fmt: skip
    assert len(class_folder_files(dataset)) == 40
    assert check_folder(dataset) == []
    assert summary["offline_same_seed_agrees"] is True
    assert summary["labels_spent"] == round(summary["labels_per_frame"] * 40)
    assert set(summary["exit_codes"].values()) == {0}
    assert "failed_services" not in summary
    assert 1.0 <= summary["labels_per_frame"] <= 5.0


@pytest.mark.slow
def test_demo_on_a_configured_redis_uses_a_fresh_prefix(
    tmp_path: Path, redis_url: str, r: redis.Redis
) -> None:
    r.xadd("gtx:final", {"frame_id": "not-the-demo's"})  # an existing pipeline's stream
    summary = _run_json(
        tmp_path, _env(GTX_REDIS__URL=redis_url), "--frames", "20", "--labelers", "4"
    )
    assert summary["frames_finalised"] == 20
    assert summary["offline_same_seed_agrees"] is True
    finals = sorted(r.scan_iter("*:final"))
    assert "gtx:final" in finals and r.xlen("gtx:final") == 1, "the demo wrote into gtx:final"
    [demo_final] = [k for k in finals if k != "gtx:final"]
    assert demo_final.startswith("gtx-demo-")
    assert r.xlen(demo_final) == 20
    prefix = demo_final.removesuffix(":final")
    stray = [k for k in r.scan_iter("*") if not k.startswith((prefix, "gtx:final", "rq:"))]
    assert not stray, f"keys outside the demo's prefix: {stray[:10]}"


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _finalised(progress: Path) -> int:
    """Frames finalised according to the demo's last progress line (stderr, every 2 s)."""
    found = re.findall(r"frames finalised\s+(\d+)", progress.read_text(errors="replace"))
    return int(found[-1]) if found else 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_stops_every_process_it_started_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    progress = tmp_path / "progress.txt"
    with progress.open("w") as err:
        # enough frames that it is still running when the signal comes
        demo = subprocess.Popen(
            _demo("--frames", "2000", "--labelers", "3"),
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            # a test run started in the background by a shell without job control inherits
            # SIGINT ignored, and so would the demo (it then ran to its end): as from a terminal
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    parent = psutil.Process(demo.pid)
    children: list[psutil.Process] = []
    try:
        # redis-server, aggregator, 3 labeler workers and the ingester, frames being finalised
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = _children(parent)
            if len(children) >= 6 and _finalised(progress) > 0:
                break
            assert demo.poll() is None, progress.read_text()[-3000:]
            time.sleep(0.2)
        assert len(children) >= 6, f"{len(children)} child processes"
        assert demo.poll() is None, "the demo finished before the signal: give it more frames"

        demo.send_signal(sig)
        try:
            code = demo.wait(timeout=30)
        except subprocess.TimeoutExpired:  # where it hangs: every thread's stack, on stderr
            demo.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            states = [f"{p.pid} {p.status()}: {' '.join(p.cmdline()[-3:])}"
                      for p in _children(parent)]  # fmt: skip
            pytest.fail(
                f"still running 30 s after {sig.name}; children {states}; stderr:\n"
                + progress.read_text()[-6000:]
            )
        assert code == 130, progress.read_text()[-3000:]
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, [f"{p.pid}: {p.cmdline()}" for p in alive]
    finally:  # a failed run leaves no pipeline behind: the demo and every process it started
        left = {p.pid: p for p in [*children, *_children(parent)]}
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for proc in left.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(list(left.values()), timeout=5)


@pytest.mark.slow
def test_demo_with_the_two_coin_model_decides_with_the_coins_end_to_end(tmp_path: Path) -> None:
    """aggregator.model = two_coin: every final record says two_coin and carries the coins it
    was weighed with, and the offline two-coin run of the same seeded labels agrees frame by
    frame; the simulated labelers' coins are equal, so the one-coin demo decides the same."""
    two = _run_json(tmp_path, _env(), "--frames", "30", "--labelers", "5", "--model", "two_coin",
                    "--workdir", str(tmp_path / "two"))  # fmt: skip
    assert two["model"] == "two_coin" and two["frames_finalised"] == 30
    assert two["offline_same_seed_agrees"] is True  # includes each record's model and coins
    assert "failed_services" not in two and two["dataset"]["exported"] == 30
    one = _run_json(tmp_path, _env(), "--frames", "30", "--labelers", "5",
                    "--workdir", str(tmp_path / "one"))  # fmt: skip
    assert one["model"] == "one_coin" and one["offline_same_seed_agrees"] is True
    for key in ("labels_spent", "error_rate", "reasons", "expected_for_these_labelers"):
        assert one[key] == two[key], key
    # the same p1 per frame, summed in another order: equal to the last bit or two
    assert one["mae"] == pytest.approx(two["mae"], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "two_coin", "--method", "mv"], "needs method gtx"),
        (["--model", "two_coin", "--people"], "not built for --people"),
    ],
)
def test_demo_refuses_two_coin_where_it_cannot_run(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = subprocess.run(_demo(*args), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr


def test_the_majority_vote_reference_is_on_the_first_frames_the_source_gave() -> None:
    """MV spends the demo's budget on the first frames by frame index, whatever order the
    aggregator finalised them in (that order is timing's, and MV's MAE moved run to run)."""
    import fakeredis
    import numpy as np

    from gtx_stream.core.draws import labeler_order, simulated_label
    from gtx_stream.core.models import majority_vote
    from gtx_stream.core.records import FinalRecord
    from gtx_stream.ops.demo import DemoOptions, summarise
    from gtx_stream.store.keys import Keys

    acc = {f"l{j}": a for j, a in enumerate([0.6, 0.7, 0.8])}
    opts = DemoOptions(frames=12, labelers=3, kappa=3, tau=0.9)
    truths = [i % 2 for i in range(12)]

    def record(i: int) -> FinalRecord:  # one label each: 12 labels, MV gets 12 // 3 frames
        fid = f"cam-{i}"
        lab = labeler_order(opts.seed, fid, list(acc))[0]
        y = simulated_label(opts.seed, fid, lab, truths[i], acc[lab])
        return FinalRecord(fid, y, 0.9, 0.9, "confident", "gtx", [lab], [y], [acc[lab]],
                           time.time(), frame_index=i)  # fmt: skip

    summaries = []
    for order in (range(12), [11, 3, 7, 0, 9, 1, 5, 10, 2, 8, 4, 6]):
        r = fakeredis.FakeRedis()
        keys = Keys("gtx")
        for i in order:
            r.xadd(keys.final, record(i).to_fields())  # type: ignore[arg-type]
        summaries.append(summarise(r, keys, truths, acc, opts)["majority_vote_same_budget"])
    assert summaries[0] == summaries[1] and summaries[0]["frames_labeled"] == 4
    orders = [labeler_order(opts.seed, f"cam-{i}", list(acc)) for i in range(4)]
    first = [[simulated_label(opts.seed, f"cam-{i}", lab, truths[i], acc[lab]) for lab in o]
             for i, o in enumerate(orders)]  # fmt: skip
    mv = majority_vote(np.array(first))
    assert summaries[0]["error_rate"] == float(np.mean(mv.label != np.array(truths[:4])))
