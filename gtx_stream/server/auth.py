"""Login by invite, the session cookie, and the CSRF check of every POST.

- ``gtx-stream labelers invite ID`` prints ``<public_url>/login/<token>``; opening it redeems
  the token (deleted at once: the link works once) and starts a session.
- The session is a random id in an HttpOnly, SameSite=Strict cookie (``Secure`` with
  ``label_server.secure_cookies``); Redis maps it to the labeler id and a CSRF token.
- Every POST must carry that token in the ``X-CSRF-Token`` header (the page reads it from its
  ``<meta name="csrf-token">``), else 403. The labeler a label is sent for is the session's,
  never anything the page sends.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gtx_stream.server.errors import ApiError
from gtx_stream.server.state import ServerState
from gtx_stream.store import people

COOKIE = "gtx_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Person:
    """The person a request comes from (from their session)."""

    labeler_id: str
    csrf: str
    session_id: str


def human_ids(state: ServerState) -> frozenset[str]:
    return frozenset(lab.id for lab in state.settings.labelers if lab.backend == "human")


def _session(state: ServerState, request: Request) -> Person | None:
    sid = request.cookies.get(COOKIE, "")
    if not sid or len(sid) > MAX_TOKEN_CHARS:
        return None
    found = people.get_session(state.client, state.keys, sid)
    if found is None or found.labeler_id not in human_ids(state):
        return None  # expired, logged out, or no longer a person of the config
    return Person(found.labeler_id, found.csrf, sid)


NOT_LOGGED_IN_ERROR = (
    "not logged in: open your invite link; ask whoever runs the labeling for one "
    "(whoever runs it: gtx-stream labelers invite ID)"
)


async def person_of(state: ServerState, request: Request) -> Person:
    """The session's person; 401 without a valid session, 403 on a POST without its CSRF
    token."""
    person = await run_in_threadpool(_session, state, request)
    if person is None:
        raise ApiError(401, NOT_LOGGED_IN_ERROR)
    if request.method not in ("GET", "HEAD"):
        given = request.headers.get(CSRF_HEADER, "")
        if not given or not secrets.compare_digest(given.encode(), person.csrf.encode()):
            raise ApiError(403, f"missing or wrong {CSRF_HEADER} header")
    return person


async def page_person(state: ServerState, request: Request) -> Person | None:
    return await run_in_threadpool(_session, state, request)


def _login(state: ServerState, token: str) -> tuple[str, str] | None:
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    labeler_id = people.redeem_invite(state.client, state.keys, token)
    if labeler_id is None or labeler_id not in human_ids(state):
        return None
    ttl = state.settings.label_server.session_ttl_seconds
    session_id, _ = people.create_session(state.client, state.keys, labeler_id, ttl)
    return labeler_id, session_id


LOGGED_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="0; url=/">
<title>Logged in</title><link rel="stylesheet" href="/static/label.css"></head>
<body class="message"><p>Logged in. <a id="continue" href="/">Start labeling</a></p></body></html>
"""

REFUSED = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Login link not valid</title><link rel="stylesheet" href="/static/label.css"></head>
<body class="message"><h1>This login link is not valid</h1>
<p>It was used already, it expired, or it is not for a labeler of this pipeline.
Ask whoever runs the labeling for a new invite link.</p>
<p>For whoever runs it: <code>gtx-stream labelers invite ID</code> prints a new link for the
labeler <code>ID</code>.</p></body></html>
"""


async def login(request: Request) -> Response:
    """GET /login/<token>: redeem the invite, set the session cookie, go to the page.

    The page is reached by a refresh from this one rather than a redirect: a SameSite=Strict
    cookie is not sent on a redirect that a link in a mail or chat started.
    """
    state: ServerState = request.app.state.server
    done = await run_in_threadpool(_login, state, request.path_params.get("token", ""))
    if done is None:
        return HTMLResponse(REFUSED, status_code=403)
    _, session_id = done
    response = HTMLResponse(LOGGED_IN)
    response.set_cookie(
        COOKIE, session_id, max_age=state.settings.label_server.session_ttl_seconds,
        path="/", httponly=True, samesite="strict",
        secure=state.settings.label_server.secure_cookies,
    )  # fmt: skip
    return response


async def end_session(state: ServerState, person: Person) -> tuple[Response, int]:
    """Delete ``person``'s session in Redis: the 204 that drops the cookie (``POST /logout``,
    :func:`gtx_stream.server.api.logout`), and how many other sessions of theirs are still
    live (:func:`gtx_stream.store.people.end_session`)."""
    others = await run_in_threadpool(
        people.end_session, state.client, state.keys, person.session_id, person.labeler_id
    )
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response, others
