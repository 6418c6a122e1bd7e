"""``most music``: text to music with a model trained on the music modality.

    most music "a slow waltz in D minor at 72 bpm on a violin: D4 F4 A4 C#5 D5" -o out.wav \
        --model runs/music/stage2/hf

The caption is read first (:func:`most.corpora.music.parse_caption`: a note list with a word that
is not a note name is refused before the model loads); the model writes music units, the run's
music tokenizer (``RUN/units/music``, found beside ``RUN/<stage>/hf`` or given as
``--music_units``) decodes them to a 16 kHz wav. When the caption lists notes, the written audio is
scored against it (note, key and tempo accuracy, :mod:`most.eval.music`) and the scores printed.
"""

from __future__ import annotations

from pathlib import Path

from most.audio import SAMPLE_RATE, write_wav
from most.corpora.music import parse_caption
from most.eval.music import MusicScore, score_audio
from most.eval.ttm import MusicLM
from most.generate import Sampling

DEFAULT_MODEL = Path("runs/music/stage2/hf")
#: 16 s of music at the music tokenizer's 25 units/s.
_DEFAULT_SAMPLING = Sampling(max_new_tokens=400)


def music(
    caption: str,
    output: Path = Path("music.wav"),
    model: Path = DEFAULT_MODEL,
    music_units: Path | None = None,
    sampling: Sampling = _DEFAULT_SAMPLING,
    device: str = "auto",
) -> MusicScore | None:
    """Play ``caption`` into a 16 kHz wav file; returns the scores when the caption lists notes."""
    if not caption.strip():
        raise ValueError("the caption is empty: nothing to play")
    parsed = parse_caption(caption)
    lm = MusicLM.load(model, music_units, device=device)
    (wav,) = lm.ttm([caption], sampling)
    if wav.size == 0:
        raise ValueError("the model wrote no music units for this caption")
    write_wav(output, wav)
    print(f"wrote {output} ({wav.size / SAMPLE_RATE:.2f} s)")
    if not parsed.pitches:
        return None
    score = score_audio(wav, parsed)
    print(
        f"note_acc {score.note_acc:.3f}  key_acc {score.key_acc}  tempo_acc {score.tempo_acc}  "
        f"(heard {len(score.notes)} notes, bpm {score.bpm})"
    )
    return score
