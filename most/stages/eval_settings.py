"""What decides a ``most eval`` report: the settings of :func:`most.stages.eval.evaluate`, by
section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from most.generate import Sampling
from most.run import Run

DEFAULT_SAMPLING = Sampling(max_new_tokens=200, batch_size=16)


@dataclass(frozen=True)
class Models:
    """What is evaluated (``--models.*``)."""

    model: Path | None = None
    """Adapted model folder; None = ``RUN/stage2/hf``."""
    base: Path | None = None
    """Base text LM for ``text.ppl_base``; None = ``RUN/base/hf`` (skipped if missing)."""
    units: Path | None = None
    """Unit tokenizer folder; None = ``RUN/units``."""

    def model_dir(self, run: Path) -> Path:
        """The folder evaluated: ``model``, else ``RUN/stage2/hf``."""
        return Path(self.model or Run(run).hf("stage2"))


@dataclass(frozen=True)
class Sizes:
    """Items per section (``--sizes.*``); 0 skips the section."""

    asr: int = 100
    """Utterances per ASR test split."""
    tts: int = 40
    """Sentences spoken by the model and judged."""
    sqa: int = 60
    """Questions per spoken-QA split (heldout and train)."""
    text: int = 100
    """Held-out text paragraphs for perplexity."""
    wuggy: int = 60
    blimp: int = 60
    router: int = 32
    """Teacher-forced ASR+TTS examples read with router telemetry on."""
    music: int = 20
    """Captions of ``music/test`` played by the model (runs whose model has music only)."""
    tasks: int = 20
    """Items per UniAudio task (vtts, vc, se; only those the model was trained on)."""

    def __post_init__(self) -> None:
        if min(vars(self).values()) < 0:
            raise ValueError("sizes.* must be >= 0")


@dataclass(frozen=True)
class Judges:
    """TTS judges (``--judges.*``)."""

    names: list[str] = field(default_factory=lambda: ["ctc", "pocketsphinx"])
    """``ctc`` (RUN/judge), ``pocketsphinx``, or local HF ASR folders (Whisper, HuBERT-CTC)."""
    sqa: str = "ctc"
    """Judge that transcribes spoken S->S answers (one of ``names``)."""
    peers: list[str] = field(default_factory=list)
    """Recognisers that also read the ASR test audio, reported beside the model's WER
    (``asr_peers``): e.g. ``pocketsphinx`` on a real corpus."""


@dataclass(frozen=True)
class AudioLM:
    """Minimal pairs (``--audio_lm.*``)."""

    voice: str = "en-us+m3:160:50"
    """espeak-ng voice (``variant:rate:pitch``) that speaks generated pairs."""
    wuggy_dir: Path | None = None
    """Real sWUGGY folder (``gold.csv`` + wavs); replaces the generated word pairs."""
    blimp_dir: Path | None = None
    """Real sBLIMP folder; replaces the generated sentence pairs."""
    wuggy_per_word: int = 3
    """Generated pseudo-words per real word (:func:`most.eval.audio_lm.wuggy_pairs`)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.wuggy_per_word < 1:
            raise ValueError(f"audio_lm.wuggy_per_word must be >= 1, got {self.wuggy_per_word}")


@dataclass(frozen=True)
class SpokenQASets:
    """Real spoken-QA sets (Llama Q / WebQ / TriviaQA layouts) by name -> local folder, scored
    S->T and S->S (spoken answers transcribed by ``judges.sqa``)."""

    sets: dict[str, Path] = field(default_factory=dict)
    n: int = 100


DEFAULT_MODELS, DEFAULT_SIZES, DEFAULT_JUDGES = Models(), Sizes(), Judges()
DEFAULT_AUDIO_LM, DEFAULT_QA_SETS = AudioLM(), SpokenQASets()


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides a report (the sections of :func:`evaluate`)."""

    models: Models = DEFAULT_MODELS
    sizes: Sizes = DEFAULT_SIZES
    judges: Judges = DEFAULT_JUDGES
    audio_lm: AudioLM = DEFAULT_AUDIO_LM
    qa_sets: SpokenQASets = DEFAULT_QA_SETS
    sampling: Sampling = DEFAULT_SAMPLING
