"""``gtx-stream demo --people``, as a user runs it: the printed link logs a person in, and they
label through the page's API while the simulated labelers work, until every frame is final."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"(http://127\.0\.0\.1:\d+)/login/\S+")
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
FRAMES = 12


def _person(link: str, base: str, stop: threading.Event, answered: list[int],
            errors: list[BaseException]) -> None:  # fmt: skip
    """Log in with the link, then answer what comes (always Yes) until stopped, or until the
    demo ends and takes the label server with it."""
    import httpx

    try:
        _label(link, base, stop, answered)
    except httpx.TransportError:
        pass  # the demo ended
    except BaseException as err:  # the test reports it
        errors.append(err)


def _label(link: str, base: str, stop: threading.Event, answered: list[int]) -> None:
    import httpx

    with httpx.Client(base_url=base, timeout=10.0) as http:
        assert http.get(link).status_code == 200
        csrf = CSRF.search(http.get("/").text)
        assert csrf, "no CSRF token on the page"
        headers = {"X-CSRF-Token": csrf.group(1)}
        while not stop.is_set():
            http.post("/api/heartbeat", headers=headers)
            got = http.get("/api/next")
            if got.status_code == 200:
                token = got.json()["token"]
                assert http.get(got.json()["image"]).status_code == 200
                sent = http.post("/api/answer", json={"token": token, "label": 1}, headers=headers)
                if sent.status_code == 200:
                    answered.append(1)
            else:
                time.sleep(0.2)


def test_demo_people_prints_a_link_and_a_person_labels_beside_the_machines(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gtx_stream", "demo", "--people", "--frames", str(FRAMES),
         "--labelers", "2", "--workdir", str(tmp_path / "demo")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stop = threading.Event()
    answered: list[int] = []
    errors: list[BaseException] = []
    lines: list[str] = []
    person: threading.Thread | None = None
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            found = LINK.search(line)
            if found:
                person = threading.Thread(
                    target=_person, args=(found.group(0), found.group(1), stop, answered, errors),
                    daemon=True,
                )  # fmt: skip
                person.start()
                break
        assert person is not None, "".join(lines)
        out, err = proc.communicate(timeout=180)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print("".join(lines) + err + out)
    assert not errors, errors
    assert proc.returncode == 0, "".join(lines) + err
    assert f"frames finalised   {FRAMES}" in out, out
    by_you = int(re.search(r"labels\s+(\d+) by you, (\d+) by machines", out).group(1))  # type: ignore[union-attr]
    assert by_you >= 1 and by_you <= len(answered), (out, len(answered))
    assert f"dataset            {FRAMES} images" in out, out
