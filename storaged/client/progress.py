"""Progress reporting for put and get: one rich bar with bytes and rate, or nothing."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class Reporter(Protocol):
    """What put/get tell about their progress."""

    def stage(self, text: str) -> None:
        """A new phase started (encoding, choosing providers, ...)."""
        ...

    def start(self, description: str, total: int) -> None:
        """A byte-counted phase of ``total`` bytes started."""
        ...

    def advance(self, n: int) -> None:
        """``n`` more bytes done."""
        ...


class Quiet:
    """Reports nothing (``--json``, tests)."""

    def stage(self, text: str) -> None:
        pass

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


class RichReporter:
    """Stages as dim lines, byte phases as one bar (bytes, rate, time left) on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.task: TaskID | None = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage(self, text: str) -> None:
        self.progress.console.print(f"[dim]{escape(text)}[/dim]")

    def start(self, description: str, total: int) -> None:
        if self.task is not None:  # a new phase: show the previous one as complete
            for task in self.progress.tasks:
                if task.id == self.task and task.total is not None:
                    self.progress.update(self.task, completed=task.total)
        self.task = self.progress.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)
