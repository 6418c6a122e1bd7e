"""``most stage2``: MoST stage 2, spoken-QA and text instruction tuning with ASR/TTS replay."""

from __future__ import annotations

from pathlib import Path

import datasets

from most.data.prompts import SpeechMode
from most.moe.adapter import AdapterConfig
from most.run import Run
from most.train import features as F
from most.train import sources as S
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.dryrun import load_config, print_dry_run
from most.train.optim import LoraConfig, OptimConfig
from most.train.paraling import paraling_replay
from most.train.stage import (
    STAGE2_RATIOS,
    music_sources,
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


def stage2(
    run: Path,
    init: Path | None = None,
    speech_mode: SpeechMode = "text_then_units",
    answer_sentences: bool = True,
    data: DataConfig = _DEFAULT_DataConfig,
    optim: OptimConfig = _DEFAULT_OptimConfig,
    trainer: TrainerConfig = _DEFAULT_TrainerConfig,
    lora: LoraConfig = _DEFAULT_LoraConfig,
    adapter: AdapterConfig = _DEFAULT_AdapterConfig,
    audio_frontend: FrontendConfig = _DEFAULT_FrontendConfig,
    force: bool = False,
    dry_run: bool = False,
) -> None:
    """MoST stage 2: spoken-QA and text instruction tuning with ASR/TTS replay.

    Only ``qa_train`` facts are used; ``qa_heldout`` stays out of training and validation.
    ``speech_mode``: spoken answers as text-then-units or units only.
    ``answer_sentences``: text answers are the data's ``answer_sentence`` (the fact as a statement)
    where it has one, else the short ``answer`` (see :func:`most.train.sources.answer_column`).
    ``adapter``/``audio_frontend``: with ``adapter.kind`` moe or dense, spoken questions and ASR
    read frozen audio features through an audio adapter (:mod:`most.train.features`).
    """
    init = Path(init) if init else Run(run).hf("stage1")
    if dry_run:
        print_dry_run(load_config(init), data, trainer, optim, lora)
        return
    R = Run(run)
    settings = dict(data=data, optim=optim, trainer=trainer, lora=lora)
    if adapter.kind != "none":  # listed only when used: unit-only runs keep their fingerprints
        settings |= dict(adapter=adapter, audio_frontend=audio_frontend)
    settings |= dict(speech_mode=speech_mode, answer_sentences=answer_sentences)
    text = _text_corpus(R, data)
    st = start_speech_stage(R, "stage2", init, settings, force)
    if st is None:
        return
    p, layout = st.prompts, st.layout
    speech = R.load_units("speech", layout.unit_tokenizer_hash)
    # ids a frame of the units: the augmentations keep frames whole
    frame = R.unit_codebooks()
    qa = R.load_units("sqa", layout.unit_tokenizer_hash)["qa_train"]
    instr = R.load_data("instructions")
    train = [
        S.s2t(p, qa, answer_sentences),
        S.s2s(p, qa, speech_mode, answer_sentences),
        S.instruct(p, instr["train"]),
        S.asr(p, speech["train"]),
        S.tts(p, speech["train"], data.tts_history_noise, frame),
        *([S.text_lm(p, text)] if text is not None else []),
        S.speech_lm(p, S.speech_lm_train(speech), data.speech_lm_spans, frame),
        *text_qa_replay(run, p, layout, STAGE2_RATIOS, data, answer_sentences),
        *music_sources(run, p, layout, STAGE2_RATIOS, data, "train"),  # replay (recipes/music)
        *task_sources(run, p, speech, {**STAGE2_RATIOS, **data.ratios}),  # recipes/uniaudio
    ]
    val = [S.instruct(p, instr["test"]), S.asr(p, speech["dev"]), S.tts(p, speech["dev"])]
    fe = F.attach(st.model, adapter, audio_frontend, data.seed)
    if fe is not None:  # spoken questions and ASR read the audio through the adapter
        audio, k = R.load_data("speech"), adapter.stack
        spoken = R.load_data("sqa")["qa_train"]
        train = F.replace(
            train,
            F.s2t(p, spoken, fe, k, answer_sentences),
            F.asr(p, audio["train"], fe, k),
        )
        val = F.replace(val, F.asr(p, audio["dev"], fe, k))
    train += paraling_replay(R.root, p, STAGE2_RATIOS, data.ratios, fe, adapter.stack)
    train_and_export(
        st.paths, st.model, st.tok, layout, train, STAGE2_RATIOS, val, data, optim, trainer, lora
    )


def _text_corpus(R: Run, data: DataConfig) -> datasets.Dataset | None:
    """``RUN/data/text`` train split, for the ``text_lm`` replay; a run without it (a real corpus
    ingested without ``--text.path``) trains without that replay unless its ratio asks for it."""
    if R.has_data("text"):
        return R.load_data("text")["train"]
    if {**STAGE2_RATIOS, **data.ratios}["text_lm"] > 0:
        raise FileNotFoundError(
            f"{R.dataset('text')}: data.ratios.text_lm > 0 needs a text corpus "
            "(most data --text.path=...)"
        )
    return None
