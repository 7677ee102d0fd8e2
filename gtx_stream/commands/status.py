"""`gtx-stream status`: frames, budget, queues and labelers of a running pipeline."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show the pipeline's state")
    p.add_argument("--config", help="config file (default: ./config.toml)")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gtx_stream.config import load_settings
    from gtx_stream.connection import connect, redacted
    from gtx_stream.keys import Keys
    from gtx_stream.status import pipeline_status

    settings = load_settings(args.config)
    client = connect(settings)
    st = pipeline_status(client, Keys(settings.redis.prefix), settings.aggregator.live_seconds)
    st["redis"] = redacted(settings.redis.url.get_secret_value())
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    budget = "unlimited" if st["budget_limit"] is None else f"{st['budget_left']} left"
    print(f"redis            {st['redis']}")
    print(f"frames open      {st['frames_open']}  (oldest {st['oldest_open_age_s']} s)")
    print(f"frames final     {st['frames_finalised']}  dead letters {st['dead_letters']}")
    print(f"labels           {st['labels_applied']} applied, {st['budget_spent']} bought, {budget}")
    print(f"{'labeler':<16}{'live':>6}{'accuracy':>10}{'labels':>8}{'queue':>7}{'out':>5}")
    for lab, v in st["labelers"].items():
        acc = "-" if v["accuracy"] is None else f"{v['accuracy']:.3f}"
        print(f"{lab:<16}{'yes' if v['live'] else 'no':>6}{acc:>10}{v['labels']:>8}"
              f"{v['queue']:>7}{v['outstanding']:>5}")  # fmt: skip
    return 0
