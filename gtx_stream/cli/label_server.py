"""`gtx-stream label-server [--host H --port P]`: the labeling page, its API and /admin."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gtx_stream.cli.options import add_config_option

log = logging.getLogger("gtx_stream.server")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "label-server",
        help="serve the labeling page for people (backend human), its JSON API and /admin",
        description=(
            'People (labelers with backend = "human") log in with the link that '
            "`gtx-stream labelers invite ID` prints and label one frame at a time; the "
            "JSON API is described at /api/openapi.json. Needs the server extra "
            "(pip install -e '.[server]'). SIGTERM or Ctrl-C stop it."
        ),
    )
    add_config_option(p)
    p.add_argument("--host", help="address to listen on (default: label_server.host)")
    p.add_argument("--port", type=int, help="port (default: label_server.port)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gtx_stream.config import ConfigError, load_settings

    try:
        import uvicorn

        from gtx_stream.server.app import app_from_settings
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"label-server needs the server extra ({err.name} is missing): "
            "pip install -e '.[server]' in the gtx-stream folder"
        ) from None
    settings = load_settings(args.config)
    host = args.host or settings.label_server.host
    port = args.port or settings.label_server.port
    people = [lab.id for lab in settings.labelers if lab.backend == "human"]
    app = app_from_settings(settings)
    log.info("label server on http://%s:%d for %s (links: %s/login/...)", host, port,
             ", ".join(people) or "no people (no labeler with backend human)",
             settings.label_server.public_url)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0
