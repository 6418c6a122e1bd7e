"""``most stage1``: MoST stage 1, ASR + TTS + text-LM (+ speech-LM) mixture on the adapted model,
with text-to-music and music continuation when the run has music (``recipes/music``), and with
the adapted model as the global model of a multi-scale decoder on multi-codebook units
(``multiscale.enabled``, ``recipes/multiscale``)."""

from __future__ import annotations

from pathlib import Path

from most.moe.adapter import AdapterConfig
from most.multiscale import MostMultiScale
from most.multiscale.batches import FrameBatches, MultiScaleSettings
from most.run import Run
from most.train import features as F
from most.train import sources as S
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.dryrun import load_config, print_dry_run
from most.train.optim import LoraConfig, OptimConfig
from most.train.paraling import paraling_replay
from most.train.stage import (
    STAGE1_RATIOS,
    SpeechStage,
    music_sources,
    pad_id,
    start_speech_stage,
    text_qa_replay,
    train_and_export,
)
from most.train.uniaudio import task_sources
from most.units.frontend import FrontendConfig

_DEFAULT_DataConfig = DataConfig()
_DEFAULT_LoraConfig = LoraConfig()
_DEFAULT_OptimConfig = OptimConfig()
_DEFAULT_TrainerConfig = TrainerConfig()
_DEFAULT_AdapterConfig = AdapterConfig()
_DEFAULT_FrontendConfig = FrontendConfig()
_DEFAULT_MultiScaleSettings = MultiScaleSettings()


def stage1(
    run: Path,
    init: Path | None = None,
    data: DataConfig = _DEFAULT_DataConfig,
    optim: OptimConfig = _DEFAULT_OptimConfig,
    trainer: TrainerConfig = _DEFAULT_TrainerConfig,
    lora: LoraConfig = _DEFAULT_LoraConfig,
    adapter: AdapterConfig = _DEFAULT_AdapterConfig,
    audio_frontend: FrontendConfig = _DEFAULT_FrontendConfig,
    multiscale: MultiScaleSettings = _DEFAULT_MultiScaleSettings,
    force: bool = False,
    dry_run: bool = False,
) -> None:
    """MoST stage 1: ASR + TTS + text-LM mixture on the adapted model (``init`` = RUN/adapt/hf).

    ``adapter``/``audio_frontend``: with ``adapter.kind`` moe or dense, ASR reads frozen audio
    features through an audio adapter instead of units (:mod:`most.train.features`).
    ``multiscale``: with ``enabled``, the model trained and exported is a
    :class:`~most.multiscale.MostMultiScale` over the adapted one, on batches of frames
    (``data.max_len`` then counts positions, a frame being one)."""
    init = Path(init) if init else Run(run).hf("adapt")
    if dry_run:
        print_dry_run(load_config(init), data, trainer, optim, lora)
        return
    R = Run(run)
    settings = dict(data=data, optim=optim, trainer=trainer, lora=lora)
    if adapter.kind != "none":  # listed only when used: unit-only runs keep their fingerprints
        settings |= dict(adapter=adapter, audio_frontend=audio_frontend)
    if multiscale.enabled:  # likewise
        settings["multiscale"] = multiscale
        check_multi_scale(R, optim, lora, adapter)
    st = start_speech_stage(R, "stage1", init, settings, force)
    if st is None:
        return
    p, layout = st.prompts, st.layout
    speech = R.load_units("speech", layout.unit_tokenizer_hash)
    # ids a frame of the units: the augmentations keep frames whole
    frame = R.unit_codebooks()
    text = R.load_data("text")
    train = [
        S.asr(p, speech["train"]),
        S.tts(p, speech["train"], data.tts_history_noise, frame),
        S.text_lm(p, text["train"]),
        S.speech_lm(p, S.speech_lm_train(speech), data.speech_lm_spans, frame),
    ]
    train += text_qa_replay(run, p, layout, STAGE1_RATIOS, data)
    train += music_sources(run, p, layout, STAGE1_RATIOS, data, "train")
    train += task_sources(run, p, speech, {**STAGE1_RATIOS, **data.ratios})  # recipes/uniaudio
    val = [S.asr(p, speech["dev"]), S.tts(p, speech["dev"]), S.text_lm(p, text["heldout"])]
    fe = F.attach(st.model, adapter, audio_frontend, data.seed)
    if fe is not None:  # ASR reads the audio through the adapter
        audio = R.load_data("speech")
        train = F.replace(train, F.asr(p, audio["train"], fe, adapter.stack))
        val = F.replace(val, F.asr(p, audio["dev"], fe, adapter.stack))
    train += paraling_replay(R.root, p, STAGE1_RATIOS, data.ratios, fe, adapter.stack)
    batches = multi_scale(st, frame, multiscale, data) if multiscale.enabled else None
    train_and_export(
        st.paths, st.model, st.tok, layout, train, STAGE1_RATIOS, val, data, optim, trainer, lora,
        batches,
    )  # fmt: skip


def check_multi_scale(R: Run, optim: OptimConfig, lora: LoraConfig, adapter: AdapterConfig) -> None:
    """Refuses, before any weight is read, what a multi-scale stage 1 cannot train."""
    if R.unit_codebooks() < 2:
        raise ValueError(
            f"multiscale.enabled needs units with several codebooks (rvq, codec); "
            f"{R.unit_tokenizer} has one"
        )
    if optim.loss_weighting != "token":
        raise ValueError(
            "multiscale.enabled trains the model's own loss (global + local): set "
            "optim.loss_weighting=token"
        )
    if lora.enabled or adapter.kind != "none":
        raise ValueError("multiscale.enabled takes neither lora nor an audio adapter")


def multi_scale(st: SpeechStage, c: int, ms: MultiScaleSettings, data: DataConfig) -> FrameBatches:
    """Puts ``st.model`` under a fresh local model (:class:`MostMultiScale`); returns the mixture's
    frame batches."""
    st.model = MostMultiScale.from_global(st.model, c, **ms.local())
    return FrameBatches(st.layout, c, data.max_len, pad_id(st.tok), data.batch_size, data.pack)
