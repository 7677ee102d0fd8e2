"""The labeling page (GET /): plain HTML, CSS and JS from ``static/``, no build step, no CDN.

The HTML carries what the script needs: the CSRF token (``<meta name="csrf-token">``), the
undo window and the heartbeat interval (``data-*`` on ``<body>``). Element ids are stable for
tests and for the browser test: ``#frame``, ``#question``, ``#yes``, ``#no``, ``#skip``,
``#undo``, ``#progress``, ``#logout``.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gtx_stream.server.auth import page_person
from gtx_stream.server.state import ServerState

STATIC = Path(__file__).resolve().parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; script-src 'self'; "
    "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # invite links carry a token in their path
    "X-Frame-Options": "DENY",
}

NOT_LOGGED_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Not logged in</title><link rel="stylesheet" href="/static/label.css"></head>
<body class="message"><h1>Not logged in</h1>
<p>Open the login link you were sent. No link, or it no longer works (a link works once)?
Ask whoever runs the labeling for an invite link.</p>
<p>For whoever runs it: <code>gtx-stream labelers invite ID</code> prints a new link for the
labeler <code>ID</code>.</p></body></html>
"""


@cache
def _template() -> Template:
    return Template((STATIC / "label.html").read_text(encoding="utf-8"))


def render_label_page(state: ServerState, labeler_id: str, csrf: str) -> str:
    s = state.settings.label_server
    return _template().substitute(
        csrf=html.escape(csrf, quote=True),
        question=html.escape(s.question),
        labeler=html.escape(labeler_id),
        undo_ms=str(int(s.undo_seconds * 1000)),
        heartbeat_ms=str(int(s.heartbeat_seconds * 1000)),
    )


async def label_page(request: Request) -> Response:
    state: ServerState = request.app.state.server
    person = await page_person(state, request)
    if person is None:
        return HTMLResponse(NOT_LOGGED_IN, status_code=401, headers=SECURITY_HEADERS)
    page = render_label_page(state, person.labeler_id, person.csrf)
    return HTMLResponse(page, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})
