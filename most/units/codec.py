"""Neural-codec units (``codec``): the first ``C`` residual codebooks of a local EnCodec, DAC or Mimi.

UniAudio's tokeniser: a neural codec's residual vector quantiser gives every frame ``C`` codes,
and its decoder turns codes straight back into audio (no vocoder of ours). The model is read from
a local HF folder (``config.json`` + safetensors; no downloads, no remote code) and never
modified; its ``model_type`` picks the adapter below (the three families spell ``encode`` and
``decode`` differently). The hash covers the model's config and weight bytes and ``C``.

Ids are the flat sequence of :mod:`most.units.codebooks` (``C`` per frame, vocabulary
``C * codebook_size``); :meth:`CodecTokenizer.encode_codes` gives the ``(frames, C)`` array.
Audio enters and leaves at the pipeline's 16 kHz (``sample_rate``) and is resampled to and from
the codec's own rate inside. With ``dedup``, runs of identical frames are collapsed and restored
on decode by a mean run length per codebook-0 code fitted on the fitting audio.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from most.audio import SAMPLE_RATE, resample
from most.units.base import (
    base_meta,
    content_hash,
    differing,
    read_tokenizer,
    tensor_source,
    to_waveform,
    write_tokenizer,
)
from most.units.codebooks import collapse_frames, expand_frames, flatten, offsets, unflatten
from most.units.dedup import fit_durations
from most.units.hubert_kmeans import model_fingerprint
from most.units.sample import Utterances, fit_audio

#: Part of the hash: bump it whenever a code change can change an id.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Family:
    """How one codec family encodes ``(1, 1, n)`` audio to ``(C, T)`` codes and decodes back."""

    n_quantizers: Callable[[Any], int]
    """The most codebooks the model has."""
    encode: Callable[[Any, torch.Tensor, int], torch.Tensor]
    decode: Callable[[Any, torch.Tensor], torch.Tensor]
    """``(C, T)`` codes -> ``(n,)`` audio at the model's rate."""


def _encodec_encode(model, x: torch.Tensor, n: int) -> torch.Tensor:
    q = model.quantizer
    bandwidth = next(
        b for b in model.config.target_bandwidths if q.get_num_quantizers_for_bandwidth(b) >= n
    )
    return model.encode(x, bandwidth=bandwidth).audio_codes[0, 0, :n]


def _encodec_decode(model, codes: torch.Tensor) -> torch.Tensor:
    return model.decode(codes[None, None], [None]).audio_values[0, 0]


def _encodec_quantizers(model) -> int:
    q = model.quantizer
    return max(q.get_num_quantizers_for_bandwidth(b) for b in model.config.target_bandwidths)


FAMILIES: dict[str, Family] = {
    "encodec": Family(_encodec_quantizers, _encodec_encode, _encodec_decode),
    "dac": Family(
        lambda m: m.config.n_codebooks,
        lambda m, x, n: m.encode(x, n_quantizers=n).audio_codes[0],
        lambda m, codes: m.decode(audio_codes=codes[None]).audio_values[0],
    ),
    "mimi": Family(
        lambda m: m.config.num_quantizers,
        lambda m, x, n: m.encode(x, num_quantizers=n).audio_codes[0],
        lambda m, codes: m.decode(codes[None]).audio_values[0, 0],
    ),
}


def load_codec(model_path: Path) -> tuple[Any, Family]:
    """The codec model in a local HF folder (eval mode) and its family; a folder that is not one
    raises a one-line error naming it."""
    config = Path(model_path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{model_path}: no config.json (a local HF codec folder?)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise ValueError(f"{config}: not valid JSON ({e})") from None
    if model_type not in FAMILIES:
        raise ValueError(
            f"{config}: model_type {model_type!r} is not a codec here; supported: "
            f"{', '.join(FAMILIES)}"
        )
    from transformers import AutoModel  # imported here: the other kinds never need it

    try:
        model = AutoModel.from_pretrained(str(model_path)).eval()
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{model_path}: cannot load the {model_type} codec ({first})") from None
    cfg = model.config
    if model_type == "encodec" and (cfg.chunk_length is not None or cfg.normalize):
        # Chunked, normalised EnCodec (the 48 kHz model) keeps a scale per chunk outside the codes.
        raise ValueError(f"{model_path}: chunked or normalised EnCodec is not supported")
    if getattr(cfg, "audio_channels", 1) != 1:
        raise ValueError(f"{model_path}: only mono codecs are supported")
    return model, FAMILIES[model_type]


class CodecTokenizer:
    """Units = the first ``n_codebooks`` codes of a local neural codec, frame by frame.

    Args:
        model_path: local HF folder of an EnCodec, DAC or Mimi model.
        n_codebooks: codebooks kept per frame (``C``).
        durations: ``(K,)`` mean run length of a de-duplicated frame by its codebook-0 code.
        dedup: collapse runs of identical frames in ``encode``.
    """

    kind = "codec"
    has_decoder = True

    def __init__(
        self,
        model_path: str | Path,
        n_codebooks: int,
        durations: torch.Tensor | None = None,
        dedup: bool = False,
    ):
        self.model_path = Path(model_path)
        self.model, self.family = load_codec(self.model_path)
        available = self.family.n_quantizers(self.model)
        if not 1 <= n_codebooks <= available:
            raise ValueError(
                f"{model_path}: n_codebooks must be in [1, {available}], got {n_codebooks}"
            )
        self.n_codebooks = n_codebooks
        self.codebook_size = int(self.model.config.codebook_size)
        self.model_type = self.model.config.model_type
        self.model_rate = int(self.model.config.sampling_rate)
        k = self.codebook_size
        self.durations = torch.ones(k) if durations is None else durations.float()
        if self.durations.shape != (k,):
            raise ValueError(f"durations must be ({k},), got {tuple(self.durations.shape)}")
        self.dedup = dedup
        self.vocab_size = n_codebooks * k
        self.frame_rate = float(self.model.config.frame_rate)
        self.sample_rate = SAMPLE_RATE
        self.fingerprint = model_fingerprint(self.model_path)
        settings = {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "n_codebooks": n_codebooks,
            "dedup": dedup,
            "model": self.fingerprint,
        }
        self._hash = content_hash(settings, {})

    @property
    def hash(self) -> str:
        return self._hash

    @property
    def offsets(self) -> torch.Tensor:
        """``(C,)`` first id of each codebook in the flat vocabulary."""
        return offsets(self.n_codebooks, self.codebook_size)

    @classmethod
    def fit(
        cls,
        wavs: Sequence[torch.Tensor | np.ndarray],
        *,
        model_path: str | Path,
        n_codebooks: int = 4,
        dedup: bool = False,
    ) -> CodecTokenizer:
        """Nothing to learn but, with ``dedup``, the frame durations (from ``(n_i,)`` 16 kHz audio)."""
        tok = cls(model_path, n_codebooks, dedup=False)
        if not dedup:
            return tok
        runs = [collapse_frames(tok.encode_codes(w, SAMPLE_RATE)) for w in wavs]
        durations = fit_durations(((c[:, 0], n) for c, n in runs), tok.codebook_size)
        return cls(model_path, n_codebooks, durations, dedup=True)

    # ---- encode / decode -----------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """``(n,)`` audio -> ``(U * C,)`` flat ids (see :mod:`most.units.codebooks`)."""
        return flatten(self.encode_codes(wav, sr), self.codebook_size)

    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        # One at a time: padding a batch would change the codes of the shorter items.
        return [self.encode(w, sr) for w in wavs]

    @torch.no_grad()
    def encode_codes(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """``(n,)`` audio -> ``(U, C)`` codes in ``[0, K)`` (``U`` frames, fewer with ``dedup``)."""
        x = to_waveform(wav, sr, self.model_rate)
        codes = self.family.encode(self.model, x[None, None], self.n_codebooks).T.long()
        return collapse_frames(codes)[0] if self.dedup else codes.contiguous()

    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """``(U * C,)`` flat ids -> ``(n,)`` float32 audio at 16 kHz."""
        return self.decode_codes(unflatten(units, self.n_codebooks, self.codebook_size))

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(U, c)`` codes of the first ``c <= C`` codebooks -> ``(n,)`` float32 audio at 16 kHz."""
        codes = torch.as_tensor(codes).long()
        bad = codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size)
        if codes.dim() != 2 or not 1 <= codes.shape[1] <= self.n_codebooks or bad:
            raise ValueError(
                f"codes must be (frames, 1..{self.n_codebooks}) in [0, {self.codebook_size})"
            )
        if self.dedup:
            codes = expand_frames(codes, self.durations)
        if codes.shape[0] == 0:
            return torch.zeros(0)
        audio = self.family.decode(self.model, codes.T.contiguous()).float().numpy()
        return torch.from_numpy(resample(audio, self.model_rate, self.sample_rate).copy())

    def decoder_settings(self) -> dict[str, Any]:
        return {
            "vocoder": f"{self.model_type} codec decoder",
            "model_path": str(self.model_path.resolve()),
            "model_fingerprint": self.fingerprint,
            "model_sample_rate": self.model_rate,
            "codebooks": {
                "n_codebooks": self.n_codebooks,
                "codebook_size": self.codebook_size,
                "ids": "frame-major, id = codebook * codebook_size + code",
            },
            "durations": tensor_source(
                "durations", self.durations, "mean run length of a frame by its codebook-0 code"
            ),
        }

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        meta = {
            **base_meta(self),
            "n_codebooks": self.n_codebooks,
            "codebook_size": self.codebook_size,
            "model_path": str(self.model_path.resolve()),
            "model_type": self.model_type,
            "model_fingerprint": self.fingerprint,
            "version": FORMAT_VERSION,
        }
        return write_tokenizer(directory, meta, {"durations": self.durations})

    @classmethod
    def load(cls, directory: str | Path) -> CodecTokenizer:
        meta, tensors = read_tokenizer(directory)
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported codec version {meta.get('version')}")
        tok = cls(meta["model_path"], meta["n_codebooks"], tensors["durations"], meta["dedup"])
        if tok.fingerprint != meta["model_fingerprint"]:
            raise ValueError(
                f"{directory}: the model at {meta['model_path']} changed since the tokenizer was made"
            )
        return tok


@dataclass
class CodecConfig:
    """``--tokenizer.codec.*``: a local EnCodec / DAC / Mimi folder and how many codebooks to keep."""

    model_path: Path | None = None
    """Local HF folder of the codec (``model_type`` encodec, dac or mimi); needed to fit."""
    n_codebooks: int = 4
    """Codebooks kept per frame (UniAudio: 3); the unit vocabulary is ``n_codebooks`` times the
    codec's codebook size."""

    def __post_init__(self) -> None:
        if not 1 <= self.n_codebooks <= 32:
            raise ValueError(
                f"tokenizer.codec.n_codebooks must be in [1, 32], got {self.n_codebooks}"
            )

    def sample(self, speech: datasets.DatasetDict, seed: int, fit_seconds: float) -> Utterances:
        if self.model_path is None:
            raise ValueError(
                "codec units need tokenizer.codec.model_path (a local HF codec folder)"
            )
        return fit_audio(speech, fit_seconds, seed)

    def fit(
        self, audio: Utterances, *, seed: int, fit_seconds: float, dedup: bool, gl_iters: int
    ) -> CodecTokenizer:
        assert self.model_path is not None  # checked in sample
        return CodecTokenizer.fit(
            audio.wavs, model_path=self.model_path, n_codebooks=self.n_codebooks, dedup=dedup
        )

    def fit_settings(self) -> dict:
        return {"model_path": None if self.model_path is None else str(self.model_path)}

    def differences(self, tok: CodecTokenizer) -> dict:
        return differing(n_codebooks=(tok.n_codebooks, self.n_codebooks))
