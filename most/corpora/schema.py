"""The on-disk contract of the ``data`` stage: what later stages may rely on.

``RUN/data/`` holds HF ``datasets`` folders written with ``save_to_disk`` (atomically):

``speech/`` -- ``DatasetDict``: ASR/TTS utterances.
    splits: ``train``, ``dev``, ``test`` (seen voices, sentences unseen in training) and, for
    corpora with held-out speakers, ``test_voices`` (voices never heard in training); the
    embedded default adds ``train_short`` (one- and two-word utterances, read by the speech LM
    and the unit encoder only).
    columns: ``id`` str, ``audio`` {``array``: float32[n], ``sampling_rate``: int}, ``text`` str,
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

Audio columns are plain structs, not ``datasets.Audio``: decoding stays in our hands (no codec
dependency) and every array is already float32 mono at :data:`most.audio.SAMPLE_RATE`.
Any column named ``audio`` or ending in ``_audio`` is speech that the ``units`` stage encodes.
"""

from __future__ import annotations

import datasets

from most.audio import SAMPLE_RATE

AUDIO_FEATURE = {
    "array": datasets.Sequence(datasets.Value("float32")),
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


def audio_value(wav, sr: int = SAMPLE_RATE) -> dict:
    """The struct stored in an audio column."""
    return {"array": wav, "sampling_rate": sr}


def is_audio_column(name: str) -> bool:
    return name == "audio" or name.endswith("_audio")
