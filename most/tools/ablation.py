"""``most ablation``: which parts of the modality-aware MoE earn their keep (MoST's claim, tested).

Every variant runs ``adapt -> stage1 -> eval`` from the same inputs (the source run's data, units,
judge and base model), with the same stage1 recipe, steps and seed; only the ``experts`` options of
``most adapt`` differ:

=========  =====================================================================================
modality   the reference: split init, modality-aware router (MoST)
vanilla    the base's own top-k router over all experts, no groups (at step 0: the base model)
upcycle    modality router, but each group starts as a copy of all pretrained experts
no_shared  the reference without shared experts
top_p      Top-P routing with null experts (UniMoE-Audio) instead of top-k inside the group
=========  =====================================================================================

Shared experts: a base without any (the embedded Qwen3-MoE, OLMoE, Mixtral) would make
``no_shared`` the same model as ``modality``. With ``add_shared`` (default) every variant but
``no_shared`` gets one added shared expert per MoE layer (``experts.add_shared``: a no-op at step 0
that learns), so that the shared-expert row is a real comparison; a base with its own shared experts
keeps them instead.

``RUN/<variant>/`` holds links ``data units judge base`` to the source run (read, never written), the
stages' usual ``adapt/ stage1/ eval/``, their output in ``logs/<stage>.log`` and ``variant.json``
(the exact stage arguments: a later call with other settings is refused unless ``force``).
``RUN/report.json`` and ``RUN/report.md`` hold the table.

Stages run as subprocesses (``python -m most.cli``): each variant trains in a fresh process, so no
memory or RNG state leaks between variants, and a killed ablation resumes where it stopped (finished
variants are skipped, a killed stage1 resumes from its checkpoint).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from most.eval.ablation import SETTINGS, collect, write_report
from most.io import atomic_write_json, read_json
from most.run import Run
from most.stages.eval import Sizes

Variant = Literal["modality", "vanilla", "upcycle", "no_shared", "top_p"]

#: variant -> its ``experts.*`` options for ``most adapt`` (the rest come from the adapt recipe).
VARIANTS: dict[str, dict[str, str | bool]] = {
    "modality": {"init": "split", "router": "modality", "shared_experts": True},
    "vanilla": {"init": "split", "router": "topk", "shared_experts": True},
    "upcycle": {"init": "upcycle", "router": "modality", "shared_experts": True},
    "no_shared": {"init": "split", "router": "modality", "shared_experts": False},
    "top_p": {"init": "split", "router": "top_p", "shared_experts": True},
}

#: The inputs every variant reads from the source run (links, never written).
INPUTS = ("data", "units", "judge", "base")
_DEFAULT_SIZES = Sizes(asr=100, tts=40, sqa=0, text=100, wuggy=60, blimp=60, router=32)


def ablation(
    run: Path,
    source: Path,
    variants: tuple[Variant, ...] = ("modality", "vanilla", "upcycle", "no_shared", "top_p"),
    recipes: Path = Path("recipes/tiny"),
    max_steps: int | None = None,
    add_shared: bool = True,
    sizes: Sizes = _DEFAULT_SIZES,
    judge: str = "ctc",
    stage1_args: tuple[str, ...] = (),
    eval_args: tuple[str, ...] = (),
    force: bool = False,
) -> dict:
    """Adapt, train (stage1) and evaluate every variant; write ``RUN/report.{json,md}``.

    ``source``: the finished demo run whose data, units, judge and base every variant reads.
    ``recipes``: folder of the adapt, stage1 and eval recipes all variants share.
    ``max_steps``: stage1 optimizer steps of every variant (None = the recipe's); the recipe's
    time limit is lifted so that every variant trains the same number of steps.
    ``add_shared``: give a base without shared experts one per layer (see the module docstring).
    ``judge``: the TTS judge (``ctc`` = SOURCE/judge). ``sizes``: items per eval section (spoken
    QA is off by default: stage1 does not teach it). ``stage1_args`` / ``eval_args``: extra
    ``--key=value`` overrides given to every variant's stage.
    """
    run, source, recipes = Path(run), Path(source), Path(recipes)
    if unknown := sorted(set(variants) - set(VARIANTS)):
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    check_source(source, judge)
    if run.resolve() == source.resolve():
        raise ValueError(f"--run {run} is the source run; the ablation writes elsewhere")
    base_shared = base_has_shared(Run(source).hf("base"))
    if "no_shared" in variants and not base_shared and not add_shared:
        raise ValueError(
            "variant no_shared: the base has no shared experts, so it would equal modality; "
            "set add_shared=true or leave no_shared out"
        )
    add = add_shared and not base_shared
    t_start = time.monotonic()
    for i, name in enumerate(variants, 1):
        vdir = run / name
        settings = variant_settings(
            name, vdir, source, recipes, max_steps, add, sizes, judge, stage1_args, eval_args
        )
        tag = f"[{i}/{len(variants)}] {name}"
        took = run_variant(vdir, source, settings, force, tag)
        if took:
            stages = ", ".join(f"{stage} {t / 60:.1f} min" for stage, t in took.items())
            total = (time.monotonic() - t_start) / 60
            print(f"{tag}: done ({stages}); ablation {total:.1f} min so far", flush=True)
    rows = {name: collect(run / name, judge) for name in variants}
    meta = {
        "source": str(source),
        "recipes": str(recipes),
        "base_has_shared": base_shared,
        "add_shared": add,
        "sizes": asdict(sizes),
        "judge": judge,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    report = write_report(run, rows, meta)
    print(f"most ablation: wrote {run}/report.md")
    return report


def check_source(source: Path, judge: str) -> None:
    """One-line error naming the first missing input of the source run."""
    src = Run(source)
    needed = [src.data, src.units_manifest, src.hf("base") / "config.json"]
    if judge == "ctc":
        needed.append(src.judge_file)
    for path in needed:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `make demo` (RUN={source}) first")


def base_has_shared(base: Path) -> bool:
    """Whether the base architecture has shared experts of its own (DeepSeek, Qwen2-MoE)."""
    from transformers import AutoConfig

    from most.moe.arch import spec_for

    return spec_for(AutoConfig.from_pretrained(base)).shared is not None


def experts_options(variant: str, add_shared: bool) -> dict[str, str | bool]:
    """The ``experts.*`` options of ``most adapt`` for ``variant``."""
    opts = VARIANTS[variant]
    return {**opts, "add_shared": add_shared and bool(opts["shared_experts"])}


def adapt_args(experts: dict[str, str | bool]) -> list[str]:
    return [
        f"--experts.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in experts.items()
    ]


def variant_settings(
    name: str,
    vdir: Path,
    source: Path,
    recipes: Path,
    max_steps: int | None,
    add_shared: bool,
    sizes: Sizes,
    judge: str,
    stage1_args: tuple[str, ...],
    eval_args: tuple[str, ...],
) -> dict:
    """Everything that makes a variant: the exact arguments of its three stages."""
    experts = experts_options(name, add_shared)
    # The recipe's time limit would stop a slower variant early: every variant trains max_steps.
    train = [f"--trainer.max_steps={max_steps}"] if max_steps else []
    train += ["--trainer.max_time_min=null", "--trainer.progress=false", *stage1_args]
    evaluate = [f"--models.model={Run(vdir).hf('stage1')}"]
    evaluate += [f"--sizes.{k}={v}" for k, v in asdict(sizes).items()]
    evaluate += [f"--judges.names=[{judge}]", f"--judges.sqa={judge}", *eval_args]
    return {
        "variant": name,
        "source": str(source),
        "experts": experts,
        "adapt": ["--config", str(recipes / "adapt.yaml"), *adapt_args(experts)],
        "stage1": ["--config", str(recipes / "stage1.yaml"), *train],
        "eval": ["--config", str(recipes / "eval.yaml"), *evaluate],
    }


def run_variant(
    vdir: Path, source: Path, settings: dict, force: bool, tag: str
) -> dict[str, float]:
    """Run the variant's stages unless it finished with the same settings; seconds per stage run."""
    recorded = read_json(vdir / SETTINGS) if (vdir / SETTINGS).is_file() else None
    if recorded is not None and recorded != settings and not force:
        raise ValueError(
            f"{vdir} was made with other settings ({vdir / SETTINGS}); pass --force=true to redo "
            "it, or choose another --run"
        )
    if recorded == settings and Run(vdir).report.is_file() and not force:
        print(f"{tag}: finished earlier; skipped (--force=true redoes it)")
        return {}
    link_inputs(vdir, source)
    atomic_write_json(vdir / SETTINGS, settings)
    redo = ["--force=true"] if force else []
    took = {}
    for stage in ("adapt", "stage1", "eval"):
        log = vdir / "logs" / f"{stage}.log"
        print(f"{tag}: most {stage} (log: {log})", flush=True)
        t0 = time.monotonic()
        _most(stage, [*settings[stage], "--run", str(vdir), *redo], log)
        took[stage] = time.monotonic() - t0
    return took


def link_inputs(vdir: Path, source: Path, names: tuple[str, ...] = INPUTS) -> None:
    """``vdir``'s stage folders ``names`` -> the source run's (what the stages read)."""
    vdir.mkdir(parents=True, exist_ok=True)
    for name in names:
        link, target = Run(vdir).stage(name), Run(source).stage(name).resolve()
        if link.is_symlink() and link.resolve() == target:
            continue
        if link.exists() or link.is_symlink():
            raise ValueError(f"{link} exists and is not a link to {target}")
        if target.exists():
            link.symlink_to(target, target_is_directory=True)


def _most(stage: str, args: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ most {stage} {' '.join(args)}\n")
        f.flush()
        cmd = [sys.executable, "-m", "most.cli", stage, *args]
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise ChildProcessError(f"`most {stage}` failed (exit {rc}); see {log}")
