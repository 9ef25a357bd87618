"""Locks for py-libp2p's hot path that do not yield to the scheduler when they are free.

``trio.Lock`` checkpoints on every acquire, even uncontended; py-libp2p takes about ten locks
per message, so each small round trip crossed ~16 scheduler passes per side.  These keep the
mutual exclusion and fairness and drop only the needless scheduling points (fix 1 of
:mod:`storaged.net.muxer`, which swaps them in).
"""

from __future__ import annotations

from typing import Any

import trio


class EagerLock:
    """A lock that does not yield when it is free (``trio.Lock`` does, on every acquire).

    Same interface as the subset of ``trio.Lock`` libp2p uses.  A free lock is taken with two
    attribute checks: no checkpoint, and none of ``trio.Lock``'s owner bookkeeping (its
    "parking lot breaker" registration costs more than the rest of an uncontended acquire and
    release together, and a small RPC round trip takes about ten of them per side).  A held
    lock parks the caller in a FIFO ``ParkingLot``; ``release`` hands the lock straight to the
    first waiter, so it is fair and a waiter cannot be overtaken by a newcomer.  A waiter
    cancelled while parked is simply removed.  Unlike ``trio.Lock``, a task that exits while
    holding it does not break it for the waiters (libp2p releases in ``async with``/``finally``).
    """

    __slots__ = ("_held", "_lot")

    def __init__(self) -> None:
        self._held = False
        self._lot = trio.lowlevel.ParkingLot()

    async def acquire(self) -> None:
        if not self._held and not self._lot:
            self._held = True
            return
        await self._lot.park()  # woken by release(), which left _held True for us

    def release(self) -> None:
        """Raises:
        RuntimeError: the lock is not held."""
        if not self._held:
            raise RuntimeError("release of an unlocked EagerLock")
        if self._lot:
            self._lot.unpark(count=1)  # ownership passes to the first waiter
        else:
            self._held = False

    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class WindowLock(EagerLock):
    """A Yamux stream's ``window_lock`` that also wakes writers waiting for send window.

    py-libp2p 0.8.1 changes ``send_window`` only under this lock (a WINDOW_UPDATE from the
    peer, in the connection's reader task), so every release is a moment the window may have
    grown: :meth:`wait_for_change` returns at the next one.
    """

    __slots__ = ("_watchers",)

    def __init__(self) -> None:
        super().__init__()
        self._watchers = trio.lowlevel.ParkingLot()

    def release(self) -> None:
        super().release()
        if self._watchers:
            self._watchers.unpark_all()

    async def wait_for_change(self) -> None:
        """Park until the lock is next released (the caller re-checks the window)."""
        await self._watchers.park()


class EagerSemaphore:
    """A ``trio.Semaphore`` that does not yield when a token is free."""

    __slots__ = ("_sem",)

    def __init__(self, value: int) -> None:
        self._sem = trio.Semaphore(value)

    @property
    def value(self) -> int:
        return self._sem.value

    async def acquire(self) -> None:
        try:
            self._sem.acquire_nowait()
        except trio.WouldBlock:
            await self._sem.acquire()

    def acquire_nowait(self) -> None:
        self._sem.acquire_nowait()

    def release(self) -> None:
        self._sem.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()


def eager_lock(obj: Any, attr: str, kind: type[EagerLock] = EagerLock) -> None:
    """Replace the free ``trio.Lock`` at ``obj.attr`` by a ``kind`` (an :class:`EagerLock`).

    A lock someone holds (or waits for) is left alone: swapping it then could let two tasks
    in at once.
    """
    lock = getattr(obj, attr, None)
    if isinstance(lock, trio.Lock) and not lock.locked() and not lock.statistics().tasks_waiting:
        setattr(obj, attr, kind())


__all__ = ["EagerLock", "EagerSemaphore", "WindowLock", "eager_lock"]
