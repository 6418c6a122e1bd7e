"""The training path the three training stages share: mixture -> Lightning fit with resume -> HF export.

:func:`train_and_export` builds the mixture, wraps the model in
:class:`~most.train.module.CausalLMModule`, fits it with resume (:mod:`most.train.runner`) and writes
the HF folder; :func:`load_model` reads a folder written by ``most adapt`` or a previous stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy
from transformers import AutoTokenizer

import most.modeling  # noqa: F401  (registers the adapted model with transformers' Auto classes)
from most.data.prompts import Example, Prompts
from most.io import read_json
from most.layout import MUSIC, TokenLayout
from most.run import Run, fingerprint, folder_id
from most.train import sources as S
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig, MixtureDataModule
from most.train.mixing import Collate, Source
from most.train.module import CausalLMModule
from most.train.optim import LoraConfig, OptimConfig, apply_lora, select_trainable
from most.train.runner import StagePaths, export_hf, fit, prepare, write_metrics
from most.train.sharding import check_available, loads_weights
from most.train.textqa import qa_text
from most.train.uniaudio import TASKS as UNIAUDIO_TASKS
from most.units.music import load_music_units
from most.weights import AUTO, load_causal_lm

BASE_RATIOS = {"text_lm": 0.9, "text_qa": 0.1}
STAGE1_RATIOS = {
    "asr": 0.4, "tts": 0.4, "text_lm": 0.2, "text_qa": 0.0, "speech_lm": 0.0, "paraling": 0.0,
    "ttm": 0.0, "music_continue": 0.0,  # music: on in recipes/music (needs the music modality)
    **dict.fromkeys(UNIAUDIO_TASKS, 0.0),  # on in recipes/uniaudio (needs its task markers)
}  # fmt: skip
STAGE2_RATIOS = {
    "s2t": 0.4,
    "s2s": 0.4,
    "instruct": 0.1,
    "asr": 0.05,
    "tts": 0.05,
    "text_lm": 0.0,
    "text_qa": 0.0,
    "speech_lm": 0.0,
    "ttm": 0.0,
    "music_continue": 0.0,
    "paraling": 0.0,
    **dict.fromkeys(UNIAUDIO_TASKS, 0.0),
}


@dataclass
class SpeechStage:
    """A speech training stage ready to build its mixture: where it writes, and the model it
    starts from with that model's tokenizer, token layout and prompt formats."""

    paths: StagePaths
    model: torch.nn.Module
    tok: object
    layout: TokenLayout
    prompts: Prompts


def start_speech_stage(
    run: Run, stage: str, init: Path, settings: dict, force: bool
) -> SpeechStage | None:
    """Fingerprint ``settings`` with the inputs every speech stage reads (the ``init`` model, the
    run's units and data), then :func:`~most.train.runner.prepare`: None when the stage is up to
    date; else the ``init`` model, refused unless its layout matches the run's units. The
    strategy of ``settings["trainer"]`` is checked before any weight is read, and decides whether
    this process reads them (:func:`~most.train.sharding.loads_weights`; else the model is on the
    ``meta`` device, see :func:`load_model`)."""
    strategy = settings["trainer"].strategy
    check_available(strategy)
    inputs = dict(init=folder_id(init), units=run.output_id("units"), data=run.output_id("data"))
    paths = prepare(run, stage, fingerprint(settings, inputs), force)
    if paths is None:
        return None
    config = init / "config.json"
    if config.is_file() and read_json(config).get("model_type") == "most_multiscale":
        raise ValueError(
            f"{init}: a multi-scale model; the speech stages train from a flat adapted model "
            "(stage 1 builds the multi-scale one itself with multiscale.enabled=true)"
        )
    model, tok, layout = load_model(init, empty=not loads_weights(strategy))
    S.check_layout(run.root, layout)
    return SpeechStage(paths, model, tok, layout, Prompts(layout, tok))


def train_and_export(
    paths: StagePaths,
    model: torch.nn.Module,
    tok,
    layout: TokenLayout | None,
    train: list[Source],
    defaults: dict[str, float],
    val: list[Source],
    data: DataConfig,
    optim: OptimConfig,
    trainer: TrainerConfig,
    lora: LoraConfig | None = None,
    collate: Collate | None = None,
) -> dict | None:
    """Fit and export; returns the run metrics on the global-zero process, None elsewhere.
    ``collate``: how batches are built (None: padded or packed flat ids, ``data.pack``)."""
    train_sources, train_ratios = S.mixture(train, defaults, data.ratios)
    val_ratios = [1.0] * len(val)
    # torch's global generator starts from a random seed in this process (an import reseeds it),
    # and LoRA's initial adapters and dropout draw from it: seed it, so the same recipe gives the
    # same model on every run, and every rank (FSDP shards each rank's own copy) the same start.
    L.seed_everything(data.seed, verbose=False)
    if lora is not None and lora.enabled:
        model = apply_lora(model, lora)
    select_trainable(model, optim)
    # Counted now: the export merges LoRA adapters away, and their parameters with them.
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    dm = MixtureDataModule(train_sources, train_ratios, val, val_ratios, data, pad_id(tok), collate)
    n_old = layout.text_vocab_size if layout is not None else None
    module = CausalLMModule(model, optim, trainer.max_steps, n_old)
    pl_trainer, metrics = fit(paths, module, dm, trainer, [TrainDtype()])
    export_hf(module.model, tok, layout, paths.hf, module.skeleton)  # every rank: a collective
    if not pl_trainer.is_global_zero:
        return None
    metrics["trainable_params"] = n_trainable
    metrics["ratios"] = dict(zip([s.task for s in train_sources], train_ratios, strict=True))
    write_metrics(paths, metrics)
    return metrics


def pad_id(tok) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its end of sequence."""
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def text_qa_replay(
    run: Path,
    p: Prompts,
    layout: TokenLayout,
    defaults: dict,
    data: DataConfig,
    sentences: bool = True,
) -> list[Source]:
    """The ``text_qa`` source of a speech stage (``qa_train`` only), read only when its ratio > 0."""
    if {**defaults, **data.ratios}.get("text_qa", 0.0) <= 0:
        return []
    return [
        S.text_qa(p, Run(run).load_units("sqa", layout.unit_tokenizer_hash)["qa_train"], sentences)
    ]


def music_sources(
    run: Path, p: Prompts, layout: TokenLayout, defaults: dict, data: DataConfig, split: str
) -> list[Source]:
    """``ttm`` and ``music_continue`` on ``RUN/units/music`` ``split``, each only when its ratio
    is > 0; the layout must have the music modality (``most adapt --music=true``)."""
    ratios = {**defaults, **data.ratios}
    wanted = [t for t in ("ttm", "music_continue") if ratios.get(t, 0.0) > 0]
    if not wanted:
        return []
    if MUSIC not in layout.modalities:
        raise ValueError(
            f"data.ratios asks for {', '.join(wanted)}, but the model has no music modality; "
            "adapt with --music=true"
        )
    music = load_music_units(Run(run), layout.unit_tokenizer_hash_of(MUSIC))[split]
    build = {"ttm": S.ttm, "music_continue": S.music_continue}
    return [build[t](p, music) for t in wanted]


def text_qa_source(p: Prompts, ds) -> Source:
    ds = ds.select_columns(["text", "answer"])

    def build(row: dict) -> Example:
        ex = p.text_lm(qa_text(row["text"], row["answer"]))
        return Example(ex.input_ids, ex.labels, "text_lm")

    return Source("text_qa", ds, build)


def load_model(init: Path, dtype: str | torch.dtype = AUTO, empty: bool = False):
    """Model, tokenizer and token layout of an HF folder written by ``most adapt`` or a stage.

    The model comes in ``dtype`` (``"auto"``: the checkpoint's own, read with host memory bounded
    by one copy, :func:`most.weights.load_causal_lm`); :class:`TrainDtype` then gives it the dtype
    the trainer's precision needs, on the training device. ``empty=True`` builds it on the
    ``meta`` device without reading a weight, for the ranks of a sharded strategy (fsdp,
    deepspeed_stage_3) that receive their shards from a rank that loaded it: the caller
    materialises it there (``to_empty`` on the device, then a broadcast or
    ``set_model_state_dict(..., broadcast_from_rank0=True)``).
    """
    if not (init / "config.json").is_file():
        raise FileNotFoundError(f"{init}: no HF model folder (run the previous stage first)")
    layout = TokenLayout.load(init)
    model = load_causal_lm(init, dtype, empty)
    tok = AutoTokenizer.from_pretrained(str(init))
    rows = model.get_input_embeddings().num_embeddings
    if rows < layout.vocab_size:
        raise ValueError(f"{init}: embedding has {rows} rows, layout needs {layout.vocab_size}")
    return model, tok, layout


class TrainDtype(L.Callback):
    """Gives the weights the dtype the trainer's precision trains in, on the training device.

    Weights load in the checkpoint's dtype (bf16 for most published MoE models). ``32-true`` and
    the ``*-mixed`` precisions train fp32 weights (autocast makes the 16-bit copies), so narrower
    weights are moved to the device first and widened there: no rank holds an fp32 copy in host
    RAM for a GPU run. ``bf16-true`` / ``16-true`` are converted by Lightning's own precision
    plugin. DeepSpeed and FSDP are left alone: their plugins own the dtype of their shards. Runs
    in ``setup``, before a resumed checkpoint is restored into the weights.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        strategy = trainer.strategy
        if not isinstance(strategy, SingleDeviceStrategy | DDPStrategy) or isinstance(
            strategy, DeepSpeedStrategy
        ):
            return
        if trainer.precision.endswith("-true") and not trainer.precision.startswith("32"):
            return
        narrow = any(p.is_floating_point() and p.element_size() < 4 for p in pl_module.parameters())
        if narrow:
            pl_module.to(device=strategy.root_device)
            pl_module.to(dtype=torch.float32)


def maybe(load):
    try:
        return load()
    except FileNotFoundError:
        return None
