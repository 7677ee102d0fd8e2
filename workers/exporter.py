"""Exporter service: finalised frames into a dataset folder (docker-compose: ``exporter``).

``OUT`` is the dataset folder (default ``/data/dataset``, a volume); ``FORMAT`` is ``folder``
(default) or ``parquet``. One exporter per group: do not scale this service.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from gtx_stream.cli import main


def argv(env: Mapping[str, str]) -> list[str]:
    """The ``gtx-stream`` arguments this service runs with, from its environment."""
    return ["--log-level", env.get("LOG_LEVEL") or "INFO", "export", "--follow",
            "--out", env.get("OUT") or "/data/dataset",
            "--format", env.get("FORMAT") or "folder"]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(argv(os.environ)))
