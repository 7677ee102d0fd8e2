"""Setting a stop event from a signal handler without deadlocking the thread it interrupts."""

from __future__ import annotations

import threading


def set_from_signal(event: threading.Event) -> None:
    """``event.set()``, from another thread.

    A signal handler runs in the main thread between two bytecodes, possibly while that thread
    is inside ``event.wait()`` holding the event's own (non-reentrant) lock: a ``set()`` there
    waits for that lock forever. A short-lived thread takes the lock once the interrupted wait
    has let go of it.
    """
    threading.Thread(target=event.set, name="stop-on-signal", daemon=True).start()
