"""``most asr``, ``most tts``, ``most chat``: the model from the command line.

    most asr a.flac b.wav recordings/*.mp3 --model runs/demo/release
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

import numpy as np

from most.audio import AudioError, read_audio, write_wav
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
    """Transcribe audio files (``most asr a.wav b.flac``, shell globs welcome) in batches of
    ``sampling.batch_size``; prints ``file<TAB>text`` per readable file. An unreadable file is
    named on stderr in one line and the others are still transcribed; the command then fails
    saying how many could not be read. A silent recording transcribes as empty text."""
    if not files:
        raise ValueError("no audio files given")
    wavs: dict[int, np.ndarray] = {}  # position in ``files`` -> audio, for the readable ones
    failed = []
    for i, f in enumerate(files):  # unreadable files are found before the model loads
        try:
            wavs[i] = read_audio(f, allow_silence=True)
        except AudioError as e:
            failed.append(str(e))
    if failed and not wavs:
        if len(failed) == 1:
            raise ValueError(failed[0])
        for line in failed:
            print(f"most asr: {line}", file=sys.stderr)
        raise ValueError(f"none of the {len(failed)} files could be read")
    for line in failed:
        print(f"most asr: {line}", file=sys.stderr, flush=True)
    texts = dict.fromkeys(wavs, "")  # silent recordings stay empty
    voiced = [i for i, w in wavs.items() if np.any(w)]
    if voiced:
        lm = SpeechLM.load(model, units=units, device=device)
        texts |= dict(zip(voiced, lm.asr([wavs[i] for i in voiced], sampling), strict=True))
    for i, text in texts.items():
        print(f"{files[i]}\t{text}")
    if failed:
        raise ValueError(f"{len(failed)} of {len(files)} files could not be read (named above)")
    return list(texts.values())


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
