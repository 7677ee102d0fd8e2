"""The API's errors: JSON ``{"error": message, "status": code}`` with a 4xx code, never a 500
for anything a client sends."""

from __future__ import annotations

import logging

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)


class ApiError(Exception):
    """``paused``: the refusal is because the gold frames paused the person (the body says
    ``"paused": true``, so that the page tells them that rather than another reason)."""

    def __init__(self, status: int, message: str, paused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.paused = paused


def error_response(status: int, message: str, paused: bool = False) -> JSONResponse:
    body: dict[str, object] = {"error": message, "status": status}
    if paused:
        body["paused"] = True
    return JSONResponse(body, status_code=status)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.paused)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, str(message))


async def redis_error(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: redis unavailable: %s", request.method, request.url.path, exc)
    return error_response(503, "the pipeline's Redis is unavailable; try again shortly")


HANDLERS = {ApiError: api_error, HTTPException: http_error, redis.RedisError: redis_error}
