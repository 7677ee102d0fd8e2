"""A person labels in a real Chromium: invite link, 20 frames by keyboard, one skip, one undo.

Real processes (an embedded Redis, the aggregator, the label server, the ingester) and Debian's
``chromium`` with ``chromium-driver``, driven by Selenium. Without them the test skips, except
where ``GTX_REQUIRE_BROWSER`` is set (``.ci/run`` sets it after installing them): there it fails.
Screenshots of the labeling page (desktop and phone) and of /admin are saved in the test's
folder, and also in ``$GTX_SCREENSHOT_DIR`` when set (``docs/`` holds the ones the README shows).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gtx_stream.core.records import FinalRecord, decode_fields
from gtx_stream.ops.demo import write_config
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.ops.supervisor import Supervisor
from gtx_stream.ops.synthetic import write_synthetic_video
from gtx_stream.store import people
from gtx_stream.store.keys import Keys

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PERSON = "ann"
FRAMES = 21  # 20 answered, one skipped
SKIP_AT, UNDO_AT = 5, 8  # the frames (in the order shown) skipped and answered with an undo
ADMIN_PASSWORD = "browser-test-admin"
# keys pressed for Yes and No, in turn: every binding of the page gets used
YES_KEYS = ("y", "1", "ArrowRight", "ArrowUp")
NO_KEYS = ("n", "0", "ArrowLeft", "ArrowDown")


def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        why = f"no browser for the browser test: {', '.join(missing)} missing"
        if os.environ.get("GTX_REQUIRE_BROWSER"):
            pytest.fail(why + " (apt-get install -y chromium chromium-driver)")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1100,860", f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[str, redis.Redis, Path]]:
    """Redis, the aggregator and the label server as processes, the frames ingested: the
    label server's URL, a client, and the config file."""
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(data_dir=tmp_path / "redis").start()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "people.toml"
    write_config(
        config,
        {
            "redis": {"url": server.url},
            # one person, kappa 1: each frame is final with exactly their answer
            "aggregator": {"tau": 0.99, "kappa": 1, "sweep_seconds": 0.5, "block_ms": 100},
            "label_server": {
                "port": port,
                "public_url": url,
                "undo_seconds": 1.5,
                "heartbeat_seconds": 1.0,
                "admin_password": ADMIN_PASSWORD,
            },
        },  # fmt: skip
        [{"id": PERSON, "backend": "human", "accuracy": 0.9}],
    )
    video = tmp_path / "frames.avi"
    write_synthetic_video(video, FRAMES, seed=7)
    sup = Supervisor(
        config=config,
        log_dir=tmp_path / "logs",
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        },
    )
    client = redis.Redis.from_url(server.url)
    try:
        sup.start("aggregator", "aggregator")
        sup.start("label-server", "label-server")
        ingest = subprocess.run(
            [sys.executable, "-m", "gtx_stream", "--config", str(config), "ingest", str(video)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stderr
        _wait(lambda: _up(url), "the label server")
        yield url, client, config
    finally:
        sup.stop_all(timeout=10)
        client.close()
        server.stop()


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _invite(config: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gtx_stream", "--config", str(config), "labelers", "invite", PERSON],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return next(w for w in out.stdout.split() if "/login/" in w)


def _shown_token(driver: Any) -> str | None:
    frame = driver.find_element("id", "frame")
    src = frame.get_attribute("src") or ""
    loaded = driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", frame
    )
    if not frame.is_displayed() or "/api/image/" not in src or not loaded:
        return None
    return src.rsplit("/", 1)[-1]


def _save(driver: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("GTX_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["GTX_SCREENSHOT_DIR"]) / name)


def test_a_person_labels_twenty_frames_in_chromium(
    browser: Any, pipeline: tuple[str, redis.Redis, Path], tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    url, client, config = pipeline
    keys = Keys("gtx")
    browser.get(_invite(config))
    _wait(lambda: browser.current_url.rstrip("/") == url, "the page after login", 15)
    assert browser.find_element("id", "who").text == PERSON

    def frame_of(token: str) -> str:
        held = {t: item for t, item, _ in people.hand(client, keys, PERSON)}
        return held[token].frame_id

    def press(key: str) -> None:
        from selenium.webdriver.common.keys import Keys as K

        arrows = {"ArrowRight": K.ARROW_RIGHT, "ArrowLeft": K.ARROW_LEFT,
                  "ArrowUp": K.ARROW_UP, "ArrowDown": K.ARROW_DOWN}  # fmt: skip
        ActionChains(browser).send_keys(arrows.get(key, key)).perform()

    answers: dict[str, int | None] = {}  # frame id -> the answer sent (None: skipped)
    seen: list[str] = []
    for i in range(FRAMES):
        token = _wait(lambda: (t := _shown_token(browser)) not in (None, *seen) and t,  # noqa: B023
                      f"frame {i + 1} on the page")  # fmt: skip
        fid = frame_of(token)
        assert fid not in answers, f"frame {fid} shown twice"
        if i == 0:
            _save(browser, tmp_path, "label-page.png")
        if i == 1:  # the same page on a phone
            browser.set_window_size(390, 844)
            _wait(lambda t=token: _shown_token(browser) == t, "the frame at phone size")
            _save(browser, tmp_path, "label-page-phone.png")
            browser.set_window_size(1100, 860)
        if i == SKIP_AT:
            press("s")
            answers[fid] = None
        elif i == UNDO_AT:
            press("y")
            _wait(lambda t=token: _shown_token(browser) != t, "the next frame after Yes")
            press("u")  # Undo: the frame comes back, nothing was sent
            _wait(lambda t=token: _shown_token(browser) == t, "the undone frame again")
            press("n")
            answers[fid] = 0
        else:
            label = i % 2
            press((YES_KEYS if label else NO_KEYS)[i // 2 % 4])
            answers[fid] = label
        seen.append(token)

    assert len(answers) == FRAMES and sum(v is None for v in answers.values()) == 1
    records = _wait(lambda: (recs := _final(client, keys)) and len(recs) == FRAMES and recs,
                    "every frame final", 30)  # fmt: skip
    for fid, label in answers.items():
        rec = records[fid]
        if label is None:  # can't tell: asked of someone else; nobody is left, nothing counted
            assert (rec.labels, rec.labelers, rec.reason) == ([], [], "exhausted"), rec
        else:
            assert (rec.labels, rec.labelers) == ([label], [PERSON]), (fid, label, rec)
    budget = {k.decode(): int(v) for k, v in client.hgetall(keys.budget).items()}
    assert budget.get("spent") == FRAMES - 1  # the skip was refunded

    # the dashboard, with its own login
    browser.set_window_size(1280, 1000)
    browser.get(url + "/admin/")
    _wait(lambda: "/admin/login" in browser.current_url, "the admin login")
    browser.find_element("id", "password").send_keys(ADMIN_PASSWORD + "\n")
    _wait(lambda: browser.find_elements("css selector", "#labelers svg, #labelers table"),
          "the dashboard's labelers", 15)  # fmt: skip
    # its first view: the real totals, and no zeros for rates no sample has measured yet
    # (the counter samples are taken while the dashboard is open: none covers a minute yet)
    first = {
        cell: browser.find_element("css selector", f"#{cell} .value").text
        for cell in ("frames-finalised", "labels-spent", "rate-opened", "rate-finalised")
    }
    assert first == {"frames-finalised": str(FRAMES), "labels-spent": str(FRAMES - 1),
                     "rate-opened": "measuring…", "rate-finalised": "measuring…"}  # fmt: skip
    assert "Rates are measured from" in browser.find_element("id", "rates-note").text
    _wait(lambda: browser.find_elements("css selector", "#thumbnails img"), "thumbnails", 15)
    assert PERSON in browser.find_element("id", "labelers").text
    _save(browser, tmp_path, "dashboard.png")
    browser.find_element("id", "logout").click()  # its own logout: back to its login
    _wait(lambda: "/admin/login" in browser.current_url, "the admin login after logout")
    browser.get(url + "/admin/")
    _wait(lambda: "/admin/login" in browser.current_url, "the admin login again")


def _final(client: redis.Redis, keys: Keys) -> dict[str, FinalRecord]:
    out = {}
    for entry_id, fields in client.xrange(keys.final):
        rec = FinalRecord.from_fields(decode_fields(fields), entry_id.decode())
        out[rec.frame_id] = rec
    return out
