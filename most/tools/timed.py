"""The lines of ``make demo``: run stages with their recipe, time them, append the times to RUN/timings.tsv.

    python -m most.tools.timed --most .venv/bin/most --recipe recipes/tiny --run runs/demo stage1
    python -m most.tools.timed ... --beside judge base adapt

Listed stages run one after another. ``--beside S`` runs stage ``S`` on half the cores this process
may use (pinned there, with as many torch threads; its output goes to ``RUN/logs/S.log``, whose end
is printed when it is done) while the listed stages run in turn on the other half. The tiny
default's small models train about 1.6x as fast on two threads as on one, so two stages side by
side finish sooner than one after the other (``docs/results.md``). With one core they run in turn.
A stage that fails stops the other lane and gives its exit status.

Extra arguments come from the environment, split as a shell would split them but never run by one:
``ARGS`` reaches every stage, ``ARGS_<stage>`` only that stage (``ARGS_stage1="--data.ratios='{asr:
0.3, tts: 0.45}'"`` arrives as one argument). A family without ``<stage>.yaml`` skips the stage. A stage
that finished before is a no-op that takes seconds; it keeps the time of the call that ran it, so a
resumed demo still reports the whole pipeline's time. Each timings line is ``<stage>\t<seconds>\t<start,
epoch seconds>``: stages that ran side by side count once in the demo's wall time
(:func:`most.eval.summary.wall_seconds`). ``--overlay DIR`` (repeatable) adds ``DIR/<stage>.yaml``
after the recipe where that file exists (``recipes/music`` overrides ``recipes/tiny``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from most.run import STAGES, Run
from most.threads import available_cores

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


def stage_command(args: argparse.Namespace, stage: str) -> list[str] | None:
    """The ``most <stage>`` command line of ``args``; None (and a line saying so) when the recipe
    family has no ``<stage>.yaml``."""
    recipe = args.recipe / f"{stage}.yaml"
    if not recipe.is_file():
        print(f"=== most {stage}: no {recipe}, skipped ===", flush=True)
        return None
    cmd = [*shlex.split(args.most), stage, "--config", str(recipe)]
    cmd += [*overlay_args(args.overlay, stage), "--run", str(args.run)]
    return cmd + extra_args(stage)


def split_cores(cores: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(side, main)`` lanes of ``cores``: the side lane gets the first half (at least one)."""
    half = max(1, len(cores) // 2)
    return list(cores[:half]), list(cores[half:])


def launch(cmd: list[str], cores: Sequence[int] | None = None, log: Path | None = None):
    """Start ``cmd``; with ``cores``, pinned to them with as many torch threads; with ``log``, its
    output goes there (unbuffered) instead of to this terminal."""
    env = dict(os.environ)
    pin = None
    if cores is not None:
        env["OMP_NUM_THREADS"] = str(len(cores))
        if hasattr(os, "sched_setaffinity"):

            def pin() -> None:
                os.sched_setaffinity(0, cores)

    if log is not None:
        env["PYTHONUNBUFFERED"] = "1"
    out = None if log is None else log.open("w")
    try:
        err = None if out is None else subprocess.STDOUT
        return subprocess.Popen(cmd, env=env, preexec_fn=pin, stdout=out, stderr=err)
    finally:
        if out is not None:
            out.close()


def record(run: Run, stage: str, started: float, seconds: float) -> None:
    """Append ``<stage>\t<seconds>\t<start, epoch s>`` to ``run``'s timings, unless a stage timed
    before came back at once (a no-op re-run)."""
    if seconds >= NOOP_SECONDS or stage not in timed_stages(run.timings):
        with run.timings.open("a") as f:
            f.write(f"{stage}\t{round(seconds)}\t{round(started)}\n")


def _header(stage: str, extra: str = "") -> None:
    print(f"=== most {stage} ({time.strftime('%H:%M:%S')}){extra} ===", flush=True)


def run_lane(
    args: argparse.Namespace,
    run: Run,
    stages: Sequence[str],
    cores: Sequence[int] | None = None,
    side: subprocess.Popen | None = None,
) -> int:
    """Run ``stages`` one after another (on ``cores``); stop at the first that fails, or when
    ``side`` (a running process) fails, ending the stage under way."""
    for stage in stages:
        cmd = stage_command(args, stage)
        if cmd is None:
            continue
        _header(stage)
        started, start = time.time(), time.monotonic()
        proc = launch(cmd, cores)
        while True:
            try:
                rc = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if side is not None and side.poll() not in (None, 0):
                    proc.terminate()
                    proc.wait()
                    return side.returncode
        if rc != 0:
            return rc
        record(run, stage, started, time.monotonic() - start)
    return 0


def _tail(log: Path, lines: int) -> str:
    return "\n".join(log.read_text(errors="replace").replace("\r", "\n").splitlines()[-lines:])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait()


def run_beside(args: argparse.Namespace, run: Run) -> int:
    """``args.beside`` on half the cores while ``args.stages`` run one after another on the rest."""
    cores = available_cores()
    cmd = stage_command(args, args.beside)
    if cmd is None or len(cores) < 2:  # nothing to share the cores with: one after the other
        return run_lane(args, run, ([args.beside] if cmd else []) + list(args.stages))
    side_cores, main_cores = split_cores(cores)
    log = run.root / "logs" / f"{args.beside}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    lane = " -> ".join(args.stages)
    _header(args.beside, f" on {len(side_cores)} of {len(cores)} cores beside {lane}; log: {log}")
    started, start = time.time(), time.monotonic()
    side = launch(cmd, side_cores, log)
    ended: list[float] = []  # when the side stage ended, which may be long before the lane does
    watcher = threading.Thread(target=lambda: (side.wait(), ended.append(time.monotonic())))
    watcher.start()
    try:
        rc = run_lane(args, run, args.stages, main_cores, side)
    except BaseException:
        _stop(side)
        raise
    if side.poll() is None:
        if rc != 0:
            _stop(side)
            return rc
        print(f"=== waiting for most {args.beside} (log: {log}) ===", flush=True)
    side_rc = side.wait()
    watcher.join()
    print(_tail(log, 20 if side_rc else 6), flush=True)
    if side_rc != 0:
        print(f"most {args.beside} failed (exit {side_rc}); its whole output: {log}", flush=True)
        return side_rc
    if rc == 0:
        record(run, args.beside, started, ended[0] - start)
    return rc


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
    parser.add_argument(
        "--beside",
        choices=STAGES,
        help="a stage to run on half the cores (its output in RUN/logs/<stage>.log) while the "
        "listed stages run one after another on the other half",
    )
    parser.add_argument("stages", nargs="+", choices=STAGES, metavar="stage")
    args = parser.parse_args(argv)
    run = Run(args.run)
    run.root.mkdir(parents=True, exist_ok=True)
    if args.beside:
        return run_beside(args, run)
    return run_lane(args, run, args.stages)


if __name__ == "__main__":
    sys.exit(main())
