"""Helpers of the GUI tests (the fixtures live in ``tests/conftest.py``)."""
from __future__ import annotations


def wait_idle(qtbot, session, timeout: int = 240_000) -> None:
    """Wait until no AnchorAD job runs on ``session``."""
    qtbot.waitUntil(lambda: not session.busy, timeout=timeout)


def open_and_wait(qtbot, viewer, folder, timeout: int = 120_000):
    """Open a subject folder through the Subject panel's path and wait for it."""
    from anchorad_gui._session import session_for
    from anchorad_gui._subject_panel import open_subject

    session = session_for(viewer)
    open_subject(viewer, folder)
    wait_idle(qtbot, session, timeout)
    return session
