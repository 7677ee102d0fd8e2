"""The label server's ASGI app (Starlette): the labeling page, its JSON API, login, /admin.

Starlette rather than FastAPI: a dozen routes need no dependency injection or model layer,
the JSON bodies are two fields checked by hand, and the OpenAPI description is written out
(:mod:`gtx_stream.server.openapi`); Starlette is FastAPI's own core, with fewer dependencies.
Handlers are ``async`` and run their (blocking) Redis calls in Starlette's thread pool.

Routes: ``GET /`` the page; ``GET /login/<token>``; ``POST /logout``; ``/api/*``
(:mod:`gtx_stream.server.api`); ``GET /api/openapi.json``; ``/static/*``; ``GET /healthz``;
``/admin`` (:mod:`gtx_stream.server.admin`).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gtx_stream.config import Settings
from gtx_stream.server import api, auth, pages
from gtx_stream.server.errors import HANDLERS
from gtx_stream.server.feed import Feed, GoldFeed
from gtx_stream.server.openapi import SPEC
from gtx_stream.server.state import ServerState
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)


async def openapi(request: Request) -> Response:
    return JSONResponse(SPEC)


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def _admin_routes(state: ServerState) -> list[BaseRoute]:
    try:
        admin = importlib.import_module("gtx_stream.server.admin")
    except ModuleNotFoundError as err:
        if err.name != "gtx_stream.server.admin":
            raise
        return []
    return [Mount("/admin", routes=admin.admin_routes(state))]


def build_app(state: ServerState, gold: GoldFeed | None = None) -> Starlette:
    """The app over ``state``; ``gold``: the gold book that slips gold frames into feeds
    (default: :func:`gtx_stream.server.gold_feed.gold_feed`, when gold is configured)."""
    if gold is None:
        from gtx_stream.server.gold_feed import gold_feed

        gold = gold_feed(state)
    routes: list[BaseRoute] = [
        Route("/", pages.label_page, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/login/{token}", auth.login, methods=["GET"]),
        Route("/logout", api.logout, methods=["POST"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/next", api.next_request, methods=["GET"]),
        Route("/api/image/{token}", api.image, methods=["GET"]),
        Route("/api/answer", api.answer, methods=["POST"]),
        Route("/api/skip", api.skip, methods=["POST"]),
        Route("/api/heartbeat", api.heartbeat, methods=["POST"]),
        Route("/api/progress", api.progress, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=pages.STATIC), name="static"),
        *_admin_routes(state),
    ]
    handlers: Any = HANDLERS
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.server = state
    app.state.feed = Feed(state, gold)
    return app


def app_from_settings(settings: Settings, client: redis.Redis | None = None) -> Starlette:
    """The app for ``settings``, connected to its Redis (bytes replies)."""
    from gtx_stream.store.connection import connect, connect_queue, has_queue_redis

    client = client if client is not None else connect(settings)
    queue = connect_queue(settings) if has_queue_redis(settings) else None
    # ServerState.keys follows the pipeline's stored shard count and the client's layout
    return build_app(ServerState(client, Keys(settings.redis.prefix), settings, queue))
