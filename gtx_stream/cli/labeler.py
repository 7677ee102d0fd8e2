"""`gtx-stream labeler --id ID [--id ID ...] | --all`: one RQ worker per labeler, in one process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gtx_stream.cli.options import add_config_option


def register(sub: Any) -> None:
    p = sub.add_parser(
        "labeler",
        help="run a labeler worker (RQ) for one or more labelers of the config",
        description=(
            "Serve the RQ queue of each given labeler, each in its own thread (a slow labeler "
            "holds up no other): each label request is answered by the labeler's backend "
            "(simulated, replay, python or http) and the label, or why the request failed, is "
            "added to the labels stream. While Redis restarts the worker waits for it. SIGTERM "
            "or Ctrl-C finish the requests in hand, then exit 0 (a second one exits at once)."
        ),
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--id",
        dest="ids",
        action="append",
        metavar="ID",
        help="labeler id from the config's [[labelers]] (repeat to serve several)",
    )
    who.add_argument(
        "--all",
        action="store_true",
        help="serve every configured labeler but people (backend human: the label server's)",
    )
    add_config_option(p)
    p.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import EXIT_CONFIG, ConfigError, load_settings
    from gtx_stream.pipeline.label.backends import LabelError
    from gtx_stream.pipeline.label.worker import run_labeler_worker

    settings = load_settings(args.config)
    if args.all:
        ids = [lab.id for lab in settings.labelers if lab.backend != "human"]
        people = [lab.id for lab in settings.labelers if lab.backend == "human"]
        if people:
            print(f"labeler: not serving {', '.join(people)} (backend human: people label on "
                  "the label server's page)", file=sys.stderr)  # fmt: skip
        if people and not ids:
            raise ConfigError("config error: labelers: all are people (backend human): "
                              "run gtx-stream label-server for them")  # fmt: skip
    else:
        ids = list(args.ids)
    if not ids:
        raise ConfigError("config error: labelers: none configured")
    try:
        return run_labeler_worker(settings, ids, burst=args.burst)
    except LabelError as err:
        print(f"labeler error: {err}", file=sys.stderr)
        return EXIT_CONFIG  # a backend that cannot be built as configured
    except redis.RedisError as err:
        print(f"redis error: {err}", file=sys.stderr)
        return 1
