"""From the stand-in video to a trained model with the README's commands only, at small size:
``stand-in``, ``aggregator`` and ``labeler --all`` as services, ``ingest``, ``export``,
``train``. Every step is a ``gtx-stream`` process, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gtx_stream.ops.demo import write_config
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.ops.supervisor import Supervisor

pytestmark = [pytest.mark.torch, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 60


def test_stand_in_to_a_trained_model_with_readme_commands(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    def gtx(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "gtx_stream", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, f"gtx-stream {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    gtx("stand-in", "line.avi", "--truth", "truth.csv", "--frames", str(FRAMES))
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(data_dir=tmp_path / "redis").start()
    write_config(
        tmp_path / "config.toml",
        {
            "redis": {"url": server.url},
            # 60 frames in 20 blocks: successive blocks spread evenly, so val gets about 6
            "export": {"block_frames": 3, "val_fraction": 0.3, "test_fraction": 0.0},
        },
        [
            {"id": f"sim-{i}", "backend": "simulated", "accuracy": a, "seed": i}
            for i, a in enumerate((0.95, 0.9, 0.85, 0.8))
        ],  # fmt: skip
    )
    sup = Supervisor(config=tmp_path / "config.toml", log_dir=tmp_path / "logs",
                     env={"PYTHONPATH": env["PYTHONPATH"]})  # fmt: skip
    try:
        sup.start("aggregator", "aggregator")
        sup.start("labelers", "labeler", "--all")
        time.sleep(1.0)
        gtx("ingest", "line.avi", "--truth", "truth.csv")
        deadline = time.monotonic() + 120
        while "frames open      0" not in (status := gtx("status")):
            sup.raise_if_failed()
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        print(gtx("export", "--out", "dataset"))
    finally:
        sup.stop_all()
        server.stop()
    assert "consistent" in gtx("export", "--check", "dataset")
    print(gtx("train", "dataset", "--out", "model", "--mode", "head", "--image-size", "96",
              "--quiet"))  # fmt: skip
    assert (tmp_path / "model" / "model.pt").stat().st_size > 1_000_000
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    splits = metrics["splits"]
    assert splits["val"]["n"] > 0 and splits["train"]["n"] + splits["val"]["n"] == FRAMES
