"""Analyses in daemon threads with deadlines, and their failures as errors that name them.

Python cannot stop a thread, so the build never blocks on one: each analysis runs in a daemon
thread that posts its outcome to a queue, and the main thread waits on that queue in slices
of :data:`POLL_S` seconds. A Ctrl-C therefore reaches the main thread at once (as
``KeyboardInterrupt``), and an analysis past its deadline is noticed within a slice. Either
way the build raises and removes its folders, and the thread is left behind: being a daemon,
it does not hold up the interpreter's exit. (A ``concurrent.futures`` pool would: it joins its
threads when the ``with`` block ends and again at exit, which is how a hung analysis made
Ctrl-C hang the build.) The pipeline closes the abandoned analysis's figure writer before
removing the site folder, so it cannot write into it afterwards; a library caller that goes
on (``dinoreport serve``) keeps the thread until it returns or the process ends.

Whatever an analysis raises, ``SystemExit`` included, comes back as :class:`AnalysisError`
naming the analysis, the file and line of the raise site in its module, and the error; the
original exception (with its traceback) is kept for ``--verbose``.
"""
from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from .analyses.registry import DEFAULT_TIMEOUT_S, Analysis, defined_in

__all__ = ["AnalysisError", "AnalysisTimeout", "Deadline", "deadline", "failure", "AnalysisRunner", "POLL_S"]

# How long the main thread waits on the queue at a time: the latency of a deadline (Ctrl-C is
# not bound by it: a signal interrupts the wait).
POLL_S = 0.2

HOW_TO_RAISE = ("if it needs longer, raise the timeout: --analysis-timeout SECONDS, or analysis.timeout_s = "
                "SECONDS in report.toml (0: no timeout)")


class AnalysisError(RuntimeError):
    """An analysis that raised; the message names it, where and what.

    analysis : its name.
    original : what it raised, traceback intact (None for a timeout).
    """

    def __init__(self, message: str, analysis: str, original: BaseException | None = None):
        super().__init__(message)
        self.analysis = analysis
        self.original = original


class AnalysisTimeout(AnalysisError):
    """An analysis still running at its deadline."""


@dataclass(frozen=True)
class Deadline:
    """seconds : how long an analysis may run (None: no limit). source : who set it, for messages."""

    seconds: float | None
    source: str


def deadline(a: Analysis, config_s: float | None = None, option_s: float | None = None) -> Deadline:
    """The deadline of ``a``: ``--analysis-timeout`` (``option_s``) over ``analysis.timeout_s``
    of report.toml (``config_s``) over the analysis's own ``timeout_s`` over
    :data:`DEFAULT_TIMEOUT_S`; 0 in a setting means no limit."""
    for value, source in ((option_s, "--analysis-timeout"), (config_s, "analysis.timeout_s in report.toml"),
                          (a.timeout_s, "timeout_s of its register_analysis"),
                          (DEFAULT_TIMEOUT_S, "the default")):
        if value is not None:
            return Deadline(float(value) if value > 0 else None, source)
    raise AssertionError("unreachable: the default is set")


def _seconds(s: float) -> str:
    return f"{s:g} s"


def _raise_site(a: Analysis, exc: BaseException) -> str:
    """``file, line N, in fn`` of the innermost frame in the analysis's module (else the
    innermost frame at all, else the module)."""
    file = defined_in(a.run)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    mine = [f for f in frames if f.filename == file]
    f = (mine or frames or [None])[-1]
    return file if f is None else f"{f.filename}, line {f.lineno}, in {f.name}"


def failure(a: Analysis, exc: BaseException) -> AnalysisError:
    """:class:`AnalysisError` for what ``a`` raised."""
    if isinstance(exc, SystemExit):
        what = f"it called sys.exit({exc.code!r}) (an analysis returns its output or raises, it does not exit)"
    else:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return AnalysisError(f"analysis {a.name} failed at {_raise_site(a, exc)}: {what}", a.name, exc)


def _overdue(a: Analysis, d: Deadline) -> AnalysisTimeout:
    return AnalysisTimeout(f"analysis {a.name} ({defined_in(a.run)}) did not finish within {_seconds(d.seconds)}, "
                           f"its timeout ({d.source}), so the build stopped; {HOW_TO_RAISE}", a.name)


class AnalysisRunner:
    """Runs calls for analyses in daemon threads; :meth:`next` hands back one outcome at a time.

    ``start(a, fn, d)`` calls ``fn()`` in a new daemon thread; ``next()`` waits for the first
    of them to end and returns ``(a, fn's value)``, or raises: :class:`AnalysisError` for what
    ``fn`` raised, :class:`AnalysisTimeout` for one past its deadline, ``KeyboardInterrupt``
    on Ctrl-C. After it raises, the threads still running are abandoned (see the module
    docstring); a runner is not reused after that.
    """

    def __init__(self, poll_s: float = POLL_S):
        self.poll_s = poll_s
        self._outcomes: queue.Queue = queue.Queue()
        self._running: dict[str, tuple[Analysis, Deadline, float]] = {}  # name -> (analysis, deadline, start)

    @property
    def running(self) -> list[Analysis]:
        """The analyses started and not yet handed back, in start order."""
        return [a for a, _, _ in self._running.values()]

    def start(self, a: Analysis, fn: Callable[[], Any], d: Deadline) -> None:
        def work() -> None:
            try:
                value = fn()
            except BaseException as e:  # noqa: BLE001 - SystemExit too: reported as the analysis's error
                self._outcomes.put((a.name, None, e))
            else:
                self._outcomes.put((a.name, value, None))

        self._running[a.name] = (a, d, time.monotonic())
        threading.Thread(target=work, name=f"analysis-{a.name}", daemon=True).start()

    def _wait_s(self) -> float:
        """Seconds until the next deadline, at most ``poll_s``."""
        now, wait = time.monotonic(), self.poll_s
        for _, d, t0 in self._running.values():
            if d.seconds is not None:
                wait = min(wait, t0 + d.seconds - now)
        return max(wait, 0.0)

    def next(self) -> tuple[Analysis, Any]:
        while True:
            try:
                name, value, exc = self._outcomes.get(timeout=self._wait_s())
            except queue.Empty:
                now = time.monotonic()
                for a, d, t0 in self._running.values():
                    if d.seconds is not None and now - t0 >= d.seconds:
                        raise _overdue(a, d) from None
                continue
            a, _, _ = self._running.pop(name)
            if isinstance(exc, KeyboardInterrupt):  # raised by hand in the analysis: treat as Ctrl-C
                raise exc
            if exc is not None:
                raise failure(a, exc) from exc
            return a, value
