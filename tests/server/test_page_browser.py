"""The labeling page's own behaviour in a real Chromium, against the app served in this process.

The conftest pipeline (a real Redis, the real aggregator stepped by a thread of the test) and
the app under uvicorn on a free port, so the server can be stopped and started again. What is
checked here is the page's script: an answer given while the server is away is sent once it is
back; a key held down answers one frame; a paused person is told so (also when answering a frame
the pause took back); an answer to a frame decided meanwhile says it was not counted; Enter or
Space after a click answers nothing.
``test_browser.py`` is the whole product end to end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from gtx_stream.config import LabelerSettings
from gtx_stream.core.records import SKIPPED_REASON
from gtx_stream.store.people import create_invite
from tests.server.conftest import Pipeline, build_pipeline, make_settings, open_frames
from tests.server.test_browser import _free_port, _need_browser, _shown_token, _wait

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow]

PERSON = "alice"


def _jpeg(level: int) -> bytes:
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), level, dtype=np.uint8))
    assert ok
    return bytes(buf)


class Served:
    """The app under uvicorn in a thread; ``stop`` and ``start`` again on the same port."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        _wait(lambda: self.server.started, "uvicorn", 15)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
            self.server = None


@dataclass
class Page:
    p: Pipeline
    served: Served
    url: str
    driver: Any

    def login(self) -> None:
        self.driver.get(f"{self.url}/login/{create_invite(self.p.r, self.p.keys, PERSON, 600)}")
        _wait(lambda: self.driver.current_url.rstrip("/") == self.url, "the page", 15)

    def labels(self) -> list[dict[str, str]]:
        out = []
        for _, fields in self.p.r.xrange(self.p.keys.labels):
            entry = {k.decode(): v.decode() for k, v in fields.items()}
            if entry.get("labeler") == PERSON:
                out.append(entry)
        return out

    def text(self, element: str) -> str:
        return str(self.driver.find_element("id", element).text)

    def frame(self) -> str:
        return str(_wait(lambda: _shown_token(self.driver), "a frame on the page", 20))


def _open(p: Pipeline, n: int, start: int = 0) -> list[str]:
    fids = open_frames(p, n, start)
    for i, fid in enumerate(fids):
        p.r.set(p.keys.image(fid), _jpeg(40 + 40 * i))  # an image the browser can show
    return fids


@pytest.fixture
def make_page(raw: redis.Redis, tmp_path: Path) -> Iterator[Callable[..., Page]]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    made: list[tuple[Served, Any]] = []
    stop = threading.Event()
    steppers: list[threading.Thread] = []

    def make(lease_seconds: float | None = None) -> Page:
        settings = make_settings(people=[PERSON], kappa=1)
        settings.labelers = [LabelerSettings(id=PERSON, backend="human",
                                             lease_seconds=lease_seconds)]  # fmt: skip
        settings.label_server.undo_seconds = 0.5
        settings.label_server.heartbeat_seconds = 0.5
        p = build_pipeline(raw, settings, [PERSON])

        def step() -> None:
            while not stop.is_set():
                p.step(machines=False)
                time.sleep(0.05)

        steppers.append(threading.Thread(target=step, daemon=True))
        steppers[-1].start()
        port = _free_port()
        served = Served(p.app, port)
        served.start()
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        profile = f"--user-data-dir={tmp_path / 'chromium'}"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--window-size=1000,800", profile):  # fmt: skip
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        made.append((served, driver))
        return Page(p, served, f"http://127.0.0.1:{port}", driver)

    yield make
    stop.set()
    for thread in steppers:
        thread.join(10)
    for served, driver in made:
        driver.quit()
        served.stop()


def test_an_answer_given_while_the_server_is_away_is_sent_once_it_is_back(
    make_page: Callable[..., Page],
) -> None:
    page = make_page()
    page.login()
    _open(page.p, 2)
    page.frame()
    page.served.stop()
    page.driver.find_element("id", "yes").click()
    # longer than the page's old five tries (7.5 s): it gave up then, and the label was lost
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.5)
    assert "not sent yet" in page.text("status")
    page.served.start()
    labels = _wait(lambda: page.labels(), "the answer in the labels stream", 20)
    assert [e["label"] for e in labels] == ["1"]
    _wait(lambda: page.text("status") == "", "the warning cleared", 10)


def test_a_key_held_down_answers_one_frame(make_page: Callable[..., Page]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page = make_page()
    page.login()
    _open(page.p, 3)
    first = page.frame()
    ActionChains(page.driver).send_keys("y").perform()
    _wait(lambda: _shown_token(page.driver) not in (None, first), "the next frame")
    for _ in range(5):  # what the keyboard's auto-repeat sends while the key stays down
        page.driver.execute_script(
            "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'y', repeat: true}))"
        )
    time.sleep(2.0)  # past the undo time: every answer given is sent by now
    assert len(page.labels()) == 1


def test_a_paused_person_is_told_so_not_that_nothing_waits(
    make_page: Callable[..., Page],
) -> None:
    page = make_page()
    page.login()
    _wait(lambda: page.text("empty").startswith("Nothing to label"), "the empty page")
    page.p.r.hset(page.p.keys.paused, PERSON, json.dumps({"reason": "test", "at": time.time()}))
    _wait(lambda: "paused" in page.text("empty"), "the page saying the person is paused")
    page.p.r.hdel(page.p.keys.paused, PERSON)  # gtx-stream gold reset
    _wait(lambda: page.text("empty").startswith("Nothing to label"), "the pause lifted")


def test_an_answer_taken_back_by_a_pause_says_paused_not_decided_meanwhile(
    make_page: Callable[..., Page],
) -> None:
    # seen in a walkthrough: the frame on screen when the gold answers paused the person was
    # taken back; answered, the page said "Not counted: that frame was decided meanwhile"
    # under the message that they are paused
    page = make_page()
    page.login()
    _open(page.p, 3)
    page.frame()
    page.p.r.hset(page.p.keys.paused, PERSON, json.dumps({"reason": "test", "at": time.time()}))
    page.p.app.state.feed.current(PERSON)  # a /api/next of theirs: the pause empties the hand
    page.driver.find_element("id", "no").click()
    _wait(lambda: "paused" in page.text("empty"), "the page saying the person is paused", 10)
    time.sleep(1.0)  # past the undo time: the answer was sent and refused
    assert "Not counted" not in page.text("status")
    assert page.labels() == []


def test_an_answer_to_a_frame_decided_meanwhile_says_it_was_not_counted(
    make_page: Callable[..., Page],
) -> None:
    page = make_page(lease_seconds=4.0)
    page.login()
    fids = _open(page.p, 3)
    page.frame()
    # the lease runs out and nobody else is left: the frames are final without her
    _wait(lambda: len(page.p.final()) == len(fids), "the frames final", 20)
    page.driver.find_element("id", "no").click()
    _wait(lambda: "Not counted" in page.text("status"), "the page saying so", 10)
    assert page.labels() == []


def test_enter_or_space_after_a_click_does_not_answer_the_next_frame(
    make_page: Callable[..., Page],
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page = make_page()
    page.login()
    _open(page.p, 4)
    first = page.frame()
    page.driver.find_element("id", "yes").click()  # the mouse: the button took the focus
    _wait(lambda: _shown_token(page.driver) not in (None, first), "the next frame")
    second = _shown_token(page.driver)
    ActionChains(page.driver).send_keys(Keys.ENTER).perform()
    ActionChains(page.driver).send_keys(Keys.SPACE).perform()
    time.sleep(2.0)  # past the undo time: every answer given is sent by now
    assert [e["label"] for e in page.labels()] == ["1"]  # the clicked frame's only
    assert _shown_token(page.driver) == second


def test_log_out_ends_the_session_and_the_page_asks_to_log_in_again(
    make_page: Callable[..., Page],
) -> None:
    import httpx
    from selenium.webdriver.common.action_chains import ActionChains

    page = make_page()
    page.login()
    _open(page.p, 3)
    first = page.frame()
    cookie = page.driver.get_cookie("gtx_session")["value"]
    meta = page.driver.find_element("css selector", 'meta[name="csrf-token"]')
    csrf = meta.get_attribute("content")
    ActionChains(page.driver).send_keys("y").perform()  # still held for Undo at the click
    _wait(lambda: _shown_token(page.driver) not in (None, first), "the next frame")
    page.driver.find_element("id", "logout").click()
    _wait(lambda: page.driver.title == "Not logged in", "the page asking to log in", 10)
    assert page.driver.current_url.rstrip("/") == page.url
    assert "Open the login link" in page.driver.find_element("tag name", "body").text
    sent = page.labels()
    assert sent[0]["label"] == "1"  # the held answer was sent first
    # then what the page still held went back, skipped: asked of someone else at once
    assert sent[1:] and all(e.get("reason") == SKIPPED_REASON for e in sent[1:])
    assert not page.p.r.exists(f"{page.p.keys.prefix}:person:{PERSON}:hand")
    assert page.driver.get_cookie("gtx_session") is None
    assert not page.p.r.keys(f"{page.p.keys.prefix}:person:session:*")
    # the old cookie, replayed, opens nothing: the session ended on the server
    with httpx.Client(base_url=page.url, headers={"Cookie": f"gtx_session={cookie}"}) as old:
        assert old.get("/api/next").status_code == 401
        assert (
            old.post("/api/heartbeat", json={}, headers={"X-CSRF-Token": csrf}).status_code == 401
        )
        assert old.get("/").status_code == 401
    # a new invite link logs in again; the keyboard answers the next frames
    page.login()
    _open(page.p, 2, start=3)
    shown = page.frame()
    ActionChains(page.driver).send_keys("n").perform()
    _wait(lambda: _shown_token(page.driver) != shown, "the next frame after No")
    _wait(lambda: len(page.labels()) == len(sent) + 1, "the answer after the login sent", 10)
    assert page.labels()[-1]["label"] == "0"
