"""Text to music and music continuation with an adapted model that has the ``music`` modality,

    lm = MusicLM.load("runs/music/stage2/hf")      # music tokenizer: RUN/units/music/tokenizer
    lm.ttm(["a slow waltz in D minor at 72 bpm on a violin: D4 F4 A4"]) -> [float32 (n,) 16 kHz]

Prompts are :class:`most.data.prompts.Prompts`' ``ttm`` formats, decoding is
:meth:`most.generate.SpeechLM.generate` (batched, KV cache), stopping on ``<|end_of_music|>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch

from most.audio import SAMPLE_RATE, write_wav
from most.corpora.schema import decode_audio
from most.eval.music import score_audio, summarize
from most.generate import GREEDY, Sampling, SpeechLM
from most.layout import END_OF_MUSIC, MUSIC, LayoutError
from most.progress import progress
from most.run import Run
from most.threads import single_thread
from most.units import UnitTokenizer, load_tokenizer
from most.units.base import TOKENIZER_FILE
from most.units.music import tokenizer_dir

N_SAMPLES = 3
#: Folder name of the music tokenizer inside a release, and under ``RUN/units``.
MUSIC_UNITS_DIR = "music_tokenizer"


def find_music_tokenizer(model_dir: Path, music_units: str | Path | None) -> UnitTokenizer:
    """``music_units`` (a tokenizer folder, ``RUN/units/music`` or ``RUN``), else the release's
    ``music_tokenizer/`` or, for a model of a run (``RUN/<stage>/hf``), the run's; a clear error
    when there is none."""
    candidates = [model_dir / MUSIC_UNITS_DIR, tokenizer_dir(Run(model_dir.parent.parent))]
    if music_units is not None:
        p = Path(music_units)
        candidates = [p, p / "tokenizer", tokenizer_dir(Run(p))]
    for folder in candidates:
        if (folder / TOKENIZER_FILE).is_file():
            return load_tokenizer(folder)
    where = music_units if music_units is not None else model_dir / MUSIC_UNITS_DIR
    raise FileNotFoundError(
        f"{where}: no music tokenizer; pass --music_units RUN/units/music (made by `most units`)"
    )


class MusicLM:
    """Text to music with an adapted model whose layout has the ``music`` modality.

    The caption is laid out as training laid it out (:meth:`Prompts.ttm_prompt`); the model writes
    music units until ``<|end_of_music|>`` (or ``max_new_tokens``) and the music tokenizer decodes
    them to 16 kHz audio. ``continue_music`` does the same after the start of a melody.
    """

    def __init__(self, lm: SpeechLM, music: UnitTokenizer) -> None:
        if MUSIC not in lm.layout.modalities:
            raise LayoutError("this model has no music modality (adapt with --music=true)")
        lm.layout.check_units(music.hash, where="music tokenizer", modality=MUSIC)
        self.lm, self.music = lm, music

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        music_units: str | Path | None = None,
        device: str = "auto",
    ) -> MusicLM:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: no model folder (config.json missing)")
        music = find_music_tokenizer(model_dir, music_units)  # before any weights are read
        return cls(SpeechLM.load(model_dir, units=None, device=device), music)

    def _stops(self) -> list[int]:
        return [self.lm.layout.special_id(END_OF_MUSIC), self.lm.prompts.eos_id]

    def units_of(self, ids: Sequence[int]) -> list[int]:
        return self.lm.layout.ids_to_units(torch.as_tensor(list(ids)), MUSIC).tolist()

    def ttm_units(
        self, captions: Sequence[str], sampling: Sampling = GREEDY, **kw
    ) -> list[list[int]]:
        if any(not c.strip() for c in captions):
            raise ValueError("empty caption: nothing to play")
        if sampling.guidance != 1:  # its unconditional branch is the speech LM's context
            raise ValueError("sampling.guidance is for speech; text to music takes none (use 1)")
        prompts = [self.lm.prompts.ttm_prompt(c) for c in captions]
        return [self.units_of(a) for a in self.lm.generate(prompts, self._stops(), sampling, **kw)]

    def continue_units(
        self, starts: Sequence[Sequence[int]], sampling: Sampling = GREEDY, **kw
    ) -> list[list[int]]:
        prompts = [self.lm.prompts.music_continue_prompt(u) for u in starts]
        return [self.units_of(a) for a in self.lm.generate(prompts, self._stops(), sampling, **kw)]

    def decode(self, units: Sequence[int]) -> np.ndarray:
        """Music unit indices -> float32 audio at 16 kHz (empty for no units)."""
        if len(units) == 0:
            return np.zeros(0, dtype=np.float32)
        with single_thread():
            return self.music.decode(torch.as_tensor(list(units), dtype=torch.long)).numpy()

    def ttm(self, captions: Sequence[str], sampling: Sampling = GREEDY, **kw) -> list[np.ndarray]:
        return [self.decode(u) for u in self.ttm_units(captions, sampling, **kw)]


def evaluate_ttm(
    lm: MusicLM,
    music: datasets.Dataset,
    n: int,
    sampling: Sampling = GREEDY,
    samples: Path | None = None,
) -> dict:
    """Text to music on the first ``n`` captions of ``music`` (``RUN/data/music`` ``test``).

    Three readings of every caption, each scored from its audio (:mod:`most.eval.music`):
    ``original`` (the rendered melody: how exact the scorer is), ``resynth`` (the melody through
    the music tokenizer and back: the ceiling of any model with these units) and the model's
    own music, whose means are the top-level ``note_acc``, ``key_acc``, ``tempo_acc`` and ``n``.
    ``samples``: the first :data:`N_SAMPLES` model outputs are written there as wavs.
    """
    rows = music.select(range(min(n, len(music)))).select_columns(["id", "text", "music"])
    captions = list(rows["text"])
    originals = [decode_audio(r["music"]) for r in rows]
    with single_thread():
        resynth = [lm.decode(lm.music.encode(w, SAMPLE_RATE).tolist()) for w in originals]
    with progress() as bar:
        task = bar.add_task("text to music", total=len(captions))
        written = lm.ttm_units(captions, sampling, on_batch=lambda k: bar.advance(task, k))
    outputs = [lm.decode(u) for u in written]
    if samples is not None:
        for i, (row_id, wav) in enumerate(zip(rows["id"], outputs, strict=True)):
            if i < N_SAMPLES and wav.size:
                write_wav(Path(samples) / f"ttm_{row_id}.wav", wav)
    model = [score_audio(w, c) for w, c in zip(outputs, captions, strict=True)]
    out = summarize(model)
    out["original"] = summarize(
        [score_audio(w, c) for w, c in zip(originals, captions, strict=True)]
    )
    out["resynth"] = summarize([score_audio(w, c) for w, c in zip(resynth, captions, strict=True)])
    out["units_per_caption"] = (
        round(float(np.mean([len(u) for u in written])), 1) if written else 0.0
    )
    out["examples"] = [
        {"caption": c, "notes_heard": list(s.notes), "bpm_heard": s.bpm}
        for c, s in list(zip(captions, model, strict=True))[:N_SAMPLES]
    ]
    return out


def evaluate_continuation(
    lm: MusicLM, music: datasets.Dataset, n: int, sampling: Sampling = GREEDY, share: float = 0.5
) -> dict:
    """Music continuation on the first ``n`` melodies of ``music``: the model hears the first
    ``share`` of each melody's units and writes the rest; the whole (heard + written) is decoded
    and scored against the caption. ``prompt_only`` scores the heard part alone: what a model that
    writes nothing gets (about ``share`` of the notes)."""
    if not 0 < share < 1:
        raise ValueError(f"continuation share must be in (0, 1), got {share}")
    rows = music.select(range(min(n, len(music)))).select_columns(["text", "music"])
    captions = list(rows["text"])
    with single_thread():
        units = [lm.music.encode(decode_audio(r["music"]), SAMPLE_RATE).tolist() for r in rows]
    starts = [u[: max(1, round(share * len(u)))] for u in units]
    with progress() as bar:
        task = bar.add_task("music continuation", total=len(starts))
        written = lm.continue_units(starts, sampling, on_batch=lambda k: bar.advance(task, k))
    whole = [lm.decode(s + w) for s, w in zip(starts, written, strict=True)]
    heard = [lm.decode(s) for s in starts]
    out = summarize([score_audio(w, c) for w, c in zip(whole, captions, strict=True)])
    out["prompt_only"] = summarize(
        [score_audio(w, c) for w, c in zip(heard, captions, strict=True)]
    )
    return out
