"""Labeler service: an RQ worker for the labelers in ``$LABELER_IDS`` (docker-compose: ``labeler``).

``LABELER_IDS`` is ``all`` (every ``[[labelers]]`` of the config, the default) or ids
separated by commas or spaces. Run as many replicas as the labelers' throughput needs: the
replicas share each labeler's RQ queue.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

from gtx_stream.cli import main


def argv(env: Mapping[str, str]) -> list[str]:
    """The ``gtx-stream`` arguments this service runs with, from its environment."""
    head = ["--log-level", env.get("LOG_LEVEL") or "INFO", "labeler"]
    ids = [i for i in re.split(r"[,\s]+", env.get("LABELER_IDS", "all")) if i]
    if not ids or ids == ["all"]:
        return [*head, "--all"]
    return head + [arg for i in ids for arg in ("--id", i)]


if __name__ == "__main__":
    sys.exit(main(argv(os.environ)))
