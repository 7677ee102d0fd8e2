"""`gtx-stream train`: fine-tune EfficientNet-Lite0 on an exported dataset folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gtx_stream.cli.options import non_negative_int

EXTRA_HINT = (
    "gtx-stream train needs the train extra: pip install -e '.[train]' in the gtx-stream folder"
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune an ImageNet-pretrained EfficientNet-Lite0 on an exported dataset folder",
        description=(
            "Fit on DATASET_DIR's train split and score on its val split (and test, when there "
            "is one): writes MODEL_DIR/model.pt, metrics.json (balanced error, ECE, confusion "
            "matrix) and reliability.png. --mode head trains a linear head on frozen features, "
            "computed once and cached in MODEL_DIR/features (minutes on a CPU the first time, "
            "the head alone after); --mode full trains every layer (minutes on a CPU). Needs the "
            "train extra (torch). The model labels frames as a python labeler: "
            "GTX_MODEL_DIR=MODEL_DIR with target gtx_stream.train.labeler:predict."
        ),
    )
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR",
                   help="a folder written by gtx-stream export")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR",
                   help="where model.pt, metrics.json and reliability.png go")  # fmt: skip
    p.add_argument("--mode", choices=["head", "full"], default="head",
                   help="head: frozen backbone, cached features (default); "
                        "full: all layers")  # fmt: skip
    p.add_argument("--soft", action="store_true",
                   help="fit to each frame's p1 (soft labels) instead of its label")  # fmt: skip
    p.add_argument("--epochs", type=int,
                   help="passes over the training split (default: head 100, full 3)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seeds the head and the shuffles")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32,
                   help="images (full mode) or feature rows (head mode) per step "
                        "(default 32)")  # fmt: skip
    p.add_argument("--image-size", type=int, default=224,
                   help="square input size (default 224, Lite0's own)")  # fmt: skip
    p.add_argument("--lr", type=float,
                   help="learning rate (default: head 1e-3; full 1e-4, the head 10x)")  # fmt: skip
    p.add_argument("--features", type=Path, metavar="DIR",
                   help="where head mode caches the backbone's features (default "
                        "MODEL_DIR/features); a file per split, named by the images' "
                        "hashes and --image-size, so runs on the same frames can share "
                        "one DIR")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        from gtx_stream.train.fit import TrainError, TrainOptions, summary, train
    except ImportError as err:
        print(f"{EXTRA_HINT} ({err})", file=sys.stderr)
        return 2
    from gtx_stream.train.data import DatasetError

    options = TrainOptions(mode=args.mode, soft=args.soft, epochs=args.epochs,
                           device=args.device, seed=args.seed, batch_size=args.batch_size,
                           image_size=args.image_size, lr=args.lr,
                           progress=not args.quiet)  # fmt: skip
    try:
        result = train(args.dataset, args.out, options, features_dir=args.features)
    except (TrainError, DatasetError) as err:
        print(f"train: {err}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0
