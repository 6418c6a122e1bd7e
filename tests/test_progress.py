"""The progress bar off a terminal: plain lines with the ETA, so a log file shows long steps."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import TextColumn

from most.progress import LoggedProgress, progress


def _run(console: Console, every_s: float) -> str:
    with LoggedProgress(TextColumn("{task.description}"), every_s=every_s, console=console) as bar:
        task = bar.add_task("judge: CTC training", total=4)
        for step in range(1, 5):
            bar.update(task, completed=step, description=f"judge: CTC loss {1 / step:.2f}")
        bar.advance(task, 0)
    return console.file.getvalue()


def test_off_a_terminal_the_bar_prints_lines_with_the_eta():
    out = _run(Console(file=io.StringIO(), force_terminal=False), every_s=0.0)
    lines = [line for line in out.splitlines() if "| ETA" in line]
    assert lines[0].startswith("judge: CTC loss 1.00: 1/4 | elapsed 0:00 | ETA ")
    assert lines[-1].startswith("judge: CTC loss 0.25: 4/4 | elapsed ")
    assert len(lines) == 5  # each update and the advance: every_s 0


def test_lines_are_spaced_and_a_terminal_gets_none():
    quiet = _run(Console(file=io.StringIO(), force_terminal=False), every_s=3600.0)
    assert "| ETA" not in quiet  # within the first interval: only the final bar
    assert "judge: CTC loss 0.25" in quiet
    live = _run(Console(file=io.StringIO(), force_terminal=True, force_interactive=True), 0.0)
    assert "| ETA" not in live


def test_the_default_bar_logs_off_a_terminal():
    assert isinstance(progress(), LoggedProgress)
