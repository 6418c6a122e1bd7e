"""``most curriculum_ablation``: does UniMoE-Audio's curriculum beat naive joint training?

Both variants start from the same adapted model (the source run's ``adapt``) and train the same
total number of optimizer steps:

==========  ===================================================================================
curriculum  ``most curriculum``: specialists -> merge -> integration -> joint (``steps`` per phase)
joint       ``most curriculum`` without specialists and integration: the joint phase's mixture and
            trainable weights for the sum of ``steps`` (naive joint training)
==========  ===================================================================================

Each (variant, seed) pair runs in ``RUN/<variant>_s<seed>/`` (links ``data units judge base
adapt`` to the source run, read only), then ``most eval`` on its ``stage1``; ``seeds`` gives each
variant its seeds, and a variant with two or more measures the run-to-run noise the verdicts are
judged against. Pairs run in seed order (every variant's first seed first), as subprocesses
logging to ``RUN/<pair>/logs/``; a finished pair is skipped, an interrupted one resumes. The table
(``RUN/report.{json,md}``, :mod:`most.eval.curriculum_ablation`) is rewritten after every pair.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from most.eval.curriculum_ablation import collect, write_report
from most.io import atomic_write_json, read_json
from most.run import Run
from most.stages.eval import Sizes
from most.tools.ablation import _most, link_inputs

#: The source run's folders every pair reads (links, never written).
INPUTS = ("data", "units", "judge", "base", "adapt")
SETTINGS = "variant.json"
_DEFAULT_SIZES = Sizes(asr=60, tts=30, sqa=0, text=60, wuggy=0, blimp=0, router=0, music=40)
#: The curriculum's steps per phase by default (recipes/curriculum/curriculum_ablation.yaml's).
_DEFAULT_STEPS = {"text": 200, "speech": 600, "music": 300, "integrate": 200, "joint": 800}
_DEFAULT_RECIPES = (
    Path("recipes/tiny/stage1.yaml"),
    Path("recipes/music/stage1.yaml"),
    Path("recipes/curriculum/curriculum.yaml"),
)
_DEFAULT_EVAL = (Path("recipes/tiny/eval.yaml"), Path("recipes/music/eval.yaml"))


def curriculum_ablation(
    run: Path,
    source: Path | None = None,
    steps: dict[str, int] | None = None,
    seeds: dict[str, list[int]] | None = None,
    recipes: tuple[Path, ...] = _DEFAULT_RECIPES,
    eval_recipes: tuple[Path, ...] = _DEFAULT_EVAL,
    sizes: Sizes = _DEFAULT_SIZES,
    judge: str = "ctc",
    train_args: tuple[str, ...] = (),
    eval_args: tuple[str, ...] = (),
    force: bool = False,
) -> dict:
    """Train and evaluate every (variant, seed) pair; write ``RUN/report.{json,md}``.

    ``steps``: the curriculum's steps per phase (``most curriculum --steps``; None = stage 1's
    2,100 split as in recipes/curriculum); ``joint`` trains their sum. ``seeds``: variant
    (curriculum, joint) -> its seeds (``data.seed``). ``recipes``: the configs of
    ``most curriculum``; ``eval_recipes``: of ``most eval``. ``train_args`` / ``eval_args``:
    extra ``--key=value`` for every training run / evaluation.
    """
    if source is None:
        raise ValueError("--source: the run whose adapted model both variants start from")
    run, source = Path(run), Path(source)
    steps = steps or dict(_DEFAULT_STEPS)
    seeds = seeds or {"curriculum": [1234], "joint": [1234, 1235]}
    if unknown := sorted(set(seeds) - {"curriculum", "joint"}):
        raise ValueError(f"seeds: unknown variants {unknown}; variants: curriculum, joint")
    if run.resolve() == source.resolve():
        raise ValueError(f"--run {run} is the source run; the ablation writes elsewhere")
    adapt = Run(source).hf("adapt") / "config.json"
    if not adapt.is_file():
        raise FileNotFoundError(f"{adapt} is missing: run `make adapt` (RUN={source}) first")
    total = sum(steps.values())
    order = sorted(
        ((i, v, s) for v, ss in seeds.items() for i, s in enumerate(ss)), key=lambda t: t[0]
    )
    rows: dict[str, dict[int, dict]] = {}
    meta = {
        "source": str(source),
        "recipes": [str(r) for r in recipes],
        "steps": steps,
        "total_steps": total,
        "sizes": asdict(sizes),
        "judge": judge,
    }
    t_start = time.monotonic()
    for n, (_, variant, seed) in enumerate(order, 1):
        vdir = run / f"{variant}_s{seed}"
        phases = {"joint": total} if variant == "joint" else steps
        train = [
            *(w for r in recipes for w in ("--config", str(r))),
            f"--steps={json.dumps(phases)}",
        ]
        if variant == "joint":
            train += ["--specialists={}", "--integrate=null"]
        train += [f"--data.seed={seed}", "--trainer.max_time_min=null", "--trainer.progress=false"]
        evaluate = [*(w for r in eval_recipes for w in ("--config", str(r)))]
        evaluate += [f"--models.model={Run(vdir).hf('stage1')}"]
        evaluate += [f"--sizes.{k}={v}" for k, v in asdict(sizes).items()]
        evaluate += [f"--judges.names=[{judge}]", f"--judges.sqa={judge}", *eval_args]
        settings = {"curriculum": [*train, *train_args], "eval": evaluate, "source": str(source)}
        tag = f"[{n}/{len(order)}] {vdir.name}"
        run_pair(vdir, source, settings, force, tag)
        rows.setdefault(variant, {})[seed] = collect(vdir, judge)
        meta["seconds"] = round(time.monotonic() - t_start, 1)
        write_report(run, rows, meta)
        print(f"{tag}: done; {meta['seconds'] / 60:.1f} min so far; {run}/report.md", flush=True)
    return read_json(run / "report.json")


def run_pair(vdir: Path, source: Path, settings: dict, force: bool, tag: str) -> None:
    """Train and evaluate one pair unless it finished with the same settings."""
    recorded = read_json(vdir / SETTINGS) if (vdir / SETTINGS).is_file() else None
    if recorded is not None and recorded != settings and not force:
        raise ValueError(
            f"{vdir} was made with other settings ({vdir / SETTINGS}); pass --force=true to redo "
            "it, or choose another --run"
        )
    if recorded == settings and Run(vdir).report.is_file() and not force:
        print(f"{tag}: finished earlier; skipped")
        return
    atomic_write_json(vdir / SETTINGS, settings)
    redo = ["--force=true"] if force else []
    for command, key in (("curriculum", "curriculum"), ("eval", "eval")):
        link_inputs(
            vdir, source, INPUTS
        )  # again before eval: the source's judge may finish meanwhile
        log = vdir / "logs" / f"{command}.log"
        print(f"{tag}: most {command} (log: {log})", flush=True)
        _most(command, [*settings[key], "--run", str(vdir), *redo], log)
