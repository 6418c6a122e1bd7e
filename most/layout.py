"""Token layout: where text, speech units and special tokens live in the model's vocabulary.

The base LLM keeps its text ids ``[0, text_vocab_size)``. New tokens are appended after it in a fixed
order: the special tokens first, then the ``n_units`` speech-unit tokens ``<|u0|>`` ..., then the unit
tokens of each further modality (:class:`UnitModality`: music, ...) in the order they are listed. The
layout is the single source of truth for a token's *modality* (which expert group may serve it): no
other code hard-codes id ranges, it asks :meth:`TokenLayout.modality_table`. Text and speech are
always modalities; a modality's group id is its index in :attr:`TokenLayout.modalities`.

The layout is versioned and content-hashed. The hash covers everything that changes an id or a
modality (including the unit tokenizers' hashes), so a checkpoint trained on one layout refuses data
encoded under another. A layout without further modalities hashes exactly as the two-modality format
always has (the ``extra_modalities`` key is left out of its dict).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

LAYOUT_FILE = "token_layout.json"
LAYOUT_VERSION = 1

BEGIN_OF_AUDIO = "<|begin_of_audio|>"
END_OF_AUDIO = "<|end_of_audio|>"

#: Specials every layout gets. Audio delimiters belong to the speech stream (the model predicts
#: ``<|end_of_audio|>`` to stop speaking); task and role markers are text.
DEFAULT_SPECIALS: tuple[str, ...] = (
    BEGIN_OF_AUDIO,
    END_OF_AUDIO,
    "<|asr|>",
    "<|tts|>",
    "<|user|>",
    "<|assistant|>",
    "<|end_of_turn|>",
    "<|speech_answer|>",
    "<|text_answer|>",
)
DEFAULT_SPEECH_SPECIALS: tuple[str, ...] = (BEGIN_OF_AUDIO, END_OF_AUDIO)

TEXT = "text"
SPEECH = "speech"

#: The music modality (:class:`UnitModality` ``music``): its delimiters are served by the music
#: experts; ``<|ttm|>`` (text to music) is a task marker, text like ``<|tts|>``.
MUSIC = "music"
BEGIN_OF_MUSIC = "<|begin_of_music|>"
END_OF_MUSIC = "<|end_of_music|>"
TEXT_TO_MUSIC = "<|ttm|>"
MUSIC_SPECIALS: tuple[str, ...] = (BEGIN_OF_MUSIC, END_OF_MUSIC)


#: UniAudio-style task markers (text, like ``<|tts|>``): voice-prompted TTS, voice conversion,
#: speech enhancement and speech continuation. Not in :data:`DEFAULT_SPECIALS` (that would move every
#: unit id of existing layouts); a recipe lists them in ``layout.specials`` (``recipes/uniaudio``).
VOICE_TTS = "<|vtts|>"
VOICE_CONVERSION = "<|vc|>"
SPEECH_ENHANCEMENT = "<|se|>"
SPEECH_CONTINUATION = "<|sc|>"
UNIAUDIO_SPECIALS: tuple[str, ...] = (
    VOICE_TTS,
    VOICE_CONVERSION,
    SPEECH_ENHANCEMENT,
    SPEECH_CONTINUATION,
)


class LayoutError(ValueError):
    """A layout that is inconsistent, or does not match the model or data it is used with."""


@dataclass(frozen=True)
class UnitModality:
    """A modality beyond text and speech whose tokens are the units of its own tokenizer (music).

    Attributes:
        name: the modality's name, as listed in :attr:`TokenLayout.modalities`.
        n_units: number of unit tokens (its tokenizer's ``vocab_size``).
        unit_tokenizer_hash: hash of the tokenizer that produced its unit ids.
        unit_format: how its unit ``k`` is spelled; None: ``<|{name}{k}|>`` (``<|music17|>``).
        specials: tokens of :attr:`TokenLayout.specials` its expert group serves (its delimiters).
    """

    name: str
    n_units: int
    unit_tokenizer_hash: str
    unit_format: str | None = None
    specials: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name in (TEXT, SPEECH) or not self.name:
            raise LayoutError(f"extra modality name {self.name!r}: text and speech are built in")
        if self.n_units <= 0:
            raise LayoutError(f"modality {self.name!r}: n_units ({self.n_units}) must be > 0")
        if self.unit_format is None:
            object.__setattr__(self, "unit_format", f"<|{self.name}{{}}|>")
        if self.unit_format.count("{}") != 1:
            raise LayoutError(
                f"modality {self.name!r}: unit_format {self.unit_format!r} needs exactly one {{}}"
            )
        object.__setattr__(self, "specials", tuple(self.specials))

    def to_dict(self) -> dict:
        return {**asdict(self), "specials": list(self.specials)}


@dataclass(frozen=True)
class TokenLayout:
    """Vocabulary layout of an adapted model.

    Attributes:
        text_vocab_size: number of ids owned by the base text tokenizer; new tokens start here.
        n_units: number of speech-unit tokens (the unit tokenizer's ``vocab_size``).
        unit_tokenizer_hash: hash of the unit tokenizer that produced the unit ids.
        specials: added special tokens, in id order.
        speech_specials: the subset of ``specials`` whose modality is speech.
        modalities: modality group names; index in this tuple is the group id used by routers. It
            lists text, speech and every extra modality once each, in any order.
        unit_format: how speech unit ``k`` is spelled as a token string.
        version: layout format version.
        extra_modalities: modalities beyond text and speech, each with its own unit tokens (after
            the speech units, in this order) and specials.
    """

    text_vocab_size: int
    n_units: int
    unit_tokenizer_hash: str
    specials: tuple[str, ...] = DEFAULT_SPECIALS
    speech_specials: tuple[str, ...] = DEFAULT_SPEECH_SPECIALS
    modalities: tuple[str, ...] = (TEXT, SPEECH)
    unit_format: str = "<|u{}|>"
    version: int = LAYOUT_VERSION
    extra_modalities: tuple[UnitModality, ...] = ()
    _ids: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.text_vocab_size <= 0 or self.n_units <= 0:
            raise LayoutError(
                f"text_vocab_size ({self.text_vocab_size}) and n_units ({self.n_units}) must be > 0"
            )
        if len(set(self.specials)) != len(self.specials):
            raise LayoutError(f"duplicate special tokens in {self.specials}")
        unknown = set(self.speech_specials) - set(self.specials)
        if unknown:
            raise LayoutError(f"speech_specials not in specials: {sorted(unknown)}")
        if SPEECH not in self.modalities or TEXT not in self.modalities:
            raise LayoutError(f"modalities must include {TEXT!r} and {SPEECH!r}: {self.modalities}")
        self._check_extra_modalities()
        units = {self.unit_token(k) for k in (0, self.n_units - 1)}
        if units & set(self.specials):
            raise LayoutError(f"unit token spelling collides with specials: {sorted(units)}")
        if self.extra_modalities:
            tokens = self.new_tokens()
            if len(set(tokens)) != len(tokens):
                clash = sorted({t for t in tokens if tokens.count(t) > 1})[:5]
                raise LayoutError(f"token spellings collide across modalities: {clash}")
        ids = {s: self.text_vocab_size + i for i, s in enumerate(self.specials)}
        object.__setattr__(self, "_ids", ids)

    def _check_extra_modalities(self) -> None:
        """Each modality listed once; each extra modality's specials are its own."""
        extra = tuple(self.extra_modalities)
        object.__setattr__(self, "extra_modalities", extra)
        names = [TEXT, SPEECH, *(m.name for m in extra)]
        if len(set(names)) != len(names):
            raise LayoutError(f"extra_modalities repeat a modality name: {names[2:]}")
        if len(set(self.modalities)) != len(self.modalities) or set(self.modalities) != set(names):
            raise LayoutError(
                f"modalities {list(self.modalities)} must list each of {names} exactly once"
            )
        owner = dict.fromkeys(self.speech_specials, SPEECH)
        for m in extra:
            for token in m.specials:
                if token not in self.specials:
                    raise LayoutError(f"modality {m.name!r}: special {token!r} not in specials")
                if token in owner:
                    raise LayoutError(
                        f"special {token!r} belongs to both {owner[token]!r} and {m.name!r}"
                    )
                owner[token] = m.name

    # ---- ids -------------------------------------------------------------------------------
    @property
    def unit_offset(self) -> int:
        """Id of ``<|u0|>``."""
        return self.text_vocab_size + len(self.specials)

    @property
    def vocab_size(self) -> int:
        """Total number of ids the adapted model's embedding must hold."""
        return self.unit_offset + self.n_units + sum(m.n_units for m in self.extra_modalities)

    def _unit_blocks(self) -> list[tuple[str, int, str, str]]:
        """``(modality, n_units, unit_format, unit_tokenizer_hash)`` of each block of unit tokens,
        in id order: speech, then the extra modalities."""
        speech = (SPEECH, self.n_units, self.unit_format, self.unit_tokenizer_hash)
        extra = [
            (m.name, m.n_units, m.unit_format, m.unit_tokenizer_hash) for m in self.extra_modalities
        ]
        return [speech, *extra]

    def _block(self, modality: str) -> tuple[int, int, str, str]:
        """``(first id, n_units, unit_format, unit_tokenizer_hash)`` of ``modality``'s units."""
        start = self.unit_offset
        for name, n, fmt, unit_hash in self._unit_blocks():
            if name == modality:
                return start, n, fmt, unit_hash
            start += n
        raise LayoutError(f"modality {modality!r} has no unit tokens in this layout")

    def unit_range(self, modality: str = SPEECH) -> tuple[int, int]:
        """``[start, end)`` ids of ``modality``'s unit tokens (speech or an extra modality)."""
        start, n, _, _ = self._block(modality)
        return start, start + n

    def unit_token(self, k: int, modality: str = SPEECH) -> str:
        return self._block(modality)[2].format(k)

    def unit_tokenizer_hash_of(self, modality: str = SPEECH) -> str:
        """Hash of the unit tokenizer behind ``modality``'s units."""
        return self._block(modality)[3]

    def new_tokens(self) -> list[str]:
        """Every added token string in id order (specials, speech units, then each extra
        modality's units)."""
        units = [fmt.format(k) for _, n, fmt, _ in self._unit_blocks() for k in range(n)]
        return [*self.specials, *units]

    def special_id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise LayoutError(f"{token!r} is not a special token of this layout") from None

    def units_to_ids(self, units: torch.Tensor, modality: str = SPEECH) -> torch.Tensor:
        """``modality``'s unit indices ``(...,)`` in ``[0, n_units)`` -> token ids ``(...,)``."""
        return units.long() + self.unit_range(modality)[0]

    def ids_to_units(self, ids: torch.Tensor, modality: str = SPEECH) -> torch.Tensor:
        """Token ids -> ``modality``'s unit indices; other ids are dropped. ``(n,) -> (m,)``."""
        ids = ids.long()
        start, end = self.unit_range(modality)
        return ids[(ids >= start) & (ids < end)] - start

    def is_unit(self, ids: torch.Tensor, modality: str = SPEECH) -> torch.Tensor:
        """``(...,)`` bool: which ids are ``modality``'s unit tokens."""
        start, end = self.unit_range(modality)
        return (ids >= start) & (ids < end)

    # ---- modality ------------------------------------------------------------------------------
    def modality_id(self, name: str) -> int:
        try:
            return self.modalities.index(name)
        except ValueError:
            raise LayoutError(f"unknown modality {name!r}; layout has {self.modalities}") from None

    def modality_table(self, size: int | None = None) -> torch.Tensor:
        """``(size,)`` long tensor mapping token id -> modality group id.

        ``size`` may exceed :attr:`vocab_size` (padded embedding tables); padding rows are text.
        """
        size = self.vocab_size if size is None else size
        if size < self.vocab_size:
            raise LayoutError(f"table size {size} is smaller than the layout's {self.vocab_size}")
        table = torch.full((size,), self.modality_id(TEXT), dtype=torch.long)
        owned = [(SPEECH, self.speech_specials)]
        owned += [(m.name, m.specials) for m in self.extra_modalities]
        for name, specials in owned:
            start, end = self.unit_range(name)
            table[start:end] = self.modality_id(name)
            for token in specials:
                table[self.special_id(token)] = self.modality_id(name)
        return table

    # ---- identity and persistence ------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able fields; ``extra_modalities`` only when there are any (so a text + speech
        layout keeps the dict, and the hash, of the two-modality format)."""
        d = asdict(self)
        d.pop("_ids")
        d["specials"] = list(self.specials)
        d["speech_specials"] = list(self.speech_specials)
        d["modalities"] = list(self.modalities)
        if self.extra_modalities:
            d["extra_modalities"] = [m.to_dict() for m in self.extra_modalities]
        else:
            d.pop("extra_modalities")
        return d

    @property
    def hash(self) -> str:
        """Content hash (16 hex chars) of everything that determines ids and modalities."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> TokenLayout:
        d = dict(d)
        d.pop("hash", None)
        if d.get("version", LAYOUT_VERSION) != LAYOUT_VERSION:
            raise LayoutError(f"unsupported layout version {d.get('version')}")
        for key in ("specials", "speech_specials", "modalities"):
            if key in d:
                d[key] = tuple(d[key])
        try:
            if "extra_modalities" in d:
                d["extra_modalities"] = tuple(UnitModality(**m) for m in d["extra_modalities"])
            return cls(**d)
        except TypeError as e:
            raise LayoutError(f"bad layout fields: {e}") from None

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / LAYOUT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.to_dict(), "hash": self.hash}, indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TokenLayout:
        path = Path(directory) / LAYOUT_FILE
        if not path.is_file():
            raise LayoutError(f"{path}: no token layout (expected {LAYOUT_FILE} in {directory})")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise LayoutError(f"{path}: not valid JSON ({e})") from None
        layout = cls.from_dict(d)
        if "hash" in d and d["hash"] != layout.hash:
            raise LayoutError(f"{path}: stored hash {d['hash']} != recomputed {layout.hash}")
        return layout

    def check_units(
        self, unit_tokenizer_hash: str, where: str = "data", modality: str = SPEECH
    ) -> None:
        """Refuse data encoded by a different unit tokenizer than this layout was built for."""
        want = self.unit_tokenizer_hash_of(modality)
        if unit_tokenizer_hash != want:
            raise LayoutError(
                f"{where}: unit tokenizer hash {unit_tokenizer_hash} does not match the model's "
                f"layout ({want}); re-run `most units` or `most adapt`"
            )
