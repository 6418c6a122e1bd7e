"""``most stage3``: preference tuning (DPO) of the stage-2 model on pairs of its own samples.

Reads ``RUN/stage2/hf`` (or ``init``), ``RUN/units``, ``RUN/data`` and the judge; writes::

    RUN/stage3/samples/<task>-NNNNN.json  sampled candidates with their scores, chunk by chunk
    RUN/stage3/pairs/                     the pairs (datasets) with the reference log-probs
    RUN/stage3/pairs.json                 pairs per task, mean scores of chosen and rejected
    RUN/stage3/ckpt/ logs/ metrics.json   training, as every stage (:mod:`most.train.runner`)
    RUN/stage3/hf/                        the tuned model (a HF folder ``most eval`` reads)
    RUN/stage3/eval_before/ eval_after/   eval reports of the model before and after
    RUN/stage3/compare.json, compare.md   both reports' metrics and the checks, with noise

Steps, each resumable: sample candidates on training prompts and rank them by the judge
(:mod:`most.eval.preference`; chunks on disk are not sampled again) -> pairs, with the reference
log-probs of the model they were sampled from (no second model is held while training) -> DPO
(:mod:`most.train.dpo`; resumes from ``ckpt/last.ckpt``) -> ``hf/`` -> eval of the starting model
and of the tuned one with the same settings (``RUN/eval`` is reused for the first when it is a
report of that model with those settings) -> ``compare.json`` (:mod:`most.eval.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import datasets
import lightning as L
import torch

from most.eval.compare import compare, markdown
from most.eval.judges import load_judge
from most.eval.preference import (
    PairsConfig,
    build_pairs,
    check_no_heldout,
    heldout_texts,
    pair_stats,
    sample_chunks,
    sample_sqa,
    sample_tts,
    sqa_items,
    tts_items,
)
from most.generate import Sampling, SpeechLM
from most.io import atomic_write_json, atomic_write_text, read_json, save_dataset
from most.run import FINGERPRINT_FILE, Run, changes, fingerprint, folder_id
from most.stages.eval import (
    AudioLM,
    EvalSettings,
    Judges,
    Models,
    Sizes,
    eval_fingerprint,
    evaluate_into,
)
from most.train import sources as S
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.dpo import DPOConfig, DPOModule, reference_logps
from most.train.dryrun import load_config, print_dry_run
from most.train.optim import LoraConfig, OptimConfig, apply_lora, select_trainable
from most.train.pairs import PairDataModule
from most.train.runner import StagePaths, export_hf, fit, global_zero, prepare, write_metrics
from most.train.sharding import check_available, loads_weights
from most.train.stage import TrainDtype, load_model, pad_id

STAGE = "stage3"
_DEFAULT_SAMPLES = Sampling(max_new_tokens=200, do_sample=True, temperature=1.0, batch_size=16)
_DEFAULT_EVAL_SAMPLING = Sampling(max_new_tokens=200, batch_size=16)


@dataclass(frozen=True)
class Comparison:
    """The evals before and after (``--evaluation.*``): both with these settings, as ``most eval``
    reads them (``recipes/<family>/eval.yaml`` has what each key means)."""

    sizes: Sizes = field(default_factory=Sizes)
    judges: Judges = field(default_factory=Judges)
    audio_lm: AudioLM = field(default_factory=AudioLM)
    sampling: Sampling = _DEFAULT_EVAL_SAMPLING


_DEFAULT_PairsConfig = PairsConfig()
_DEFAULT_DPOConfig = DPOConfig()
_DEFAULT_OptimConfig = OptimConfig()
_DEFAULT_TrainerConfig = TrainerConfig()
_DEFAULT_LoraConfig = LoraConfig()
_DEFAULT_Comparison = Comparison()


def stage3(
    run: Path,
    init: Path | None = None,
    pairs: PairsConfig = _DEFAULT_PairsConfig,
    sampling: Sampling = _DEFAULT_SAMPLES,
    dpo: DPOConfig = _DEFAULT_DPOConfig,
    optim: OptimConfig = _DEFAULT_OptimConfig,
    trainer: TrainerConfig = _DEFAULT_TrainerConfig,
    lora: LoraConfig = _DEFAULT_LoraConfig,
    evaluation: Comparison = _DEFAULT_Comparison,
    device: str = "auto",
    threads: int = 0,
    force: bool = False,
    dry_run: bool = False,
) -> dict | None:
    """Preference tuning of the stage-2 model (``init`` = RUN/stage2/hf) on pairs of its own
    samples ranked by the judge; writes ``RUN/stage3/hf`` and ``RUN/stage3/compare.json``.

    ``sampling``: how candidates are drawn (``do_sample`` must be on). ``device``: where the
    candidates are sampled, scored and the reference log-probs computed (``auto``: the GPU when
    there is one); the evals use it too. ``threads``: torch intra-op threads for sampling and the
    evals (0 = torch's default; training follows ``trainer.threads``).
    """
    R = Run(run)
    init = Path(init) if init else R.hf("stage2")
    if not sampling.do_sample:
        raise ValueError("sampling.do_sample must be true: greedy decoding gives one candidate")
    if dry_run:
        rows = DataConfig(batch_size=2 * dpo.batch_size, max_len=dpo.max_len)
        print_dry_run(load_config(init), rows, trainer, optim, lora)
        return None
    check_available(trainer.strategy)
    if threads:
        torch.set_num_threads(threads)
    inputs = dict(init=folder_id(init), units=R.output_id("units"), data=R.output_id("data"))
    if pairs.judge == "ctc":
        inputs["judge"] = R.output_id("judge")
    settings = dict(
        pairs=pairs, sampling=sampling, dpo=dpo, optim=optim, trainer=trainer, lora=lora
    )
    settings["evaluation"] = evaluation
    paths = prepare(R, STAGE, fingerprint(settings, inputs), force) or StagePaths(R.stage(STAGE))
    if not paths.finished():
        ds = make_pairs(R, init, paths.root, pairs, sampling, dpo, trainer, device)
        train(R, init, paths, ds, dpo, optim, trainer, lora)
    if not global_zero():  # the other ranks of a multi-process run: rank 0 evaluates
        return None
    return compare_models(R, init, paths, evaluation, device)


def make_pairs(
    R: Run,
    init: Path,
    root: Path,
    cfg: PairsConfig,
    sampling: Sampling,
    dpo: DPOConfig,
    trainer: TrainerConfig,
    device: str,
) -> datasets.Dataset:
    """``root/pairs`` (read back when it is there): sample, rank, pair, reference log-probs."""
    folder = root / "pairs"
    if (folder / "dataset_info.json").is_file():
        print(f"most {STAGE}: reading the pairs in {folder}")
        return datasets.load_from_disk(str(folder))
    lm = SpeechLM.load(init, units=R.units, device=device)
    judge = load_judge(cfg.judge, R.root)
    held = heldout_texts(R.root)
    h = lm.layout.unit_tokenizer_hash
    records: list[dict] = []
    samples, k = root / "samples", cfg.samples
    if cfg.tts:
        items = tts_items(R.load_units("speech", h), held, cfg.tts, cfg.seed)
        tts = partial(sample_tts, lm, judge, k)
        records += sample_chunks(samples, "tts", items, cfg.chunk, tts, sampling, k)
    if cfg.sqa:
        items = sqa_items(R.load_units("sqa", h), held, cfg.sqa, cfg.seed)
        sqa = partial(sample_sqa, lm, judge, k)
        offset = replace(sampling, seed=sampling.seed + 100_000)  # not the TTS chunks' seeds
        records += sample_chunks(samples, "s2s", items, cfg.chunk, sqa, offset, k)
    rows = build_pairs(records)
    check_no_heldout(rows, held, str(folder))
    if not rows:
        raise ValueError(
            f"{root}: no preference pairs: every prompt's candidates ranked the same; sample more "
            "(pairs.samples) or more varied ones (sampling.temperature)"
        )
    weights, autocast = reference_dtypes(trainer.resolved_precision())
    model = lm.model.to(weights)
    pad = lm.pad_id
    chosen, rejected = reference_logps(model, rows, pad, dpo, autocast)
    for row, c, r in zip(rows, chosen, rejected, strict=True):
        row["ref_chosen_logps"], row["ref_rejected_logps"] = c, r
    ds = datasets.Dataset.from_list(rows)
    atomic_write_json(root / "pairs.json", pair_stats(records, rows))
    save_dataset(ds, folder)
    return datasets.load_from_disk(str(folder))


def reference_dtypes(precision: str) -> tuple[torch.dtype, torch.dtype | None]:
    """``(weights, autocast)`` dtypes under which the reference log-probs are computed so that
    they equal the policy's at step 0 under the trainer's ``precision``."""
    half = {"bf16": torch.bfloat16, "16": torch.float16}
    kind, _, mode = precision.partition("-")
    if kind in half and mode == "mixed":
        return torch.float32, half[kind]
    if kind in half and mode == "true":
        return half[kind], None
    return torch.float32, None


def train(
    R: Run,
    init: Path,
    paths: StagePaths,
    pairs: datasets.Dataset,
    dpo: DPOConfig,
    optim: OptimConfig,
    trainer: TrainerConfig,
    lora: LoraConfig,
) -> None:
    """DPO from ``init`` on ``pairs`` with resume, then the HF export (as
    :func:`most.train.stage.train_and_export`)."""
    model, tok, layout = load_model(init, empty=not loads_weights(trainer.strategy))
    S.check_layout(R.root, layout)
    L.seed_everything(dpo.seed, verbose=False)
    if lora.enabled:
        model = apply_lora(model, lora)
    select_trainable(model, optim)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    dm = PairDataModule(pairs, dpo, pad_id(tok))
    module = DPOModule(model, optim, dpo, trainer.max_steps, layout.text_vocab_size)
    pl_trainer, metrics = fit(paths, module, dm, trainer, [TrainDtype()])
    export_hf(module.model, tok, layout, paths.hf, module.skeleton)
    if pl_trainer.is_global_zero:
        metrics["trainable_params"] = n_trainable
        metrics["pairs"] = len(pairs)
        write_metrics(paths, metrics)


def compare_models(R: Run, init: Path, paths: StagePaths, cfg: Comparison, device: str) -> dict:
    """Eval of ``init`` and of ``paths.hf`` with the same settings -> ``compare.json``/``.md``."""
    common = dict(sizes=cfg.sizes, judges=cfg.judges, audio_lm=cfg.audio_lm, sampling=cfg.sampling)
    before_cfg = EvalSettings(models=Models(model=init), **common)
    after_cfg = EvalSettings(models=Models(model=paths.hf), **common)
    before = _report_of_run(R, before_cfg)
    if before is None:
        before = _evaluate(paths.root / "eval_before", R, before_cfg, device)
    after = _evaluate(paths.root / "eval_after", R, after_cfg, device)
    result = compare(before, after, cfg.judges.names)
    result["models"] = {"before": str(init), "after": str(paths.hf)}
    result["reports"] = {"before": before["meta"]["model"], "after": after["meta"]["model"]}
    if (paths.root / "pairs.json").is_file():
        result["pairs"] = read_json(paths.root / "pairs.json")
    if (paths.root / "metrics.json").is_file():
        result["training"] = read_json(paths.root / "metrics.json")
    atomic_write_json(paths.root / "compare.json", result)
    atomic_write_text(paths.root / "compare.md", markdown(result))
    print(f"most {STAGE}: before (stage 2) -> after (stage 3)\n{markdown(result)}")
    return result


def _report_of_run(R: Run, settings: EvalSettings) -> dict | None:
    """``RUN/eval/report.json`` when it is a report of the same model made with ``settings``."""
    record = R.recorded("eval")
    if record is None or not R.report.is_file():
        return None
    if changes(record, eval_fingerprint(R.root, settings), ignore=("models.model",)):
        return None
    print(f"most {STAGE}: the stage-2 side is {R.report} (same model and settings)")
    return read_json(R.report)


def _evaluate(out: Path, R: Run, settings: EvalSettings, device: str) -> dict:
    """The report in ``out``, made again when it was made from other settings (a stage-3 output:
    it follows the stage's ``evaluation`` section)."""
    record = out / FINGERPRINT_FILE
    stale = record.is_file() and bool(
        changes(read_json(record), eval_fingerprint(R.root, settings))
    )
    return evaluate_into(out, R.root, settings, device, force=stale)
