"""A stop event set from a signal handler that interrupted a wait on it."""

from __future__ import annotations

import threading

from gtx_stream.core.signals import set_from_signal


def test_setting_while_the_event_lock_is_held_does_not_block() -> None:
    # the state a signal handler can find: its thread inside event.wait(), holding the lock
    stop = threading.Event()
    done = threading.Event()

    def handler() -> None:
        with stop._cond:  # type: ignore[attr-defined]  # the lock Event.wait holds
            set_from_signal(stop)  # a plain stop.set() here never returns
            done.set()

    caller = threading.Thread(target=handler, daemon=True)
    caller.start()
    caller.join(timeout=5)
    assert done.is_set(), "set_from_signal blocked on the event's lock"
    assert stop.wait(timeout=5)
