"""The JSON API the labeling page uses (and a vendor's own tool may): see ``openapi.py``.

Every handler works for the session's person only: a token names something in *their* hand
(:mod:`gtx_stream.server.feed`), and the labeler id of a label is the session's. Answer and
skip go through ``answer_request.lua`` (check the token is still held, take it out, XADD),
so a replayed answer is refused with 409 and reaches the labels stream once.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gtx_stream.core.records import LabelEntry
from gtx_stream.server import auth
from gtx_stream.server.auth import MAX_TOKEN_CHARS, Person, person_of
from gtx_stream.server.errors import ApiError
from gtx_stream.server.feed import Feed, Held, is_live_request
from gtx_stream.server.state import ServerState
from gtx_stream.store import people

MAX_BODY_BYTES = 4096


log = logging.getLogger(__name__)


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _feed(request: Request) -> Feed:
    return request.app.state.feed


def _describe(held: Held) -> dict[str, str]:
    return {"token": held.token, "image": f"/api/image/{held.token}"}


def _stamp_live(state: ServerState, feed: Feed, person: str) -> bool:
    """The page is open: the person is live (the key and score a labeler worker's heartbeat
    uses), unless the gold book paused them."""
    if feed.gold is not None and feed.gold.paused(person):
        state.client.zrem(state.keys.live, person)
        return False
    state.client.zadd(state.keys.live, {person: time.time()})
    return True


def _next(state: ServerState, feed: Feed, person: str) -> dict[str, Any] | None:
    _stamp_live(state, feed, person)
    held = feed.current(person)
    if not held:
        return None
    first, *later = held
    return {**_describe(first), "question": state.settings.label_server.question,
            "next": [_describe(h) for h in later]}  # fmt: skip


async def next_request(request: Request) -> Response:
    """GET /api/next: the request on screen, and the ones to preload; 204 when none."""
    state, feed = _state(request), _feed(request)
    t0 = time.perf_counter()
    person = await person_of(state, request)
    found = await run_in_threadpool(_next, state, feed, person.labeler_id)
    # the server's own time, for benchmarks and browsers' developer tools
    headers = {"Cache-Control": "no-store",
               "Server-Timing": f"app;dur={(time.perf_counter() - t0) * 1000:.2f}"}  # fmt: skip
    if found is None:
        return Response(status_code=204, headers=headers)
    return JSONResponse(found, headers=headers)


def _held(state: ServerState, person: str, token: str) -> Held | None:
    for t, item, raw in people.hand(state.client, state.keys, person):
        if t == token:
            return Held(t, item, raw)
    return None


def _image(state: ServerState, feed: Feed, person: str, token: str) -> bytes | None:
    held = _held(state, person, token)
    return None if held is None else feed.image(held.item)


async def image(request: Request) -> Response:
    """GET /api/image/<token>: the JPEG of a request the person holds."""
    state, feed = _state(request), _feed(request)
    person = await person_of(state, request)
    token = _token(request.path_params.get("token"))
    jpeg = await run_in_threadpool(_image, state, feed, person.labeler_id, token)
    if jpeg is None:
        raise ApiError(404, "no such request in your hand (answered, expired, or not yours)")
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=600"})  # fmt: skip


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_CHARS:
        raise ApiError(400, "token must be the non-empty string /api/next gave")
    return value


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


NOT_HELD = "this request is not in your hand: answered or skipped already, or not yours"
PAUSED = ("you are paused: your answers to the gold (check) frames were too often wrong, so "
          "nothing is handed to you or counted until gtx-stream gold reset")  # fmt: skip


def _not_held(feed: Feed, person: str) -> ApiError:
    """409 for a token the hand does not hold; ``paused`` when the person's pause took it back
    (the page then says they are paused, not that the frame was decided meanwhile)."""
    if feed.gold is not None and feed.gold.paused(person):
        return ApiError(409, PAUSED, paused=True)
    return ApiError(409, NOT_HELD)


def _settle(
    state: ServerState, feed: Feed, person: str, token: str, label: int | None
) -> dict[str, Any]:
    """Answer (``label``) or skip (None) the held request ``token``.

    A gold answer is recorded in the gold book before the frame leaves the hand: should
    either step fail (a Redis error, 503), the frame is still held and the page sends the
    answer again; the book records an item once per person (a second answer is a duplicate
    that changes nothing), so it is never counted twice.
    """
    held = _held(state, person, token)
    if held is None:
        raise _not_held(feed, person)
    item = held.item
    entry: LabelEntry | None = None
    status = "sent"
    answered = False  # what counts in answers today: a label sent, or a gold answer
    recorded = False  # a gold answer the book counted now
    if item.kind == "request":
        if is_live_request(state.client, state, person, item):
            entry = (LabelEntry(item.frame_id, person, item.request_id, label)
                     if label is not None else LabelEntry.skip(item.frame_id, person,
                                                               item.request_id))  # fmt: skip
            answered = label is not None
        else:
            status = "not_needed"  # finalised meanwhile: nothing to send, not counted
    elif label is not None and feed.gold is not None:
        recorded = feed.gold.answer(person, item.gold_id, label)
        answered = True
    done = people.send_answer(
        state.client, state.keys, person, token, held.raw, entry, answered=answered
    )
    if done != "sent":
        if recorded:
            # the answer counted, and paused the person: a /api/next of theirs meanwhile saw
            # the pause and took the frame out of the hand (it was answered: say so, count it)
            people.count_answered(state.client, state.keys, person, item)
            return {"status": status}
        raise _not_held(feed, person)
    return {"status": status}


async def answer(request: Request) -> Response:
    """POST /api/answer {token, label}: the person's label (0 or 1) for a held request."""
    state, feed = _state(request), _feed(request)
    person = await person_of(state, request)
    body = await _body(request)
    token = _token(body.get("token"))
    label = body.get("label")
    if type(label) is not int or label not in (0, 1):
        raise ApiError(400, "label must be 0 (no) or 1 (yes)")
    done = await run_in_threadpool(_settle, state, feed, person.labeler_id, token, label)
    return JSONResponse(done)


async def skip(request: Request) -> Response:
    """POST /api/skip {token}: can't tell; the request is asked of someone else at once."""
    state, feed = _state(request), _feed(request)
    person = await person_of(state, request)
    body = await _body(request)
    token = _token(body.get("token"))
    done = await run_in_threadpool(_settle, state, feed, person.labeler_id, token, None)
    return JSONResponse(done)


def release_hand(state: ServerState, feed: Feed, person: str) -> int:
    """Skip everything ``person`` holds (they log out): each held request is asked of someone
    else at once, as a "Can't tell" (nothing counted or charged), instead of waiting for its
    lease; a gold frame just leaves the hand. Returns how many were let go; one answered
    meanwhile (another tab) is left as it is."""
    released = 0
    for token, _, _ in people.hand(state.client, state.keys, person):
        try:
            _settle(state, feed, person, token, None)
        except ApiError:
            continue
        released += 1
    return released


async def logout(request: Request) -> Response:
    """POST /logout: end the session; if it was the person's last live one, let their hand go
    (:func:`release_hand`; in that order, so that no call of the ended session fills the hand
    again), and take them off the live labelers at once. The hand is per person, not per
    session: while another session of theirs is live (another device or browser), it is left
    as it is, for that one to answer; should that one be abandoned, the leases run out as they
    would."""
    state, feed = _state(request), _feed(request)
    person = await person_of(state, request)
    response, others = await auth.end_session(state, person)
    if others:
        log.info("%s logged out of one session: %d other live, the held frames stay in hand",
                 person.labeler_id, others)  # fmt: skip
        return response
    # no page of theirs beats any more: not live now, rather than for aggregator.live_seconds
    # more, in which the aggregator would still send them frames that then wait for the lease
    await run_in_threadpool(state.client.zrem, state.keys.live, person.labeler_id)
    released = await run_in_threadpool(release_hand, state, feed, person.labeler_id)
    log.info("%s logged out of their last session: %d held frames asked of someone else",
             person.labeler_id, released)  # fmt: skip
    return response


async def heartbeat(request: Request) -> Response:
    """POST /api/heartbeat: the page is open, so its person is live; ``paused``: their gold
    answers paused them (nothing is handed to them until ``gtx-stream gold reset``)."""
    state, feed = _state(request), _feed(request)
    person = await person_of(state, request)
    live = await run_in_threadpool(_stamp_live, state, feed, person.labeler_id)
    return JSONResponse({"live": live, "paused": not live})


def _progress(state: ServerState, feed: Feed, person: Person) -> dict[str, Any]:
    pid = person.labeler_id
    return {"labeler": pid, "answered_today": people.answered_today(state.client, state.keys, pid),
            "waiting": feed.waiting(pid)}  # fmt: skip


async def progress(request: Request) -> Response:
    """GET /api/progress: answered today, and frames waiting for this person."""
    state, feed = _state(request), _feed(request)
    t0 = time.perf_counter()
    person = await person_of(state, request)
    found = await run_in_threadpool(_progress, state, feed, person)
    headers = {"Cache-Control": "no-store",
               "Server-Timing": f"app;dur={(time.perf_counter() - t0) * 1000:.2f}"}  # fmt: skip
    return JSONResponse(found, headers=headers)
