"""Connecting to the configured Redis, with one-line errors instead of tracebacks."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import redis

from gtx_stream.config import ConfigError, Settings

_SECRET_QUERY = re.compile(r"(?i)((?:^|&)(?:ssl_)?password=)[^&]*")


def redacted(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and ``status``).

    Also a ``password`` or ``ssl_password`` in the query, which redis-py takes as well.
    """
    parts = urlsplit(url)
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    if parts.password is None:
        if query == parts.query:
            return url
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, query, ""))


def connect(settings: Settings, url: str | None = None, check: bool = True) -> redis.Redis:
    """A client for ``url`` (default: settings.redis.url); raises ConfigError when unusable."""
    url = url if url is not None else settings.redis.url.get_secret_value()
    if not url:
        raise ConfigError(
            "config error: redis.url is empty: set GTX_REDIS__URL or [redis] url in config.toml"
        )
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=settings.redis.socket_timeout,
            socket_connect_timeout=settings.redis.socket_timeout,
            health_check_interval=30,
        )
    except ValueError as err:
        raise ConfigError(f"config error: redis.url: {err}") from None
    if check:
        try:
            client.ping()
        except redis.AuthenticationError as err:
            raise ConfigError(f"redis at {redacted(url)}: authentication failed: {err}") from None
        except redis.RedisError as err:
            raise ConfigError(f"redis at {redacted(url)} is unreachable: {err}") from None
    return client
