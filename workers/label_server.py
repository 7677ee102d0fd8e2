"""Label server service: the labeling page, its API and /admin (docker-compose: ``label-server``).

Listens on ``HOST`` (default ``0.0.0.0`` in a container) and ``PORT`` (default: the config's
``label_server.port``). Needs the ``server`` extra.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from gtx_stream.cli import main


def argv(env: Mapping[str, str]) -> list[str]:
    """The ``gtx-stream`` arguments this service runs with, from its environment."""
    args = ["--log-level", env.get("LOG_LEVEL") or "INFO", "label-server"]
    args += ["--host", env.get("HOST", "0.0.0.0")]
    if env.get("PORT"):
        args += ["--port", env["PORT"]]
    return args


if __name__ == "__main__":
    sys.exit(main(argv(os.environ)))  # exit 0 on SIGTERM: gtx-stream label-server sees to it
