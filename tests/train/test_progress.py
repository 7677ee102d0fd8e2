"""The text progress line: a line per tenth of the way off a terminal."""

from __future__ import annotations

import io

from gtx_stream.train.progress import Progress


def test_off_a_terminal_it_prints_a_line_per_tenth() -> None:
    out = io.StringIO()
    bar = Progress("features val", 100, stream=out)
    for _ in range(100):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[-1].startswith("features val  100/100  100%")


def test_disabled_it_prints_nothing() -> None:
    out = io.StringIO()
    bar = Progress("x", 10, stream=out, enabled=False)
    bar.update(10)
    bar.close()
    assert out.getvalue() == ""
