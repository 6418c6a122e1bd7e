"""The unit-tokenizer kinds: the one table of them, the ``--tokenizer.*`` settings, loading any kind.

A kind is a tokenizer class (``encode``/``decode``/``hash``/``save``/``load``) and its config
dataclass, which knows how the ``units`` stage fits that tokenizer on a run's speech. Adding a kind
is one module with those two classes, one row of :data:`KINDS` and one section of
:class:`TokenizerConfig`; nothing else branches on the kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import datasets

from most.run import Run
from most.units.base import TOKENIZER_FILE, UnitTokenizer, read_tokenizer
from most.units.codec import CodecConfig, CodecTokenizer
from most.units.ctc_kmeans import CTCKMeansConfig, CTCKMeansTokenizer
from most.units.ctc_phones import CTCPhonesConfig, CTCPhonesTokenizer
from most.units.hubert_kmeans import HubertKMeansConfig, HubertKMeansTokenizer
from most.units.mel_kmeans import MelKMeansConfig, MelKMeansTokenizer
from most.units.rvq import RVQConfig, RVQTokenizer
from most.units.sample import Utterances


class KindConfig(Protocol):
    """What the ``units`` stage asks of a kind's config (section ``tokenizer.<kind>``)."""

    def sample(self, speech: datasets.DatasetDict, seed: int, fit_seconds: float) -> Utterances:
        """The utterances of ``speech`` (the run's ``RUN/data/speech``) to fit on."""
        ...

    def fit(
        self, audio: Utterances, *, seed: int, fit_seconds: float, dedup: bool, gl_iters: int
    ) -> UnitTokenizer: ...

    def fit_settings(self) -> dict[str, Any]:
        """Settings that shape the fitted tokenizer but are not stored in it (``fit.json``)."""
        ...

    def differences(self, tok: Any) -> dict[str, tuple[Any, Any]]:
        """``{name: (saved, wanted)}`` for settings stored in ``tok`` (of this kind) that differ."""
        ...


@dataclass(frozen=True)
class Kind:
    tokenizer: type
    """The class; ``tokenizer.load(folder)`` reads a saved one."""
    config: type[KindConfig]
    """Its settings: the section ``tokenizer.<kind>`` of the units recipe."""


KINDS: dict[str, Kind] = {
    "ctc_phones": Kind(CTCPhonesTokenizer, CTCPhonesConfig),
    "ctc_kmeans": Kind(CTCKMeansTokenizer, CTCKMeansConfig),
    "mel_kmeans": Kind(MelKMeansTokenizer, MelKMeansConfig),
    "hubert_kmeans": Kind(HubertKMeansTokenizer, HubertKMeansConfig),
    "rvq": Kind(RVQTokenizer, RVQConfig),
    "codec": Kind(CodecTokenizer, CodecConfig),
}


def kind(name: Any, where: str | Path = "tokenizer.kind") -> Kind:
    """The row of :data:`KINDS` called ``name``; else a one-line ``ValueError`` naming ``where``."""
    if name not in KINDS:
        raise ValueError(
            f"{where}: unknown unit tokenizer kind {name!r}; kinds: {', '.join(KINDS)}"
        )
    return KINDS[name]


@dataclass
class TokenizerConfig:
    """Which unit tokenizer to fit or load (``--tokenizer.*``): settings every kind has, and one
    section per kind (only the section of ``kind`` is used)."""

    kind: str = "mel_kmeans"
    """A row of :data:`KINDS`. ``ctc_phones``: embedded default, the phonemes a CTC encoder trained
    on the run's speech (espeak-ng phoneme transcripts of its texts) hears; has a decoder.
    ``ctc_kmeans``: a CTC encoder trained on the letters of the transcripts, its states
    clustered; has a decoder. ``mel_kmeans``: log-mel k-means, no training, has a decoder.
    ``hubert_kmeans``: HuBERT features from a local model, clustered; has a decoder.
    ``rvq``: residual k-means over log-mel, several codes per frame (flattened, see
    :mod:`most.units.codebooks`), no training, has a decoder. ``codec``: the first codebooks of
    a local EnCodec / DAC / Mimi (flattened the same way), decoded by the codec."""
    path: Path | None = None
    """Load this saved tokenizer folder instead of fitting one."""
    dedup: bool = True
    """Collapse consecutive repeated units (MoST does)."""
    seed: int = 0
    """Seeds the choice of fitting utterances, the encoder's training and k-means."""
    fit_seconds: float = 1800.0
    """Seconds of ``speech/train`` audio the k-means (and the CTC kinds' decoder) is fitted on."""
    gl_iters: int = 24
    """Griffin-Lim iterations of the mel decoders (speed/quality; does not change ids)."""
    ctc_phones: CTCPhonesConfig = field(default_factory=CTCPhonesConfig)
    ctc_kmeans: CTCKMeansConfig = field(default_factory=CTCKMeansConfig)
    mel_kmeans: MelKMeansConfig = field(default_factory=MelKMeansConfig)
    hubert_kmeans: HubertKMeansConfig = field(default_factory=HubertKMeansConfig)
    rvq: RVQConfig = field(default_factory=RVQConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)

    def __post_init__(self) -> None:
        kind(self.kind)
        if self.fit_seconds <= 0:
            raise ValueError("tokenizer.fit_seconds must be > 0")

    @property
    def settings(self) -> KindConfig:
        """The section of the chosen kind."""
        return getattr(self, self.kind)

    def fingerprint_settings(self) -> dict[str, Any]:
        """What the units depend on: the shared settings and the chosen kind's section (the other
        kinds' sections do not apply)."""
        shared = ("kind", "path", "dedup", "seed", "fit_seconds", "gl_iters")
        return {**{k: getattr(self, k) for k in shared}, self.kind: self.settings}

    def fit_settings(self) -> dict[str, Any]:
        """What ``fit.json`` beside a fitted tokenizer holds, so a re-run can tell."""
        return {"seed": self.seed, "fit_seconds": self.fit_seconds, **self.settings.fit_settings()}

    def differences(self, tok: UnitTokenizer) -> dict[str, tuple[Any, Any]]:
        """``{setting: (saved, wanted)}`` where ``tok`` was made otherwise than asked."""
        if tok.kind != self.kind:
            return {"kind": (tok.kind, self.kind)}
        if tok.dedup != self.dedup:
            return {"dedup": (tok.dedup, self.dedup)}
        return {f"{self.kind}.{k}": v for k, v in self.settings.differences(tok).items()}

    def fit(self, speech: datasets.DatasetDict) -> tuple[UnitTokenizer, Utterances]:
        """Fit the chosen kind on ``speech``; returns the tokenizer and the audio it was fitted on."""
        audio = self.settings.sample(speech, self.seed, self.fit_seconds)
        tok = self.settings.fit(
            audio,
            seed=self.seed,
            fit_seconds=self.fit_seconds,
            dedup=self.dedup,
            gl_iters=self.gl_iters,
        )
        return tok, audio


def tokenizer_dir(path: str | Path) -> Path:
    """A tokenizer folder, ``RUN/units`` or ``RUN`` -> the folder holding :data:`TOKENIZER_FILE`."""
    path = Path(path)
    if (path / TOKENIZER_FILE).is_file():
        return path
    parent = Run(path.parent)
    if parent.units == path and (parent.unit_tokenizer / TOKENIZER_FILE).is_file():
        return parent.unit_tokenizer
    if (Run(path).unit_tokenizer / TOKENIZER_FILE).is_file():
        return Run(path).unit_tokenizer
    return path


def load_tokenizer(path: str | Path) -> UnitTokenizer:
    """Load any saved unit tokenizer; the JSON's ``kind`` picks the row of :data:`KINDS`.

    ``path`` is the tokenizer folder, ``RUN/units`` or ``RUN``. The stored hash is recomputed and
    must match, so an edited file is caught here.
    """
    path = tokenizer_dir(path)
    meta, _ = read_tokenizer(path)
    tok = kind(meta.get("kind"), path / TOKENIZER_FILE).tokenizer.load(path)
    if tok.hash != meta.get("hash"):
        raise ValueError(f"{path}: stored hash {meta.get('hash')} != recomputed {tok.hash}")
    return tok
