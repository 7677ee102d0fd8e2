"""Ingester service: open the frames of ``$SOURCE`` for labeling (docker-compose: ``ingester``).

``SOURCE`` is a video file, a camera index, a stream URL or a folder of images; ``SOURCES``
names a sources file instead (several sources at once, one ``SOURCE [NAME] [truth=CSV]`` per
line); ``TASKS`` (a crowd dataset folder) opens one frame per task. ``TRUTH`` is the
``frame_index,truth`` file of ``SOURCE``, for simulated labelers. Settings come from
``$GTX_CONFIG`` and ``GTX_*`` variables (sampling: ``GTX_INGEST__FPS``, ``GTX_INGEST__EVERY``,
...).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from gtx_stream.cli import main
from gtx_stream.config import EXIT_CONFIG


def argv(env: Mapping[str, str]) -> list[str]:
    """The ``gtx-stream`` arguments this service runs with, from its environment."""
    # the command checks TRUTH against the rest (a sources file gives each source its own)
    head = ["--log-level", env.get("LOG_LEVEL") or "INFO", "ingest"]
    head += ["--truth", env["TRUTH"]] if env.get("TRUTH") else []
    if env.get("TASKS"):
        return [*head, "--tasks", env["TASKS"]]
    if env.get("SOURCES"):
        return [*head, "--sources", env["SOURCES"]]
    if not env.get("SOURCE"):
        print("ingester: set SOURCE (a video, camera index, stream URL or folder) or SOURCES "
              "(a sources file)", file=sys.stderr)  # fmt: skip
        raise SystemExit(EXIT_CONFIG)  # a configuration error: not restarted (README)
    return [*head, env["SOURCE"]]


if __name__ == "__main__":
    sys.exit(main(argv(os.environ)))
