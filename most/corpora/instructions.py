"""Instruction data for stage 2 from your own chat files: ``RUN/data/instructions`` (text) and the
spoken ``RUN/data/sqa`` split ``qa_train`` beside a real speech corpus.

Accepted: a ``.jsonl`` file (one conversation per line, ``{"messages": [{"role", "content"}, ...]}``
with an optional ``id``), a dataset folder written by ``save_to_disk`` (its ``messages`` column;
every split of a ``DatasetDict``), or a folder of ``.jsonl`` files. Roles are ``system``, ``user``
and ``assistant``.

Each user turn directly followed by an assistant turn is one pair, and pairs stand alone: earlier
turns are not carried as context (the spoken question is one turn's audio, so a text prompt with
the history would not match what the model hears) and system turns are dropped. A pair becomes

- a text instruction row (``id``, ``task`` = ``"chat"``, ``prompt``, ``response``); a few whole
  conversations are held out as the ``test`` split;
- a spoken row of ``sqa/qa_train`` (training conversations only, both turns at most
  ``max_words`` words): the question ``audio`` is the user turn spoken by an espeak-ng voice of
  ``tts`` or the recording in ``audio_column``; ``answer_audio`` is the assistant turn spoken by
  a voice of ``answer_tts``. ``text`` is the user turn, ``answer`` and ``answer_sentence`` the
  assistant turn, ``fact_id`` the conversation id. Spoken text is the turn with markup characters
  (``* # _ ` | ~ >``) dropped and whitespace collapsed; ``answer`` is what ``answer_audio`` says.

``audio_column``: a path (relative to the ``.jsonl`` file, or to the dataset folder), an audio
struct (``{"path"}``, ``{"bytes"}`` or ``{"array", "sampling_rate"}``; a ``datasets.Audio``
column is read undecoded) for the first user turn, or a list of them, one per user turn in order.
User turns the column has no audio for are spoken by ``tts``.

Bad conversations are rejects named by ``file:line`` (``path[split][row]`` for datasets) in
``RUN/data/rejects.jsonl``, never a crash: a line that is not JSON, no ``messages`` list, a message
that is not an object, an unknown role, content that is not text (``bad_text``), empty user or
assistant content (``empty_text``), no user turn followed by an assistant turn (``no_pair``).
Unreadable or missing recordings are rejected by the audio checks of :mod:`most.corpora.ingest`.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from most.corpora.hf_disk import _materialise
from most.corpora.ingest import FileAudio, SourceItem, SpokenAudio
from most.corpora.speech import Voice

ROLES = ("system", "user", "assistant")
_MARKUP = re.compile(r"[*#_`|~>]+")


@dataclass(frozen=True)
class InstructionsConfig:
    """The ``instructions`` section of ``most data``: chat data for stage 2 beside a real corpus."""

    path: Path | None = None
    """A .jsonl file, a ``save_to_disk`` dataset folder, or a folder of .jsonl files. None: no
    instruction data (the embedded world makes its own)."""
    column: str = "messages"
    """Field holding the conversation (a list of ``{"role", "content"}``)."""
    audio_column: str | None = None
    """Field holding recordings of the user turns (module doc); None: every user turn is spoken
    by ``tts``."""
    tts: tuple[str, ...] = (
        "en-us+m3:165:45",
        "en-us+f2:160:60",
        "en-gb+m1:150:40",
        "en-gb+f3:170:65",
    )
    """espeak-ng voices (``variant:rate:pitch``) that speak the user turns, one drawn per turn."""
    answer_tts: tuple[str, ...] = ("en-us+m7:170:50",)
    """espeak-ng voices that speak the assistant turns (the voice the model learns to answer in)."""
    max_words: int = 60
    """Pairs whose user or assistant turn is longer stay text-only (not spoken)."""
    test: int = 50
    """Conversations held out as ``instructions/test`` (at most a tenth, at least one)."""
    seed: int = 0
    """Seed of the held-out draw and of the voice choices."""
    from_transcripts: int = 0
    """This many more conversations computed from the speech corpus' ``train`` transcripts
    (:mod:`most.corpora.sentence_tasks`: repeat, continue, count, last word, spell); 0 = none."""

    @property
    def enabled(self) -> bool:
        return self.path is not None or self.from_transcripts > 0

    def __post_init__(self) -> None:
        for name in ("tts", "answer_tts"):
            if not getattr(self, name):
                raise ValueError(f"instructions.{name} needs at least one voice")
            for spec in getattr(self, name):
                Voice.parse(spec)  # refuses a malformed voice in one line
        if self.max_words < 1:
            raise ValueError(f"instructions.max_words must be >= 1, got {self.max_words}")
        if self.test < 0:
            raise ValueError(f"instructions.test must be >= 0, got {self.test}")
        if self.from_transcripts < 0:
            raise ValueError(
                f"instructions.from_transcripts must be >= 0, got {self.from_transcripts}"
            )


@dataclass
class Conversation:
    """The usable pairs of one conversation and where it was read."""

    id: str
    where: str
    pairs: list[tuple[str, str, int]]  # (user, assistant, which user turn of the conversation)
    audio: list[object] = field(default_factory=list)  # recordings of the user turns, in order
    base: Path | None = None  # folder relative audio paths are read from


def _reject(where: str, reason: str, message: str) -> dict:
    return {
        "dataset": "instructions",
        "file": where,
        "id": where,
        "reason": reason,
        "message": f"{where}: {message}",
    }


def pairs_of(messages: object) -> tuple[list[tuple[str, str, int]], tuple[str, str] | None]:
    """``([(user, assistant, k)], None)`` for a valid ``messages`` list, ``k`` counting the user
    turns from 0; else ``([], (reason, message))``."""
    if not isinstance(messages, list) or not messages:
        return [], ("bad_text", "not a non-empty list of messages")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return [], ("bad_text", f"message {i} is {type(m).__name__}, not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            return [], ("bad_text", f"message {i} has role {role!r} (expected one of {ROLES})")
        if not isinstance(content, str):
            got = "missing" if content is None else type(content).__name__
            return [], ("bad_text", f"message {i} ({role}): content is {got}, not text")
        if role == "system":
            continue
        if not content.strip():
            return [], ("empty_text", f"message {i} ({role}): empty content")
        turns.append((role, content.strip()))
    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    pairs = [
        (turns[i][1], turns[i + 1][1], k)
        for k, i in enumerate(users)
        if i + 1 < len(turns) and turns[i + 1][0] == "assistant"
    ]
    if not pairs:
        return [], ("no_pair", "no user turn followed by an assistant turn")
    return pairs, None


def _audio_list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _conversation(row: object, where: str, cfg: InstructionsConfig, base: Path):
    """A :class:`Conversation`, or a reject."""
    if not isinstance(row, dict):
        return _reject(where, "bad_text", f"a conversation is an object, got {type(row).__name__}")
    pairs, bad = pairs_of(row.get(cfg.column))
    if bad is not None:
        return _reject(where, bad[0], f"{cfg.column!r}: {bad[1]}")
    conv_id = row.get("id")
    conv_id = str(conv_id) if isinstance(conv_id, str | int) and str(conv_id).strip() else where
    audio = _audio_list(row.get(cfg.audio_column)) if cfg.audio_column else []
    return Conversation(conv_id, where, pairs, audio, base)


def _from_jsonl(path: Path, cfg: InstructionsConfig) -> tuple[list[Conversation], list[dict]]:
    convs, rejects = [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        where = f"{path}:{n}"
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            rejects.append(_reject(where, "bad_text", f"not JSON ({e.msg})"))
            continue
        got = _conversation(row, where, cfg, path.parent)
        (convs if isinstance(got, Conversation) else rejects).append(got)
    return convs, rejects


def _undecoded(ds: datasets.Dataset, column: str) -> datasets.Dataset:
    """``ds`` with an audio column (or a list of them) left as ``{"bytes", "path"}``."""
    feature = ds.features[column]
    if isinstance(feature, datasets.Audio):
        return ds.cast_column(column, datasets.Audio(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(feature, datasets.List | datasets.Sequence) and isinstance(inner, datasets.Audio):
        return ds.cast_column(column, datasets.List(datasets.Audio(decode=False)))
    return ds


def _from_dataset(
    path: Path, cfg: InstructionsConfig, scratch: Path
) -> tuple[list[Conversation], list[dict]]:
    loaded = datasets.load_from_disk(str(path))
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    convs, rejects = [], []
    for split, part in parts:
        for col in (cfg.column, cfg.audio_column):
            if col is not None and col not in part.column_names:
                raise ValueError(f"{path}: no column {col!r} (columns: {part.column_names})")
        if cfg.audio_column:
            part = _undecoded(part, cfg.audio_column)
        for i, row in enumerate(part):
            where = f"{path}[{split}][{i}]" if split else f"{path}[{i}]"
            got = _conversation(row, where, cfg, path)
            if isinstance(got, Conversation) and got.audio:
                key = f"{split or 'data'}-{i:08d}"
                folder = (scratch / "instructions").resolve()
                folder.mkdir(parents=True, exist_ok=True)
                got.audio = [
                    None if a is None else _materialise(a, folder, f"{key}-{k}")
                    for k, a in enumerate(got.audio)
                ]
            (convs if isinstance(got, Conversation) else rejects).append(got)
    return convs, rejects


def read_conversations(
    cfg: InstructionsConfig, scratch: Path, extra: list[dict] = ()
) -> tuple[list[Conversation], list[dict]]:
    """Every conversation of ``cfg.path`` (if set) and of ``extra`` (conversation objects) with
    its usable pairs, and the rejects."""
    convs, rejects = read_files(cfg, scratch) if cfg.path is not None else ([], [])
    for i, row in enumerate(extra):
        got = _conversation(row, f"transcripts[{i}]", cfg, None)
        (convs if isinstance(got, Conversation) else rejects).append(got)
    if not convs:
        raise ValueError(
            f"{cfg.path or 'instructions'}: no conversation with a user turn and an assistant answer"
        )
    return convs, rejects


def read_files(cfg: InstructionsConfig, scratch: Path) -> tuple[list[Conversation], list[dict]]:
    """Every conversation of ``cfg.path`` with its usable pairs, and the rejects."""
    path = Path(cfg.path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: instruction data not found")
    if path.is_file():
        if path.suffix != ".jsonl":
            raise ValueError(f"{path}: an instruction file is .jsonl (one conversation a line)")
        convs, rejects = _from_jsonl(path, cfg)
    elif (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        convs, rejects = _from_dataset(path, cfg, scratch)
    else:
        convs, rejects = [], []
        for f in sorted(path.rglob("*.jsonl")):
            got, bad = _from_jsonl(f, cfg)
            convs += got
            rejects += bad
    if not convs:
        raise ValueError(f"{path}: no conversation with a user turn and an assistant answer")
    return convs, rejects


def speakable(text: str) -> str:
    """``text`` as espeak-ng should say it: markup characters dropped, whitespace collapsed."""
    return " ".join(_MARKUP.sub(" ", text).split())


def _recording(value: object, base: Path | None) -> FileAudio:
    if isinstance(value, dict):  # a JSONL struct: {"path": ...}
        value = value.get("path") or ""
    path = Path(str(value))
    return FileAudio(str(path if path.is_absolute() or base is None else base / path))


def spoken_items(convs: list[Conversation], cfg: InstructionsConfig) -> list[SourceItem]:
    """The ``sqa/qa_train`` items of ``convs`` (module doc); audio is read or spoken later."""
    rng = random.Random(cfg.seed + 1)
    tts = [Voice.parse(v) for v in cfg.tts]
    answer_tts = [Voice.parse(v) for v in cfg.answer_tts]
    items = []
    for conv in convs:
        for user, assistant, k in conv.pairs:
            question, answer = speakable(user), speakable(assistant)
            voice, answer_voice = rng.choice(tts), rng.choice(answer_tts)
            too_long = max(len(question.split()), len(answer.split())) > cfg.max_words
            if too_long or not answer:
                continue
            recorded = k < len(conv.audio) and conv.audio[k] is not None
            audio = (
                _recording(conv.audio[k], conv.base) if recorded else SpokenAudio(question, voice)
            )
            items.append(
                SourceItem(
                    id=f"instr-{len(items):07d}",
                    columns={
                        "text": question,
                        "voice": "recorded" if recorded else voice.name,
                        "task": "sqa",
                        "fact_id": conv.id,
                        "answer": answer,
                        "answer_sentence": answer,
                        "answer_voice": answer_voice.name,
                    },
                    audio={"audio": audio, "answer_audio": SpokenAudio(answer, answer_voice)},
                    source=conv.where,
                )
            )
    return items


def _rows(convs: list[Conversation], prefix: str) -> datasets.Dataset:
    rows = [(user, assistant) for c in convs for user, assistant, _ in c.pairs]
    return datasets.Dataset.from_dict(
        {
            "id": [f"{prefix}-{i:07d}" for i in range(len(rows))],
            "task": ["chat"] * len(rows),
            "prompt": [u for u, _ in rows],
            "response": [a for _, a in rows],
        }
    )


def read_instructions(
    cfg: InstructionsConfig, scratch: Path, extra: list[dict] = ()
) -> tuple[list[SourceItem], datasets.DatasetDict, list[dict]]:
    """``(qa_train items, DatasetDict(train, test) of text instructions, rejects)`` of
    ``cfg.path`` and the ``extra`` conversations."""
    convs, rejects = read_conversations(cfg, scratch, extra)
    order = list(range(len(convs)))
    random.Random(cfg.seed).shuffle(order)
    n_test = min(cfg.test, max(1, len(convs) // 10)) if len(convs) > 1 else 0
    held = set(order[:n_test])
    train = [c for i, c in enumerate(convs) if i not in held]
    test = [c for i, c in enumerate(convs) if i in held]
    text = datasets.DatasetDict(train=_rows(train, "chat"), test=_rows(test, "chat-test"))
    return spoken_items(train, cfg), text, rejects
