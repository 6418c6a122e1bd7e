"""``most curriculum``: UniMoE-Audio's three-phase training, in place of ``most stage1``.

1. **Specialists.** One stage-1 run per modality listed in ``specialists``, each from the adapted
   model, on that modality's tasks only, training only the routed experts and the new token rows
   (``RUN/curriculum/<modality>/stage1``): each group's "proto-experts" learn their domain without
   interference from the others.
2. **Integration.** The specialists' groups are placed in one model (:mod:`most.moe.merge`,
   ``RUN/curriculum/merge/hf``); routers and shared experts (and the new token rows) warm up on the
   balanced mixture with the experts frozen (``RUN/curriculum/integrate/stage1``).
3. **Joint.** Everything trains on the balanced mixture. This phase *is* the run's stage 1
   (``RUN/stage1``), so ``most stage2`` and ``most eval`` continue from it as usual.

The arguments are those of :func:`most.stages.stage1.stage1` (same recipes: ``--config
recipes/tiny/stage1.yaml --config recipes/music/stage1.yaml``) plus the phases
(``--config recipes/curriculum/curriculum.yaml``). A :class:`Phase` replaces the data ratios (a
task it leaves out gets 0), the trainable selection and the step budget (``steps``); everything
else is the stage-1 recipe's. Without specialists and integration, ``most curriculum`` is plain
stage 1 on the joint mixture: the ablation's naive joint training.

Every phase is a stage-1 run with its own fingerprint and checkpoints: a finished phase is a no-op,
an interrupted one resumes, and ``force`` redoes them all. The merge is redone whenever the
specialists it read changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from most.io import atomic_write_json, read_json
from most.moe.adapter import AdapterConfig
from most.run import FINGERPRINT_FILE, Run, fingerprint, folder_id
from most.stages.stage1 import stage1
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import LoraConfig, OptimConfig
from most.train.stage import STAGE1_RATIOS
from most.units.frontend import FrontendConfig

INTEGRATE, JOINT = "integrate", "joint"


@dataclass
class Phase:
    """What one phase trains on and which weights it updates."""

    ratios: dict[str, float]
    """The phase's task mixture; tasks not named get 0 (keys as in ``data.ratios``)."""
    train: list[str] = field(default_factory=list)
    """``optim.train`` of the phase (regexes; empty = every weight)."""
    freeze: list[str] = field(default_factory=list)
    """``optim.freeze`` of the phase."""
    new_embedding_rows_only: bool = True
    """In embedding / LM-head matrices, update only the rows of tokens added by ``most adapt``."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ratios) - set(STAGE1_RATIOS))
        if unknown:
            raise ValueError(f"curriculum: unknown tasks {unknown}; tasks: {list(STAGE1_RATIOS)}")


_DEFAULT_DataConfig = DataConfig()
_DEFAULT_LoraConfig = LoraConfig()
_DEFAULT_OptimConfig = OptimConfig()
_DEFAULT_TrainerConfig = TrainerConfig()
_DEFAULT_AdapterConfig = AdapterConfig()
_DEFAULT_FrontendConfig = FrontendConfig()
_DEFAULT_JOINT = Phase(ratios=dict(STAGE1_RATIOS))


def curriculum(
    run: Path,
    specialists: dict[str, Phase] | None = None,
    integrate: Phase | None = None,
    joint: Phase = _DEFAULT_JOINT,
    steps: dict[str, int] | None = None,
    init: Path | None = None,
    data: DataConfig = _DEFAULT_DataConfig,
    optim: OptimConfig = _DEFAULT_OptimConfig,
    trainer: TrainerConfig = _DEFAULT_TrainerConfig,
    lora: LoraConfig = _DEFAULT_LoraConfig,
    adapter: AdapterConfig = _DEFAULT_AdapterConfig,
    audio_frontend: FrontendConfig = _DEFAULT_FrontendConfig,
    force: bool = False,
) -> Path:
    """Specialists -> merge -> integration -> joint (module docstring); returns ``RUN/stage1/hf``.

    ``specialists``: modality -> its phase. ``steps``: optimizer steps per phase, keyed by the
    specialists' modalities, ``integrate`` and ``joint``; every phase that runs needs one, and their
    sum is the curriculum's total (the budget a naive joint run gets in the ablation).
    ``init``: the model every specialist starts from (null = RUN/adapt/hf). The other arguments
    are stage 1's, shared by every phase; ``adapter`` must stay ``none`` (the merge takes experts
    and token rows from the specialists, not an audio adapter's weights).
    """
    if adapter.kind != "none":
        raise ValueError(
            f"most curriculum: adapter.kind={adapter.kind!r}; the curriculum trains unit inputs "
            "only (adapter.kind: none)"
        )
    R = Run(run)
    specialists = dict(specialists or {})
    steps = check_steps(specialists, integrate, steps or {})
    start = Path(init) if init else R.hf("adapt")
    common = dict(data=data, optim=optim, trainer=trainer, lora=lora, force=force)
    if specialists:
        trained = {}
        for modality, phase in specialists.items():
            print(f"most curriculum: specialist {modality} ({steps[modality]} steps)", flush=True)
            sub = _subrun(R, modality)
            stage1(run=sub, init=start, **_settings(phase, steps[modality], common))
            trained[modality] = Run(sub).hf("stage1")
        start = merge(R.root / "curriculum" / "merge" / "hf", start, trained)
    if integrate is not None:
        print(f"most curriculum: integration ({steps[INTEGRATE]} steps)", flush=True)
        sub = _subrun(R, INTEGRATE)
        stage1(run=sub, init=start, **_settings(integrate, steps[INTEGRATE], common))
        start = Run(sub).hf("stage1")
    print(f"most curriculum: joint ({steps[JOINT]} steps) -> {R.hf('stage1')}", flush=True)
    stage1(run=R.root, init=start, **_settings(joint, steps[JOINT], common))
    return R.hf("stage1")


def check_steps(
    specialists: dict[str, Phase], integrate: Phase | None, steps: dict[str, int]
) -> dict[str, int]:
    """``steps`` must name exactly the phases that run, each with >= 1 step."""
    phases = [*specialists, *([INTEGRATE] if integrate is not None else []), JOINT]
    missing, extra = sorted(set(phases) - set(steps)), sorted(set(steps) - set(phases))
    if missing or extra:
        raise ValueError(
            f"curriculum.steps must give the steps of exactly the phases {phases}: "
            f"missing {missing}, not run {extra}"
        )
    if bad := {k: v for k, v in steps.items() if v < 1}:
        raise ValueError(f"curriculum.steps must be >= 1: {bad}")
    return steps


def _settings(phase: Phase, max_steps: int, common: dict) -> dict:
    """Stage 1's keyword arguments for ``phase``: its ratios, trainable selection and steps."""
    ratios = {task: 0.0 for task in STAGE1_RATIOS} | phase.ratios
    return {
        **common,
        "data": replace(common["data"], ratios=ratios),
        "optim": replace(
            common["optim"],
            train=list(phase.train),
            freeze=list(phase.freeze),
            new_embedding_rows_only=phase.new_embedding_rows_only,
        ),
        "trainer": replace(common["trainer"], max_steps=max_steps),
    }


def _subrun(R: Run, phase: str) -> Path:
    """``RUN/curriculum/<phase>``: a run folder whose ``data`` and ``units`` link to RUN's."""
    sub = R.root / "curriculum" / phase
    sub.mkdir(parents=True, exist_ok=True)
    for name in ("data", "units"):
        link, target = Run(sub).stage(name), R.stage(name).resolve()
        if link.is_symlink() and link.resolve() == target:
            continue
        if link.exists() or link.is_symlink():
            raise ValueError(f"{link} exists and is not a link to {target}")
        link.symlink_to(target, target_is_directory=True)
    return sub


def merge(dest: Path, start: Path, specialists: dict[str, Path]) -> Path:
    """``dest`` (an HF folder): ``start`` with each specialist's group placed in it
    (:func:`most.moe.merge.merge_specialists`); kept while its inputs are unchanged."""
    inputs = {"start": folder_id(start), **{m: folder_id(p) for m, p in specialists.items()}}
    current = fingerprint({"merge": sorted(specialists)}, inputs)
    record = dest.parent / FINGERPRINT_FILE
    if (dest / "config.json").is_file() and record.is_file() and read_json(record) == current:
        print(f"{dest} exists: merge is up to date")
        return dest
    from most.moe.merge import merge_specialists
    from most.train.runner import export_hf
    from most.train.stage import load_model

    model, tok, layout = load_model(start)
    trained = {m: load_model(p)[0] for m, p in specialists.items()}
    merge_specialists(model, trained, layout)
    export_hf(model, tok, layout, dest)
    atomic_write_json(record, current)
    print(f"most curriculum: merged {', '.join(specialists)} specialists -> {dest}")
    return dest
