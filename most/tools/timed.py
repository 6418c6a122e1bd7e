"""One line of ``make demo``: run a stage with its recipe, time it, append the time to RUN/timings.tsv.

    python -m most.tools.timed --most .venv/bin/most --recipe recipes/tiny --run runs/demo stage1

Extra arguments come from the environment, split as a shell would split them but never run by one:
``ARGS`` reaches every stage, ``ARGS_<stage>`` only that stage (``ARGS_stage1="--data.ratios='{asr:
0.3, tts: 0.45}'"`` arrives as one argument). A family without ``<stage>.yaml`` skips the stage. A stage
that finished before is a no-op that takes seconds; it keeps the time of the call that ran it, so a
resumed demo still reports the whole pipeline's time. ``--overlay DIR`` (repeatable) adds ``DIR/<stage>.yaml``
after the recipe where that file exists (``recipes/music`` overrides ``recipes/tiny``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from most.run import STAGES, Run

#: A call shorter than this that finds its stage already timed is a no-op re-run: not recorded.
NOOP_SECONDS = 15


def extra_args(stage: str, environ: dict[str, str] | None = None) -> list[str]:
    """``ARGS`` then ``ARGS_<stage>`` from ``environ``, split with shell quoting (never executed)."""
    env = os.environ if environ is None else environ
    out: list[str] = []
    for name in ("ARGS", f"ARGS_{stage}"):
        try:
            out += shlex.split(env.get(name, ""))
        except ValueError as e:
            raise SystemExit(f"most demo: {name}: {e}") from None
    return out


def overlay_args(overlays: Sequence[Path], stage: str) -> list[str]:
    """``--config OVERLAY/<stage>.yaml`` per overlay, in order, where that file exists; a missing
    folder is an error."""
    out: list[str] = []
    for overlay in overlays:
        if not overlay.is_dir():
            raise SystemExit(f"most demo: OVERLAY {overlay} is not a folder of recipes")
        file = overlay / f"{stage}.yaml"
        out += ["--config", str(file)] if file.is_file() else []
    return out


def timed_stages(timings: Path) -> set[str]:
    if not timings.is_file():
        return set()
    return {line.split("\t")[0] for line in timings.read_text().splitlines() if line}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m most.tools.timed", description=__doc__)
    parser.add_argument("--most", default="most", help="the most command (split like a shell)")
    parser.add_argument("--recipe", type=Path, required=True, help="recipe family folder")
    parser.add_argument("--run", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--overlay",
        type=Path,
        action="append",
        default=[],
        help="a folder of recipe overrides; repeat it for several, applied in order",
    )
    parser.add_argument("stage", choices=STAGES)
    args = parser.parse_args(argv)
    recipe = args.recipe / f"{args.stage}.yaml"
    if not recipe.is_file():
        print(f"=== most {args.stage}: no {recipe}, skipped ===", flush=True)
        return 0
    run = Run(args.run)
    run.root.mkdir(parents=True, exist_ok=True)
    cmd = [*shlex.split(args.most), args.stage, "--config", str(recipe)]
    cmd += [*overlay_args(args.overlay, args.stage), "--run", str(run.root)]
    cmd += extra_args(args.stage)
    print(f"=== most {args.stage} ({time.strftime('%H:%M:%S')}) ===", flush=True)
    start = time.monotonic()
    rc = subprocess.call(cmd)
    if rc != 0:
        return rc
    seconds = round(time.monotonic() - start)
    if seconds >= NOOP_SECONDS or args.stage not in timed_stages(run.timings):
        with run.timings.open("a") as f:
            f.write(f"{args.stage}\t{seconds}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
