"""Aggregator service: apply labels, decide, dispatch, finalise (docker-compose: ``aggregator``).

Several replicas may run at once: they share one consumer group. ``CONSUMER`` names this one
in the group (default: host name and process id).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from gtx_stream.cli import main


def argv(env: Mapping[str, str]) -> list[str]:
    """The ``gtx-stream`` arguments this service runs with, from its environment."""
    args = ["--log-level", env.get("LOG_LEVEL") or "INFO", "aggregator"]
    if env.get("CONSUMER"):
        args += ["--consumer", env["CONSUMER"]]
    return args


if __name__ == "__main__":
    sys.exit(main(argv(os.environ)))
