"""The on-disk contract of the ``data`` stage: what later stages may rely on.

``RUN/data/`` holds HF ``datasets`` folders written with ``save_to_disk`` (atomically):

``speech/`` -- ``DatasetDict``: ASR/TTS utterances.
    splits: ``train``, ``dev``, ``test`` (seen voices, sentences unseen in training) and, for
    corpora with held-out speakers, ``test_voices`` (voices never heard in training); the
    embedded default adds ``train_short`` (one- and two-word utterances, read by the speech LM
    and the unit encoder only).
    columns: ``id`` str, ``audio`` {``bytes``: binary, ``sampling_rate``: int}, ``text`` str,
    ``voice`` str, ``task`` str (``"asr_tts"``), ``duration`` float (seconds).

``sqa/`` -- ``DatasetDict``: spoken question answering.
    splits: ``qa_train`` (instruction data for stage 2), ``qa_heldout`` (embedded default only:
    facts present in the text corpus but never as a QA training pair, the cross-modal transfer
    test). With a real corpus, ``--instructions.path`` writes ``qa_train`` from chat data
    (:mod:`most.corpora.instructions`: ``fact_id`` is the conversation, ``answer`` and
    ``answer_sentence`` the assistant turn).
    columns: ``id``, ``fact_id``, ``audio`` (spoken question), ``text`` (question text), ``voice``,
    ``task`` (``"sqa"``), ``duration``, ``answer`` str, ``answer_sentence`` str (the answer as the
    statement of the fact, subject first: what text answers are trained to say), ``answer_audio``
    (``answer_sentence`` spoken), ``answer_voice``.

``text/`` -- ``DatasetDict`` (embedded default): text-LM corpus.
    splits: ``train``, ``heldout`` (for perplexity); columns ``id``, ``text`` (a paragraph).

``instructions/`` -- ``DatasetDict`` (embedded default, or ``--instructions.path``): text
    instructions for stage 2.
    splits: ``train``, ``test``; columns ``id``, ``task`` (``repeat``/``answer``/``continue``/
    ``spell``; ``chat`` for chat data), ``prompt``, ``response``.

``manifest.json`` -- counts, hours, voices per split, generator seed and a content hash.
``rejects.jsonl`` -- one JSON line per skipped item: ``{"file", "id", "reason", "message"}``.

Audio columns are plain structs ``{"bytes", "sampling_rate"}``, not ``datasets.Audio``: decoding
stays in our hands. ``bytes`` is a whole FLAC file, 16-bit mono at :data:`most.audio.SAMPLE_RATE`
(``sampling_rate`` says so): a source file already in that form is kept byte for byte, anything
else (other formats, rates, channel counts, a cut segment, synthesised speech) is encoded from its
validated waveform. Read a cell with :func:`decode_audio` (float32 mono at ``SAMPLE_RATE``), write
one with :func:`audio_value`. Any column named ``audio`` or ending in ``_audio`` is speech that the
``units`` stage encodes.
"""

from __future__ import annotations

import datasets
import numpy as np

from most.audio import SAMPLE_RATE, encode_flac
from most.audio import decode_audio as decode_audio  # the reader of AUDIO_FEATURE cells

AUDIO_FEATURE = {
    "bytes": datasets.Value("binary"),
    "sampling_rate": datasets.Value("int32"),
}

SPEECH_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "audio": AUDIO_FEATURE,
        "text": datasets.Value("string"),
        "voice": datasets.Value("string"),
        "task": datasets.Value("string"),
        "duration": datasets.Value("float32"),
    }
)

SQA_FEATURES = datasets.Features(
    {
        **SPEECH_FEATURES,
        "fact_id": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "answer_sentence": datasets.Value("string"),
        "answer_audio": AUDIO_FEATURE,
        "answer_voice": datasets.Value("string"),
    }
)

DATA_DIRS = ("speech", "sqa", "text", "instructions")


def audio_value(audio: np.ndarray | bytes) -> dict:
    """The struct stored in an audio column: float32 mono samples at ``SAMPLE_RATE`` are encoded;
    bytes (a FLAC file already 16-bit mono at ``SAMPLE_RATE``) are kept as they are."""
    data = audio if isinstance(audio, bytes) else encode_flac(audio)
    return {"bytes": data, "sampling_rate": SAMPLE_RATE}


def is_audio_column(name: str) -> bool:
    return name == "audio" or name.endswith("_audio")
