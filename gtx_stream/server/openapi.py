"""The OpenAPI 3 description of the labeling API, served at ``/api/openapi.json``.

Written by hand next to the handlers (:mod:`gtx_stream.server.api`); a test checks that every
API route is described and that the answers the tests get match their schemas.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_AUTH = {"401": _err("no valid session cookie (log in with an invite link)")}
_POST = {**_AUTH, "403": _err("missing or wrong X-CSRF-Token header")}
_TOKEN_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenBody"}}},
}


def _json(schema: str, description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "gtx-stream label server",
        "version": "1",
        "description": (
            'The API of the labeling page, for people (`backend = "human"` labelers) and for '
            "a labeling vendor's own tool. Log in once with the invite link "
            "(`gtx-stream labelers invite ID` prints it): GET it and keep the `gtx_session` "
            "cookie. GET / (the page) carries the CSRF token in "
            '`<meta name="csrf-token">`; every POST sends it as `X-CSRF-Token`. '
            "Loop: GET /api/next, GET its image, POST /api/answer (or /api/skip), "
            "and POST /api/heartbeat every few seconds while working: only a live person "
            "is sent requests. A request not answered within its lease (120 s by default) "
            "is asked of someone else; a late answer still counts once."
        ),
    },
    "components": {
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "gtx_session"},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "status"],
                "properties": {
                    "error": {"type": "string"},
                    "status": {"type": "integer"},
                    "paused": {
                        "type": "boolean",
                        "description": "present (true) on a 409 when your gold answers paused "
                        "you: what you held was taken back, and nothing is counted",
                    },
                },
            },
            "Held": {
                "type": "object",
                "required": ["token", "image"],
                "properties": {
                    "token": {"type": "string", "description": "opaque; names this request"},
                    "image": {"type": "string", "description": "URL of the frame's JPEG"},
                },
            },
            "Next": {
                "type": "object",
                "required": ["token", "image", "question", "next"],
                "properties": {
                    "token": {"type": "string"},
                    "image": {"type": "string"},
                    "question": {"type": "string"},
                    "next": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Held"},
                        "description": "the requests after this one, to preload",
                    },
                },
            },
            "TokenBody": {
                "type": "object",
                "required": ["token"],
                "properties": {"token": {"type": "string"}},
            },
            "AnswerBody": {
                "type": "object",
                "required": ["token", "label"],
                "properties": {
                    "token": {"type": "string"},
                    "label": {"type": "integer", "enum": [0, 1], "description": "1: yes"},
                },
            },
            "Settled": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {
                        "type": "string",
                        "enum": ["sent", "not_needed"],
                        "description": "not_needed: the frame was finalised meanwhile",
                    }
                },
            },
            "Progress": {
                "type": "object",
                "required": ["labeler", "answered_today", "waiting"],
                "properties": {
                    "labeler": {"type": "string"},
                    "answered_today": {
                        "type": "integer",
                        "description": "frames you labeled today (UTC), gold ones included; "
                        "skips, and answers to frames decided meanwhile, are not counted",
                    },
                    "waiting": {
                        "type": "integer",
                        "description": "frames you could still be handed: held and queued, "
                        "less requests whose frames no longer wait for you (checked for the "
                        "first 50 queued; the rest counted as queued)",
                    },
                },
            },
            "Live": {
                "type": "object",
                "required": ["live", "paused"],
                "properties": {
                    "live": {"type": "boolean"},
                    "paused": {
                        "type": "boolean",
                        "description": "your gold answers paused you: nothing is handed to you",
                    },
                },
            },
        },
    },
    "security": [{"session": []}],
    "paths": {
        "/api/next": {
            "get": {
                "summary": "The request to answer now, and the next ones to preload",
                "description": "The same request until it is answered or skipped (a reload "
                "shows the same frame).",
                "responses": {
                    "200": _json("Next", "a request"),
                    "204": {"description": "nothing to label now"},
                    **_AUTH,
                },
            }
        },
        "/api/image/{token}": {
            "get": {
                "summary": "The JPEG of a request you hold",
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "the frame",
                        "content": {
                            "image/jpeg": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **_AUTH,
                    "404": _err("not a request you hold"),
                },  # fmt: skip
            }
        },
        "/api/answer": {
            "post": {
                "summary": "Answer a request: label 1 (yes) or 0 (no)",
                "security": [{"session": [], "csrf": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/AnswerBody"}}
                    },
                },
                "responses": {
                    "200": _json("Settled", "sent to the pipeline"),
                    "400": _err("bad body"),
                    **_POST,
                    "409": _err(
                        "not in your hand: answered already (a replay) or not yours, "
                        "or taken back because you are paused (paused: true)"
                    ),
                    "413": _err("body too large"),
                },
            }
        },
        "/api/skip": {
            "post": {
                "summary": "Can't tell: give the request back, to be asked of someone else",
                "description": "Nothing is counted or charged, and skips never back you off.",
                "security": [{"session": [], "csrf": []}],
                "requestBody": _TOKEN_BODY,
                "responses": {
                    "200": _json("Settled", "given back"),
                    "400": _err("bad body"),
                    **_POST,
                    "409": _err("not in your hand (paused: true when your pause took it back)"),
                    "413": _err("body too large"),
                },
            }
        },
        "/api/heartbeat": {
            "post": {
                "summary": "I am here: keeps you live (send every few seconds)",
                "security": [{"session": [], "csrf": []}],
                "responses": {"200": _json("Live", "stamped (false: you are paused)"), **_POST},
            }
        },
        "/api/progress": {
            "get": {
                "summary": "Answers given today, and requests waiting for you",
                "responses": {"200": _json("Progress", "your progress"), **_AUTH},
            }
        },
        "/logout": {
            "post": {
                "summary": "End this session; after your last, what you hold is asked of "
                "someone else at once",
                "description": (
                    "Ends this session only. What you hold is per person, not per session: "
                    "if it was your last live session, each frame you hold is skipped (asked "
                    "of someone else at once); while you are logged in elsewhere too (another "
                    "device or browser), it stays yours, for that session to answer."
                ),
                "security": [{"session": [], "csrf": []}],
                "responses": {"204": {"description": "logged out"}, **_POST},
            }
        },
    },
}
