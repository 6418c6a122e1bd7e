"""Token layout: where text, speech units and special tokens live in the model's vocabulary.

The base LLM keeps its text ids ``[0, text_vocab_size)``. New tokens are appended after it in a fixed
order: the special tokens first, then the ``n_units`` speech-unit tokens ``<|u0|>`` ... The layout is
the single source of truth for a token's *modality* (which expert group may serve it): no other code
hard-codes id ranges, it asks :meth:`TokenLayout.modality_table`.

The layout is versioned and content-hashed. The hash covers everything that changes an id or a
modality (including the unit tokenizer's hash), so a checkpoint trained on one layout refuses data
encoded under another.
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


class LayoutError(ValueError):
    """A layout that is inconsistent, or does not match the model or data it is used with."""


@dataclass(frozen=True)
class TokenLayout:
    """Vocabulary layout of an adapted model.

    Attributes:
        text_vocab_size: number of ids owned by the base text tokenizer; new tokens start here.
        n_units: number of speech-unit tokens (the unit tokenizer's ``vocab_size``).
        unit_tokenizer_hash: hash of the unit tokenizer that produced the unit ids.
        specials: added special tokens, in id order.
        speech_specials: the subset of ``specials`` whose modality is speech.
        modalities: modality group names; index in this tuple is the group id used by routers.
        unit_format: how unit ``k`` is spelled as a token string.
        version: layout format version.
    """

    text_vocab_size: int
    n_units: int
    unit_tokenizer_hash: str
    specials: tuple[str, ...] = DEFAULT_SPECIALS
    speech_specials: tuple[str, ...] = DEFAULT_SPEECH_SPECIALS
    modalities: tuple[str, ...] = (TEXT, SPEECH)
    unit_format: str = "<|u{}|>"
    version: int = LAYOUT_VERSION
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
        units = {self.unit_token(k) for k in (0, self.n_units - 1)}
        if units & set(self.specials):
            raise LayoutError(f"unit token spelling collides with specials: {sorted(units)}")
        ids = {s: self.text_vocab_size + i for i, s in enumerate(self.specials)}
        object.__setattr__(self, "_ids", ids)

    # ---- ids -------------------------------------------------------------------------------
    @property
    def unit_offset(self) -> int:
        """Id of ``<|u0|>``."""
        return self.text_vocab_size + len(self.specials)

    @property
    def vocab_size(self) -> int:
        """Total number of ids the adapted model's embedding must hold."""
        return self.unit_offset + self.n_units

    def unit_token(self, k: int) -> str:
        return self.unit_format.format(k)

    def new_tokens(self) -> list[str]:
        """Every added token string in id order (specials, then units)."""
        return [*self.specials, *(self.unit_token(k) for k in range(self.n_units))]

    def special_id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise LayoutError(f"{token!r} is not a special token of this layout") from None

    def units_to_ids(self, units: torch.Tensor) -> torch.Tensor:
        """Unit indices ``(...,)`` in ``[0, n_units)`` -> token ids ``(...,)``."""
        return units.long() + self.unit_offset

    def ids_to_units(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> unit indices; ids that are not units are dropped. ``(n,) -> (m,)``."""
        ids = ids.long()
        keep = (ids >= self.unit_offset) & (ids < self.vocab_size)
        return ids[keep] - self.unit_offset

    def is_unit(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.unit_offset) & (ids < self.vocab_size)

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
        table[self.unit_offset : self.vocab_size] = self.modality_id(SPEECH)
        for token in self.speech_specials:
            table[self.special_id(token)] = self.modality_id(SPEECH)
        return table

    # ---- identity and persistence ------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_ids")
        d["specials"] = list(self.specials)
        d["speech_specials"] = list(self.speech_specials)
        d["modalities"] = list(self.modalities)
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

    def check_units(self, unit_tokenizer_hash: str, where: str = "data") -> None:
        """Refuse data encoded by a different unit tokenizer than this layout was built for."""
        if unit_tokenizer_hash != self.unit_tokenizer_hash:
            raise LayoutError(
                f"{where}: unit tokenizer hash {unit_tokenizer_hash} does not match the model's "
                f"layout ({self.unit_tokenizer_hash}); re-run `most units` or `most adapt`"
            )
