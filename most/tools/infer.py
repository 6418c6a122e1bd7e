"""``most asr``, ``most tts``, ``most chat``: the model from the command line.

    most asr --files '[a.flac, b.wav]' --model runs/demo/release
    most tts --text "The capital of Velmora is Tarsk." --output out.wav --model runs/demo/release
    most chat --model runs/demo/release --audio question.wav [--speak=true --output answer.wav]
    most chat --model runs/demo/release            # interactive; "/audio PATH" attaches a file

``--model`` is a release folder (it carries its unit tokenizer) or any adapted model folder plus
``--units RUN/units``. Any format and rate libsndfile reads is accepted (resampled to 16 kHz).
``--device`` (default ``auto``: the GPU when there is one, else the CPU) places the model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from most.audio import read_audio, write_wav
from most.generate import Reply, Sampling, SpeechLM

DEFAULT_MODEL = Path("runs/demo/release")
_DEFAULT_SAMPLING = Sampling()


def asr(
    files: list[Path],
    model: Path = DEFAULT_MODEL,
    units: Path | None = None,
    sampling: Sampling = _DEFAULT_SAMPLING,
    device: str = "auto",
) -> list[str]:
    """Transcribe audio files; prints ``file<TAB>text`` per file."""
    if not files:
        raise ValueError("no audio files given")
    wavs = [read_audio(f) for f in files]  # unreadable files fail here, before the model loads
    lm = SpeechLM.load(model, units=units, device=device)
    texts = lm.asr(wavs, sampling)
    for f, t in zip(files, texts, strict=True):
        print(f"{f}\t{t}")
    return texts


def tts(
    text: str,
    output: Path = Path("out.wav"),
    model: Path = DEFAULT_MODEL,
    units: Path | None = None,
    sampling: Sampling = _DEFAULT_SAMPLING,
    device: str = "auto",
) -> Path:
    """Speak ``text`` into a 16 kHz wav file."""
    if not text.strip():
        raise ValueError("--text is empty: nothing to speak")
    lm = SpeechLM.load(model, units=units, device=device)
    (wav,) = lm.tts([text], sampling)
    if wav.size == 0:
        raise ValueError("the model produced no speech units for this text")
    write_wav(output, wav)
    print(f"wrote {output} ({wav.size / 16_000:.2f} s)")
    return Path(output)


def chat(
    model: Path = DEFAULT_MODEL,
    text: str | None = None,
    audio: Path | None = None,
    speak: bool = False,
    output: Path | None = None,
    units: Path | None = None,
    sampling: Sampling = _DEFAULT_SAMPLING,
    device: str = "auto",
) -> Reply | None:
    """Chat in text and/or speech. With ``--text`` or ``--audio``: one answer, then exit;
    otherwise an interactive loop (``/audio PATH`` attaches a file to the next message, an empty
    line quits). ``--speak=true`` answers in speech too (written to ``--output``)."""
    if text is not None and not text.strip() and audio is None:
        raise ValueError("--text is empty and no --audio given")
    lm = SpeechLM.load(model, units=units, device=device)
    if text is not None or audio is not None:
        msg = {"role": "user", "text": text, "audio": read_audio(audio) if audio else None}
        return _answer(lm, [msg], speak, output, sampling)
    history: list[dict] = []
    pending = None
    print("most chat: type a message (/audio PATH attaches speech, empty line quits)")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            break
        if line.startswith("/audio "):
            pending = read_audio(line.removeprefix("/audio ").strip())
            continue
        history.append({"role": "user", "text": line, "audio": pending})
        pending = None
        reply = _answer(lm, history, speak, output, sampling)
        history.append({"role": "assistant", "text": reply.text})
    return None


def _answer(lm: SpeechLM, messages, speak: bool, output: Path | None, sampling) -> Reply:
    reply = lm.chat(messages, speak=speak, sampling=sampling)
    print(reply.text)
    if speak and reply.audio is not None and reply.audio.size:
        path = write_wav(output or Path("answer.wav"), reply.audio)
        print(f"(spoken answer: {path})")
    return reply
