"""The whole fine-tuning grid in head mode, against one pass of the backbone over the stand-in.

Run:  .venv/bin/python benchmarks/bench_finetune.py [--out DIR] [--mode head|full] [grid options]

Timed: ``gtx-stream experiment finetune --mode head`` with the paper's grid (two cohorts, four
methods, budgets 250 to 4000, 5 seeds x 3 trainings: 960 trainings) as a fresh process, with a
fresh feature cache, so rendering the stand-in, the features and every training are counted.
The issue's target: at most 20 minutes on a 2-core machine.

Baseline, same run: one forward pass of EfficientNet-Lite0 over the 1050 stand-in frames at
224 px (what one ``gtx-stream train --mode head`` over the whole video would spend on features),
timed in this process. The ratio says how many such passes the grid costs, which carries from
one machine to another better than the seconds do.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 20 * 60


def baseline_seconds(frames: int, image_size: int) -> float:
    import numpy as np
    import torch

    from gtx_stream.train.experiment import Plan, _tensors, standin_images
    from gtx_stream.train.model import Classifier

    jpegs, _ = standin_images(Plan(frames=frames))
    model = Classifier(image_size).eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(jpegs), 32):
            batch = np.stack(list(_tensors(jpegs[i : i + 32], image_size)))
            model.features(torch.from_numpy(batch))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="keep the grid's JSON and figures here")
    parser.add_argument("--mode", choices=["head", "full"], default="head")
    parser.add_argument("--frames", type=int, default=1050)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("extra", nargs="*", help="more options for the command, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "out"
        argv = [sys.executable, "-m", "gtx_stream", "experiment", "finetune", "--mode", args.mode,
                "--frames", str(args.frames), "--image-size", str(args.image_size), "--out",
                str(out), "--cache", str(Path(tmp) / "cache"), "--quiet", *args.extra]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        grid = time.perf_counter() - started
        if done.returncode:
            print(done.stdout, done.stderr, file=sys.stderr)
            return done.returncode
        print(done.stdout.rstrip())
    base = baseline_seconds(args.frames, args.image_size)
    print(f"\ncommand: {' '.join(argv[1:])}")
    print(f"grid ({args.mode}): {grid:.1f} s   baseline (one backbone pass over {args.frames} "
          f"frames): {base:.1f} s   ratio {grid / base:.1f}")  # fmt: skip
    print(f"target: at most {TARGET_SECONDS} s: {'met' if grid <= TARGET_SECONDS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
