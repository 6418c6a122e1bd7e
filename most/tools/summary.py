"""``most summary``: the demo's quality bar, one row per check (:mod:`most.eval.summary`).

Reads the run's eval report, the training stages' ``metrics.json`` (a row fails when a time cap cut
a step budget) and, when ``make demo`` wrote one, its per-stage wall times::

    most summary --run runs/demo

Exit status: 0 when every check with inputs passes (a check without them is n/a), 1 when one misses
its target, 2 when the run has no eval report.
"""

from __future__ import annotations

from pathlib import Path

from most.eval.summary import print_summary, read_timings, wall_seconds
from most.io import read_json
from most.run import Run

TRAINING_STAGES = ("base", "stage1", "stage2", "stage3")


def summary(run: Path) -> bool:
    """Print the quality-bar table of ``run``; True when no check misses its target.

    Args:
        run: the run folder (its eval report and ``timings.tsv``).
    """
    r = Run(run)
    if not r.report.is_file():
        raise FileNotFoundError(f"{r.report}: no eval report; run `most eval --run {run}` first")
    timings = read_timings(r.timings) if r.timings.is_file() else None
    wall = wall_seconds(r.timings) if r.timings.is_file() else None
    training = {
        stage: read_json(path)
        for stage in TRAINING_STAGES
        if (path := r.stage(stage) / "metrics.json").is_file()
    }
    passed = print_summary(read_json(r.report), timings, training, wall)
    print(
        f"report: {r.eval / 'report.md'}"
        + (f"   release: {r.release}" if r.release.is_dir() else "")
    )
    return passed
