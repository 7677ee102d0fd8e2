"""Estimator service: labeler parameters re-learned by EM from final labels plus gold
(docker-compose: ``estimator``). Run one per pipeline."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from gtx_stream.cli import main


def argv(env: Mapping[str, str]) -> list[str]:
    """The ``gtx-stream`` arguments this service runs with, from its environment."""
    return ["--log-level", env.get("LOG_LEVEL") or "INFO", "estimator"]


if __name__ == "__main__":
    sys.exit(main(argv(os.environ)))
