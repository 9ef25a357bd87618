"""Background CPU work runs at a lower priority than the event loop's thread (Linux)."""

from __future__ import annotations

import os
import threading

import pytest
import trio

from storaged.node.background import BACKGROUND_NICE, run_in_background


def _nice_of_this_thread() -> tuple[int, int]:
    return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_work_runs_lowered_and_the_event_loop_thread_keeps_its_priority() -> None:
    _, loop_nice = _nice_of_this_thread()
    with trio.fail_after(10):
        worker_tid, worker_nice = await run_in_background(_nice_of_this_thread)
    assert worker_tid != threading.get_native_id()
    assert worker_nice >= BACKGROUND_NICE
    assert _nice_of_this_thread()[1] == loop_nice


async def test_errors_of_the_work_come_back_as_they_are() -> None:
    def fail() -> None:
        raise KeyError("gone")

    with trio.fail_after(10), pytest.raises(KeyError, match="gone"):
        await run_in_background(fail)
