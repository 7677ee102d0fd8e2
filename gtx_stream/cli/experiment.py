"""`gtx-stream experiment finetune`: section 4 of the paper (fine-tuning) on the stand-in."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gtx_stream.cli.options import non_negative_int, positive_int
from gtx_stream.cli.train import EXTRA_HINT

DEFAULT_CACHE = Path.home() / ".cache" / "gtx-stream"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("budgets must be positive integers")
    return tuple(sorted(set(values)))


def register(sub: Any) -> None:
    p = sub.add_parser(
        "experiment",
        help="reproduce the paper's fine-tuning experiment (section 4) on the stand-in video",
        description="Experiments that need the train extra (torch).",
    )
    which = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    f = which.add_parser(
        "finetune",
        help="section 4: label the stand-in on a budget with MV, WMV, SV and GTX, then fine-tune",
        description=(
            "Section 4 on the stand-in video: per cohort (U(0.8, 1.0), U(0.6, 0.9)) and seed, "
            "simulated labelers label the pool on each budget (MV and WMV 5 labels per image; "
            "SV and GTX until tau or kappa), EfficientNet-Lite0 is trained on each labeled set "
            "(--repeats times) and scored on held-out frames. Writes OUT/finetune.json, "
            "finetune-figure4.png and finetune-figure5.png (Figures 4 and 5)."
        ),
    )
    f.add_argument("--out", type=Path, default=Path("finetune"),
                   help="folder for the JSON and the figures (default ./finetune)")  # fmt: skip
    f.add_argument("--mode", choices=["head", "full"], default="head",
                   help="head: linear head on frozen, cached features (default, minutes); "
                        "full: every layer, 3 epochs per training (the paper's; about 25 hours "
                        "for the grid on a 2-core CPU)")  # fmt: skip
    f.add_argument("--frames", type=int, default=1050, help="stand-in frames (default 1050)")
    f.add_argument(
        "--standin-seed", type=non_negative_int, default=0, help="the stand-in video's seed"
    )
    f.add_argument(
        "--seed", type=non_negative_int, default=0, help="base seed of the labelers and orders"
    )
    f.add_argument("--seeds", type=int, default=5, help="labeling seeds (default 5)")
    f.add_argument("--repeats", type=int, default=3, help="trainings per seed (default 3)")
    f.add_argument("--budgets", type=_ints, default="250,500,750,1000,1500,2000,3000,4000",
                   help="comma list (default 250,500,750,1000,1500,2000,3000,4000)")  # fmt: skip
    f.add_argument("--image-size", type=positive_int, default=224, help="input size (default 224)")
    f.add_argument(
        "--epochs", type=positive_int, help="passes per training (default: head 30, full 3)"
    )
    f.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    f.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"head mode's feature cache (default {DEFAULT_CACHE})")  # fmt: skip
    f.add_argument("--quiet", action="store_true", help="no progress lines")
    f.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        from gtx_stream.train import experiment_report
        from gtx_stream.train.experiment import Plan, run
        from gtx_stream.train.fit import _device
    except ImportError as err:
        print(f"{EXTRA_HINT} ({err})", file=sys.stderr)
        return 2
    from gtx_stream.train.fit import TrainError

    budgets = args.budgets if isinstance(args.budgets, tuple) else _ints(args.budgets)
    try:
        _device(args.device)
        plan = Plan(frames=args.frames, standin_seed=args.standin_seed, seed=args.seed,
                    seeds=args.seeds, repeats=args.repeats, budgets=budgets, mode=args.mode,
                    image_size=args.image_size, epochs=args.epochs,
                    device=args.device)  # fmt: skip
        result = run(plan, cache=args.cache, progress=not args.quiet)
    except (TrainError, ValueError) as err:
        print(f"experiment finetune: {err}", file=sys.stderr)
        return 2
    written = experiment_report.write(args.out, result)
    print(experiment_report.format_text(experiment_report.document(result)))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
