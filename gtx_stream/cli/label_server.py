"""`gtx-stream label-server [--host H --port P]`: the labeling page, its API and /admin."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sys
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
    try:
        sock = _listen(host, port)
    except PortInUse as err:
        print(f"label server: {err}", file=sys.stderr)
        return 1  # the one holding it may be on its way out: a restart may find it free
    # said once the port is ours: before, a port in use showed this line, then the error
    log.info("label server on http://%s:%d for %s (links: %s/login/...)", host, port,
             ", ".join(people) or "no people (no labeler with backend human)",
             settings.label_server.public_url)  # fmt: skip
    stray = _stray_public_port(settings.label_server.public_url, port)
    if stray:
        log.warning(stray)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    # uvicorn shuts down on SIGTERM, then raises it again once its own handler is gone: with
    # the default handler there the process died of it (exit 143 under a service manager)
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        server.run(sockets=[sock])
    except (_Stopped, KeyboardInterrupt):  # SIGINT, raised again the same way (as uvicorn.run)
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    return 0


class PortInUse(OSError):
    """Another socket listens on the label server's address and port."""


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, as uvicorn binds one (``SO_REUSEADDR``, IPv6 for
    an address with ``:``). :class:`PortInUse` when the port is taken; ConfigError (exit 2)
    for an address that is not this machine's or a port it may not use."""
    from gtx_stream.config import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog; with SO_REUSEADDR a bind alone may not clash
    except OSError as err:
        sock.close()
        where = f"{host}:{port}"
        if err.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} is in use on {host}: another label server, or "
                            "another program, listens there; stop it or set "
                            "label_server.port (--port)") from None  # fmt: skip
        raise ConfigError(f"label server: cannot listen on {where}: "
                          f"{err.strerror or err} (label_server.host and .port, "
                          "--host and --port)") from None  # fmt: skip
    return sock


class _Stopped(Exception):
    """SIGTERM once uvicorn has shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped
