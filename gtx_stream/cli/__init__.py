"""The ``gtx-stream`` command: one sub-command per module in :mod:`gtx_stream.cli`."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import io
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib import metadata

from gtx_stream.cli.environment import check_environment
from gtx_stream.cli.options import add_config_option, add_log_level_option, inherit_options
from gtx_stream.config import ConfigError

# Each module defines ``register(subparsers)``, which adds its sub-command(s) with a one-line
# ``help`` and sets ``func=<callable(args) -> int>`` as the parser default.
COMMANDS = (
    "simulate",
    "replay",
    "demo",
    "ingest",
    "labeler",
    "aggregator",
    "estimator",
    "export",
    "tail",
    "status",
    "labelers",
    "frame",
    "dead",
    "gold",
    "label_server",
    "stand_in",
    "train",
    "experiment",
)


def version() -> str:
    """The installed distribution's version (``pip install -e .`` included)."""
    try:
        return metadata.version("gtx-stream")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gtx-stream",
        description="Ground Truth Extension on Redis: cheap, trustworthy labels for video frames.",
    )
    parser.add_argument("--version", action="version", version=f"gtx-stream {version()}")
    add_log_level_option(parser)
    add_config_option(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"gtx_stream.cli.{name}").register(sub)
    inherit_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if hasattr(signal, "SIGUSR1"):  # kill -USR1 PID: every thread's stack on stderr (a hang)
        # not where stderr has no file descriptor (main() called with stderr captured)
        with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
            faulthandler.register(signal.SIGUSR1, all_threads=True)
    if args.log_level != "DEBUG":  # its font cache note, once per machine, is not ours
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        check_environment()
        return int(args.func(args) or 0)
    except ConfigError as err:
        # 2 (EXIT_CONFIG), which no service restarts on; 1 for a Redis that does not answer
        print(str(err), file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`gtx-stream tail | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
