"""Progress per phase: rich bars on a terminal, plain lines otherwise, nothing with ``--quiet``.

Off a terminal (a log file, CI) a phase prints ``phase: done/total`` when it starts, at most
about every ten percent or every :data:`PLAIN_EVERY_S` seconds, and when it ends.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator


PLAIN_EVERY_S = 10.0


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
            if self.quiet:
                yield lambda n=1: None
            else:
                with self._plain(description, total) as advance:
                    yield advance
            return
        task = self._rich.add_task(description, total=total)
        try:
            yield lambda n=1: self._rich.advance(task, n)
        finally:
            self._rich.update(task, completed=total if total is not None else 1, total=total or 1)

    @contextmanager
    def _plain(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        done, t0 = 0, time.monotonic()
        last = [t0, 0]  # time and count of the last line printed
        of = f"/{total}" if total is not None else ""
        step = max(1, (total or 0) // 10)
        print(f"{description}: 0{of}", file=sys.stderr, flush=True)

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            now = time.monotonic()
            if done - last[1] >= step or now - last[0] >= PLAIN_EVERY_S:
                if total is None or done < total:
                    print(f"{description}: {done}{of}", file=sys.stderr, flush=True)
                last[:] = [now, done]

        try:
            yield advance
        finally:
            print(f"{description}: {done}{of} done in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        elif not self.quiet:
            print(message, file=sys.stderr)

