"""The rich progress bar every long eval loop shows (decoding, feature extraction, training).

In a terminal it is a live bar. Where the output is a file (``make demo``'s side lane writes
``RUN/logs/<stage>.log``) a live bar prints nothing until it ends, so there the bar prints one
plain line per task every :data:`LOG_EVERY_S` seconds instead: done/total, elapsed and the ETA.
"""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Seconds between the plain progress lines of a bar whose output is not a terminal.
LOG_EVERY_S = 30.0


def clock(seconds: float | None) -> str:
    """``seconds`` as ``m:ss``, or ``h:mm:ss`` from an hour on; ``?`` for None or NaN (no pace yet)."""
    if seconds is None or seconds != seconds:
        return "?"
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class LoggedProgress(Progress):
    """:class:`rich.progress.Progress` (``kwargs`` are its own) that, off a terminal, prints a
    line per task every ``every_s`` seconds of progress."""

    def __init__(self, *columns, every_s: float = LOG_EVERY_S, **kwargs) -> None:
        super().__init__(*columns, **kwargs)
        self.every_s = every_s
        self._logged: dict[TaskID, float] = {}

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        if self.console.is_interactive:
            return
        now = time.monotonic()
        last = self._logged.setdefault(task_id, now)
        if now - last < self.every_s:
            return
        self._logged[task_id] = now
        task = self._tasks[task_id]
        total = "?" if task.total is None else f"{task.total:.0f}"
        self.console.print(
            f"{task.description}: {task.completed:.0f}/{total} | elapsed "
            f"{clock(task.elapsed)} | ETA {clock(task.time_remaining)}",
            highlight=False,
        )


def progress() -> Progress:
    """A transient-free bar: description, bar, done/total, elapsed, remaining."""
    return LoggedProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
