"""The /admin dashboard: its own login, a page that refreshes itself, its JSON and thumbnails.

Mounted by the label server as ``Mount("/admin", routes=admin_routes(state))``:

- ``GET /admin/`` the page (a redirect to the login form without a session);
- ``GET|POST /admin/login``, ``POST /admin/logout``;
- ``GET /admin/api/dashboard`` every figure (:func:`gtx_stream.ops.metrics.dashboard`) and the
  plots as inline SVG; the page fetches it every 2 s;
- ``GET /admin/thumbnail/<final entry id>`` the JPEG of a finalised frame while Redis still
  holds it (only images named by final records can be read);
- ``/admin/static/`` the page's CSS and JS.

The login is the password ``label_server.admin_password``; none set, no one gets in. A session
is a random cookie (``gtx_admin``: HttpOnly, SameSite=Strict, Path=/admin) whose SHA-256 names
a Redis hash holding the session's CSRF token, with the label server's session TTL. A
labeler's session is another cookie in other keys: it opens nothing here. Every POST carries
the CSRF token (the login form a pre-login cookie's, double-submit); refused passwords are
counted per minute, and past :data:`MAX_FAILURES` a minute every login is refused (429).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import secrets
import time
from pathlib import Path
from string import Template
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gtx_stream.core.records import FinalRecord, RecordError, text
from gtx_stream.ops import metrics
from gtx_stream.server.admin_view import fragments, measured_minutes
from gtx_stream.server.state import ServerState
from gtx_stream.store.keys import Keys

STATIC = Path(__file__).with_name("admin_static")
TEMPLATES = Path(__file__).with_name("admin_templates")
COOKIE = "gtx_admin"
LOGIN_COOKIE = "gtx_admin_login"
SESSION_SECONDS = 12 * 3600
MAX_FAILURES = 20
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


class Admin:
    """The dashboard's endpoints over one :class:`ServerState` (sync: Starlette runs them in
    its thread pool, so the blocking Redis client never holds the event loop)."""

    @property
    def keys(self) -> Keys:
        return self.state.keys  # the pipeline's stored shard count, once an aggregator stored it

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.client = state.client
        server = getattr(state.settings, "label_server", None)
        secret: Any = getattr(server, "admin_password", None)
        value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        self.password: str = value if isinstance(value, str) else ""
        self.session_seconds = int(getattr(server, "session_ttl_seconds", SESSION_SECONDS))
        self.secure = bool(getattr(server, "secure_cookies", False))
        self.backends = {lab.id: lab.backend for lab in state.settings.labelers}
        self.live_seconds = state.settings.aggregator.live_seconds
        gold = getattr(state.settings, "gold", None)
        self.qualification = int(getattr(gold, "qualification", 0))

    # --- sessions ------------------------------------------------------------------------

    def session(self, request: Request) -> dict[str, str] | None:
        """The admin session of the request's cookie (its ``csrf``), or None."""
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 200:
            return None
        raw = cast(dict[Any, Any], self.client.hgetall(self.keys.admin_session(_hash(token))))
        return {text(k): text(v) for k, v in raw.items()} or None

    def _cookie_path(self, request: Request) -> str:
        return str(request.scope.get("root_path") or "/admin")

    def _csrf_ok(self, request: Request, expected: str, given: str | None) -> bool:
        given = given or request.headers.get("x-csrf-token", "")
        return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())

    # --- endpoints -----------------------------------------------------------------------

    def login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        pre = secrets.token_urlsafe(24)
        body = _template("login.html").substitute(
            csrf=pre, error=f'<p id="login-error" class="error">{html.escape(error)}</p>'
            if error else "",
            disabled="" if self.password else " disabled",
            notice="" if self.password else '<p class="error">No admin password is set '
            "(label_server.admin_password): the dashboard is closed.</p>",
        )  # fmt: skip
        resp = HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)
        resp.set_cookie(LOGIN_COOKIE, pre, max_age=3600, path=self._cookie_path(request),
                        httponly=True, samesite="strict", secure=self.secure)  # fmt: skip
        return resp

    async def login(self, request: Request) -> Response:
        form = await request.form()
        password, csrf = str(form.get("password") or ""), str(form.get("csrf") or "")
        pre = request.cookies.get(LOGIN_COOKIE, "")
        if not pre or not self._csrf_ok(request, pre, csrf):
            return self.login_form(request, "The form expired: try again.", 403)
        if not self.password:
            return self.login_form(request, "No admin password is set.", 403)
        failures = self.keys.admin_login_failures
        if int(cast(Any, self.client.get(failures)) or 0) >= MAX_FAILURES:
            return self.login_form(request, "Too many wrong passwords: wait a minute.", 429)
        if not hmac.compare_digest(password.encode(), self.password.encode()):
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(failures)
            pipe.expire(failures, 60, nx=True)
            pipe.execute()
            return self.login_form(request, "Wrong password.", 401)
        token = secrets.token_urlsafe(32)
        key = self.keys.admin_session(_hash(token))
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"csrf": secrets.token_urlsafe(24), "created_at": time.time()})
        pipe.expire(key, self.session_seconds)
        pipe.execute()
        path = self._cookie_path(request)
        resp = RedirectResponse(f"{path}/", status_code=303)
        resp.set_cookie(COOKIE, token, max_age=self.session_seconds, path=path, httponly=True,
                        samesite="strict", secure=self.secure)  # fmt: skip
        resp.delete_cookie(LOGIN_COOKIE, path=path)
        return resp

    async def logout(self, request: Request) -> Response:
        session = self.session(request)
        given = str((await request.form()).get("csrf") or "")
        if session is None or not self._csrf_ok(request, session["csrf"], given):
            return JSONResponse({"error": "not logged in, or no CSRF token"}, status_code=403)
        self.client.delete(self.keys.admin_session(_hash(request.cookies[COOKIE])))
        path = self._cookie_path(request)
        resp = RedirectResponse(f"{path}/login", status_code=303)
        resp.delete_cookie(COOKIE, path=path)
        return resp

    def figures(self) -> dict[str, Any]:
        """The figures (plain JSON) and the page's parts (HTML by element id); rates of the
        minutes no samples cover yet are None (:func:`measured_minutes`)."""
        metrics.record_sample(self.client, self.keys)
        since, until = self._sampled()
        figures = metrics.dashboard(self.client, self.keys, self.backends, self.live_seconds)
        figures["per_minute"] = measured_minutes(figures["per_minute"], since, until)
        self._gold_records(figures["labelers"])
        self._gold_used_up(figures["labelers"])
        return {"figures": figures, "html": fragments(figures)}

    def _gold_used_up(self, rows: list[dict[str, Any]]) -> None:
        """``gold_used_up`` on each person's row: not paused, and every gold item answered
        (gold measures them no more; one not registered gets no frame)."""
        people = [r for r in rows if r["kind"] == "person"]
        if not people:
            return
        items = self.client.hget(self.keys.gold_stats, "gold_items")
        for row, raw in zip(people, self._scores(people), strict=True):
            answered = 0 if raw is None else int(json.loads(raw)["total"])
            row["gold_used_up"] = bool(items) and answered >= int(cast(Any, items)) and (
                not row["paused"])  # fmt: skip

    def _scores(self, rows: list[dict[str, Any]]) -> list[Any]:
        """Each row's gold score (None: no gold answer yet): one HGET each, in one round
        trip, since the label server's ACL user may HGET the scores but not HMGET them."""
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            pipe.hget(self.keys.gold_scores, row["id"])
        return cast(list[Any], pipe.execute())

    def _gold_records(self, rows: list[dict[str, Any]]) -> None:
        """People the registry does not hold, a paused person or one still qualifying, get
        their gold record (as ``gtx-stream status`` shows it), else their row reads as never
        measured: accuracy, interval, gold answers, and the source ``gold`` (``gold,
        qualifying (n of q)`` before they qualify)."""
        missing = [r for r in rows if r["kind"] == "person" and r["accuracy"] is None]
        if not missing:
            return
        for row, raw in zip(missing, self._scores(missing), strict=True):
            if raw is None:
                continue
            score = json.loads(raw)
            n = int(score["total"])
            qualifying = not row["paused"] and n < self.qualification
            row.update(accuracy=float(score["accuracy"]), lower=float(score["lower"]),
                       upper=float(score["upper"]), n=n,
                       source=f"gold, qualifying ({n} of {self.qualification})" if qualifying
                       else "gold")  # fmt: skip

    def _sampled(self) -> tuple[float | None, float | None]:
        """The times of the oldest and the newest counter sample (None: no sample)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrange(self.keys.dashboard_samples, 0, 0, withscores=True)
        pipe.zrange(self.keys.dashboard_samples, -1, -1, withscores=True)
        oldest, newest = pipe.execute()
        if not oldest or not newest:
            return None, None
        return float(oldest[0][1]), float(newest[0][1])

    def page(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse(f"{self._cookie_path(request)}/login", status_code=303)
        parts = {k.replace("-", "_"): v for k, v in self.figures()["html"].items()}
        body = _template("admin.html").substitute(
            csrf=html.escape(session["csrf"]), prefix=html.escape(self.keys.prefix), **parts
        )
        return HTMLResponse(body, headers=_SECURITY_HEADERS)

    def api_dashboard(self, request: Request) -> Response:
        if self.session(request) is None:
            return JSONResponse({"error": "admin login required"}, status_code=401,
                                headers=_SECURITY_HEADERS)  # fmt: skip
        return JSONResponse(self.figures(), headers=_SECURITY_HEADERS)

    def thumbnail(self, request: Request) -> Response:
        if self.session(request) is None:
            return JSONResponse({"error": "admin login required"}, status_code=401)
        entry_id = str(request.path_params["entry_id"])
        if not _ENTRY_ID.match(entry_id):
            return JSONResponse({"error": "not a final entry id"}, status_code=404)
        entries: list[Any] = []
        for shard in self.keys.state_shards():  # on a Redis Cluster, one final stream per shard
            entries = cast(list[Any], self.client.xrange(shard.final, entry_id, entry_id))
            if entries:
                break
        if not entries:
            return JSONResponse({"error": "no such final record"}, status_code=404)
        try:
            fields = {text(k): text(v) for k, v in entries[0][1].items()}
            record = FinalRecord.from_fields(fields, entry_id)
        except RecordError:
            return JSONResponse({"error": "malformed final record"}, status_code=404)
        jpeg = self.client.get(record.image_key) if record.image_key else None
        if not isinstance(jpeg, bytes):
            return JSONResponse({"error": "image no longer in Redis"}, status_code=404)
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})  # fmt: skip


def admin_routes(state: ServerState) -> list[BaseRoute]:
    """The dashboard's routes, to mount under ``/admin``."""
    admin = Admin(state)
    return [
        Route("/", admin.page, methods=["GET"], name="admin_page"),
        Route("/login", admin.login_form, methods=["GET"]),
        Route("/login", admin.login, methods=["POST"]),
        Route("/logout", admin.logout, methods=["POST"]),
        Route("/api/dashboard", admin.api_dashboard, methods=["GET"]),
        Route("/thumbnail/{entry_id}", admin.thumbnail, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="admin_static"),
    ]
