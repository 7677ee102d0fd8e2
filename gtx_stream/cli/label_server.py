"""`gtx-stream label-server [--host H --port P]`: the labeling page, its API and /admin."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any
from urllib.parse import urlsplit

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


def _stray_public_port(public_url: str, port: int) -> str | None:
    """Why the invite links would miss a server on this machine: ``public_url`` names this
    machine (a proxy in front may well map another port) on a port it does not listen on."""
    url = urlsplit(public_url)
    local = url.hostname in ("127.0.0.1", "localhost", "::1")
    theirs = url.port or (443 if url.scheme == "https" else 80)
    if not local or theirs == port:
        return None
    return (f"label_server.public_url is {public_url} but the server listens on port {port}: "
            "invite links will not reach it; set label_server.public_url "
            "(GTX_LABEL_SERVER__PUBLIC_URL)")  # fmt: skip


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
    stray = _stray_public_port(settings.label_server.public_url, port)
    if stray:
        log.warning(stray)
    # uvicorn shuts down on SIGTERM, then raises it again once its own handler is gone: with
    # the default handler there the process died of it (exit 143 under a service manager)
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class _Stopped(Exception):
    """SIGTERM once uvicorn has shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped
