"""`gtx-stream demo`: the whole pipeline on a synthetic video, then a summary."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from gtx_stream.cli.options import add_config_option, non_negative_int


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on a synthetic video and compare with the truth",
        description=(
            "Start an ingester, one labeler worker per simulated labeler and an aggregator on "
            "a synthetic video whose truth is known, then print error rate, labels per frame "
            "and the same run offline. Uses the configured Redis under a fresh key prefix, "
            "else an embedded redis-server."
        ),
    )
    add_config_option(p)
    p.add_argument("--frames", type=int, default=300, help="frames in the synthetic video")
    p.add_argument("--labelers", type=int, default=10, help="simulated labelers")
    p.add_argument("--alpha-range", type=float, nargs=2, default=(0.8, 1.0),
                   metavar=("LOW", "HIGH"), help="labeler accuracies ~ U(LOW, HIGH)")  # fmt: skip
    p.add_argument("--method", choices=["gtx", "mv", "wmv", "sv"], help="default: config")
    p.add_argument("--model", choices=["one_coin", "two_coin"],
                   help="gtx's labeler model; two_coin registers each simulated labeler's "
                        "sensitivity and specificity, both its accuracy (default: config, "
                        "aggregator.model)")  # fmt: skip
    p.add_argument("--tau", type=float, help="default: config (0.99)")
    p.add_argument("--kappa", type=int, help="default: config (5)")
    p.add_argument("--budget", type=int, help="labels to spend; 0: unlimited (default: config)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--workdir", type=Path, help="keep the video, config and logs here")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--people", action="store_true",
                   help="also start the label server and print a login link: you label in "
                        "the browser while the simulated labelers work")  # fmt: skip
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gtx_stream.config import ConfigError, load_settings
    from gtx_stream.ops.demo import DemoOptions, print_summary, run_demo
    from gtx_stream.ops.people_demo import print_people_summary
    from gtx_stream.store.connection import connect

    settings = load_settings(args.config)
    if settings.redis.url.get_secret_value():
        # an unusable URL is a one-line error now, not once the services have started
        connect(settings, check=False).close()
    agg = settings.aggregator
    lo, hi = args.alpha_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigError(f"--alpha-range: need 0 <= LOW <= HIGH <= 1, got {lo} {hi}")
    if args.frames < 1 or args.labelers < 1:
        raise ConfigError("--frames and --labelers must be at least 1")
    method = args.method or str(agg.method)
    model = args.model or str(agg.model)
    if model != "one_coin" and method != "gtx":
        raise ConfigError(f"--model {model} needs method gtx, not {method}")
    if model != "one_coin" and args.people:
        raise ConfigError("--model two_coin is not built for --people yet")
    tau = agg.tau if args.tau is None else args.tau
    kappa = agg.kappa if args.kappa is None else args.kappa
    if not 0.5 < tau < 1.0 or kappa < 1:
        raise ConfigError(f"need 0.5 < tau < 1 and kappa >= 1, got tau={tau} kappa={kappa}")
    opts = DemoOptions(
        frames=args.frames,
        labelers=args.labelers,
        alpha_range=(lo, hi),
        method=method,
        model=model,
        tau=tau,
        kappa=kappa,
        seed=args.seed,
        budget=agg.budget if args.budget is None else args.budget,
        json=args.json,
        workdir=args.workdir,
        people=args.people,
        # with a person, the demo waits for them (their page, their answers)
        timeout=24 * 3600.0 if args.people else DemoOptions.timeout,
    )

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        summary = run_demo(settings, opts)
    except RuntimeError as err:
        print(f"gtx-stream demo: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    elif args.people:
        print_people_summary(summary)
    else:
        print_summary(summary)
    return 0 if not summary.get("failed_services") else 1
