"""Hypothesis fuzz of the JSON API: random methods, paths, tokens, bodies and headers, logged
in or not: never a 500, always a JSON error with a 4xx code (or a success)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import Pipeline, open_frames

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)  # fmt: skip
TOKENS = st.text(max_size=40) | st.sampled_from(["", "held", "..", "%00", "a/b", "x" * 300])
BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"token": TOKENS | JSON, "label": JSON}).map(
        lambda v: json.dumps(v).encode()
    ),
    st.binary(max_size=64),
)
PATHS = st.sampled_from(["/api/next", "/api/answer", "/api/skip", "/api/heartbeat",
                         "/api/progress", "/api/image/{t}", "/logout", "/login/{t}",
                         "/api/openapi.json", "/api/nothing", "/", "/static/{t}"])  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]),
    path=PATHS,
    token=TOKENS,
    body=BODIES,
    csrf=st.sampled_from(["good", "none", "bad"]),
    logged_in=st.booleans(),
)
def test_the_api_never_answers_500(
    fuzz_pipeline: tuple[Pipeline, object, str],
    method: str, path: str, token: str, body: bytes, csrf: str, logged_in: bool,
) -> None:  # fmt: skip
    p, person, held = fuzz_pipeline
    client = person.http if logged_in else p.clients[0]  # type: ignore[attr-defined]
    token = held if token == "held" else token
    url = path.replace("{t}", quote(token, safe=""))
    headers = {"Content-Type": "application/json"}
    if csrf == "good":
        headers["X-CSRF-Token"] = person.csrf  # type: ignore[attr-defined]
    elif csrf == "bad":
        headers["X-CSRF-Token"] = "nope"
    res = client.request(method, url, content=body, headers=headers)
    assert res.status_code < 500, (method, url, body, res.status_code, res.text)
    api = url.startswith("/api/") or url == "/logout"
    if res.status_code >= 400 and api and method != "HEAD":
        assert "error" in res.json()


@pytest.fixture
def fuzz_pipeline(pipeline: Pipeline) -> tuple[Pipeline, object, str]:
    from starlette.testclient import TestClient

    anonymous = TestClient(pipeline.app, raise_server_exceptions=False)
    pipeline.clients.insert(0, anonymous)
    alice = pipeline.person("alice")
    alice.http = TestClient(pipeline.app, raise_server_exceptions=False)
    pipeline.clients.append(alice.http)
    alice.login()
    alice.beat()
    open_frames(pipeline, 50)
    pipeline.step(3, machines=False)
    found = alice.next()
    assert found is not None
    return pipeline, alice, str(found["token"])
