"""Rich progress bars per phase, silent with ``--quiet`` or when stderr is not a terminal."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator


class Progress:
    """``with progress.phase("extract", total=12) as advance: advance(1)``."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.enabled = not quiet and sys.stderr.isatty()
        self._rich = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn

            self._rich = RichProgress(
                TextColumn("[bold]{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=Console(stderr=True), transient=False,
            )

    def __enter__(self) -> "Progress":
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.stop()

    @contextmanager
    def phase(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        if self._rich is None:
            yield lambda n=1: None
            return
        task = self._rich.add_task(description, total=total)
        try:
            yield lambda n=1: self._rich.advance(task, n)
        finally:
            self._rich.update(task, completed=total if total is not None else 1, total=total or 1)

    def log(self, message: str) -> None:
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        elif not self.quiet:
            print(message, file=sys.stderr)

