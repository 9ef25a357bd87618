"""A worker pool that runs at most `window` tasks at a time and hands results over in order.

The put and get pipelines submit one task per segment; the caller's thread reads the next
segment (or fetches its shares) while the workers encrypt/encode/hash the previous ones, and
each result is passed to `consume` in submission order, on the caller's thread.  Every task is
given a *slot* in ``[0, window)`` that no task still in flight or awaiting consumption holds, so
per-slot scratch buffers can be reused without locks: memory stays O(window) whatever the
number of tasks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, ParamSpec, TypeVar

from storaged.errors import LocalBugError

T = TypeVar("T")
P = ParamSpec("P")


class OrderedPool(Generic[T]):
    """Use as a context manager: ``slot = pool.reserve()``, fill that slot's buffers,
    ``pool.submit(fn, ...)``; repeat.  Leaving the block normally consumes what is left.

    A task's exception is raised (as is) from the :meth:`reserve` or :meth:`finish` call that
    reaches its result, and so is an exception from `consume`; leaving the block with an
    exception cancels the tasks not started and waits for the running ones (they may still be
    using slot buffers), so no worker outlives the block.
    """

    def __init__(
        self, consume: Callable[[T], None], *, workers: int, window: int, name: str
    ) -> None:
        """Raises:
        ValueError: workers or window is below 1.
        """
        if workers < 1 or window < 1:
            raise ValueError(f"workers={workers} and window={window} must be at least 1")
        self._consume = consume
        self.window = window
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._pending: deque[Future[T]] = deque()
        self._submitted = 0
        self._reserved = False
        self.max_in_flight = 0
        """Most tasks submitted and not yet consumed at any time (for tests)."""

    def __enter__(self) -> OrderedPool[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.finish()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _consume_oldest(self) -> None:
        future = self._pending.popleft()
        self._consume(future.result())

    def reserve(self) -> int:
        """Wait until fewer than `window` tasks are outstanding (consuming finished results,
        oldest first); return the slot the next submitted task will own.

        Raises:
            Exception: whatever the oldest task or `consume` raised.
        """
        while len(self._pending) >= self.window:
            self._consume_oldest()
        self._reserved = True
        # Results are consumed in order, so the outstanding tasks are the last < window ones
        # submitted, whose slots are the window - 1 values before this one (mod window).
        return self._submitted % self.window

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run `fn` in a worker; its result goes to `consume` after all earlier results.

        Raises:
            LocalBugError: :meth:`reserve` was not called first.
        """
        if not self._reserved:
            raise LocalBugError("OrderedPool.submit without reserve")
        self._reserved = False
        self._pending.append(self._pool.submit(fn, *args, **kwargs))
        self._submitted += 1
        self.max_in_flight = max(self.max_in_flight, len(self._pending))

    def finish(self) -> None:
        """Consume every outstanding result, in order.

        Raises:
            Exception: whatever a task or `consume` raised (the rest are not consumed).
        """
        while self._pending:
            self._consume_oldest()
