"""`gtx-stream stand-in VIDEO --truth CSV`: render the stand-in for the paper's section 4 video."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gtx_stream.cli.options import non_negative_int
from gtx_stream.offline.standin import DEFAULT_FRAMES, SIZE, write_standin_video
from gtx_stream.ops.synthetic import write_truth_csv


def register(sub: Any) -> None:
    p = sub.add_parser(
        "stand-in",
        help="render the stand-in for the paper's part-tapping video, with its truth CSV",
        description=(
            "Render a repetitive industrial operation (a conveyor carries one part per cycle "
            "along a guide rail) as an MJPG/AVI video that `gtx-stream ingest` reads, and "
            "write its truth (1: the part touches the guide, 0: a gap of a few pixels) as "
            "the frame_index,truth CSV that `ingest --truth` reads. Lighting drift, noise, "
            "blur, camera shake, a hand, a shadow and clutter vary independently of the "
            "truth. A stand-in, not the paper's data: see docs/standin.md."
        ),
    )
    p.add_argument("video", type=Path, metavar="VIDEO", help="video file to write (.avi)")
    p.add_argument("--truth", type=Path, required=True, metavar="CSV", help="truth CSV to write")
    p.add_argument("--frames", type=non_negative_int, default=DEFAULT_FRAMES,
                   help=f"number of frames (default {DEFAULT_FRAMES}, the paper's)")  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--fps", type=float, default=10, help="frame rate written (default 10)")
    p.add_argument("--strip", type=Path, metavar="PNG",
                   help="also write a sample strip: 4 frames of each class, captioned")  # fmt: skip
    p.set_defaults(func=_run)


def _refusal(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, before any frame is rendered (None: nothing)."""
    if args.frames < 1:
        return "--frames must be at least 1"
    if not args.fps > 0:
        return f"--fps must be above 0, got {args.fps}"
    if args.video.suffix.lower() != ".avi":
        return f"{args.video}: the stand-in is MJPG in AVI; give a .avi name"
    for path in (args.video, args.truth, args.strip):
        if path is not None and not path.absolute().parent.is_dir():
            return f"{path}: no folder {path.parent}"
    return None


def _run(args: argparse.Namespace) -> int:
    refusal = _refusal(args)
    if refusal is not None:
        print(f"stand-in: {refusal}", file=sys.stderr)
        return 2
    try:
        truths = write_standin_video(args.video, args.frames, args.seed, fps=args.fps,
                                     strip=args.strip)  # fmt: skip
    except RuntimeError as err:  # OpenCV cannot write the video or the strip
        print(f"stand-in: {err}", file=sys.stderr)
        return 2
    write_truth_csv(args.truth, truths)
    runs = 1 + sum(a != b for a, b in zip(truths, truths[1:], strict=False))
    print(
        f"wrote {len(truths)} frames ({SIZE[0]}x{SIZE[1]}, MJPG) to {args.video}; "
        f"truth in {args.truth}: {sum(truths)} touching ({sum(truths) / len(truths):.0%}), "
        f"{runs} run{'s' * (runs != 1)}"
    )
    if args.strip is not None:
        print(f"sample strip in {args.strip}")
    if len(set(truths)) == 1:
        print(f"note: every frame is truth {truths[0]} (the truth changes between cycles of 30 "
              "to 40 frames): give more --frames, or another --seed, for both classes")  # fmt: skip
    return 0
