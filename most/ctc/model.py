"""A small CTC recogniser: log-mel -> frame stacking -> Transformer -> CTC over letters (or phonemes).

Two independent copies are trained from scratch on a run's own speech: the embedded-default judge
(:mod:`most.eval.judges.ctc`, transcribes the model's TTS output) and the encoder of the unit tokenizer
(:mod:`most.units.ctc_phones`: phoneme targets, its best path is the units; or
:mod:`most.units.ctc_kmeans`: letters, its hidden states clustered into units).
Small on purpose (≈0.8 M parameters): it must train in about three minutes on two CPU cores.
Shapes: features ``(B, T, 80)`` at 100 frames/s -> stack 4 frames -> ``(B, T/4, 320)``
-> Transformer encoder ``(B, T/4, width)`` -> ``(B, T/4, vocab)`` log-probabilities, blank = id 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from most.audio import SAMPLE_RATE
from most.dropout import dropout
from most.mel import LogMel, MelSpec

#: Character vocabulary; index 0 is the CTC blank.
CHARS = " abcdefghijklmnopqrstuvwxyz'"
BLANK = 0
#: Frames stacked into one encoder step: 100 -> 25 steps per second.
STACK = 4
MEL = MelSpec(sample_rate=SAMPLE_RATE, n_mels=80, n_fft=400, win_length=400, hop_length=160)


@dataclass(frozen=True)
class CTCModelConfig:
    """Size of the judge (``--model.*``)."""

    width: int = 144
    """Transformer width."""
    layers: int = 3
    """Transformer encoder layers."""
    heads: int = 4
    ff: int = 576
    """Feed-forward width."""
    dropout: float = 0.1
    attn_window: int | None = None
    """Encoder steps (25 per second) each step attends to on either side; None = the whole
    utterance. A window makes a step's state depend on its neighbourhood only, so a word gets
    similar states alone and inside any sentence (see the units recipe)."""
    n_symbols: int | None = None
    """Output symbols besides the blank; None = the letters of :data:`CHARS` (the judge). The
    ``ctc_phones`` units set it to their phoneme inventory's size."""

    def __post_init__(self) -> None:
        if min(self.width, self.layers, self.heads, self.ff) <= 0:
            raise ValueError("model.width, model.layers, model.heads and model.ff must be > 0")
        if self.width % self.heads:
            raise ValueError(f"model.width {self.width} is not divisible by model.heads")
        if self.attn_window is not None and self.attn_window < 1:
            raise ValueError(f"model.attn_window must be >= 1 or null, got {self.attn_window}")
        if self.n_symbols is not None and self.n_symbols < 1:
            raise ValueError(f"model.n_symbols must be >= 1 or null, got {self.n_symbols}")

    @property
    def vocab(self) -> int:
        """CTC classes: the symbols and the blank (id 0)."""
        return (self.n_symbols or len(CHARS)) + 1

    def to_dict(self) -> dict:
        """The config as saved; ``attn_window`` and ``n_symbols`` only when set, so the saved form
        (and the unit tokenizer hash built from it) of a whole-utterance letter encoder is what it
        was before those fields existed."""
        return {k: v for k, v in asdict(self).items() if k not in _OPTIONAL or v is not None}


#: Config fields left out of :meth:`CTCModelConfig.to_dict` when unset (``None``).
_OPTIONAL = ("attn_window", "n_symbols")


def text_to_ids(text: str) -> list[int]:
    """Lower-cased characters of ``CHARS`` -> ids ``1..``; anything else becomes a space."""
    text = re.sub(r"[^a-z' ]", " ", text.lower())
    return [CHARS.index(c) + 1 for c in " ".join(text.split())]


def ids_to_text(ids: Sequence[int]) -> str:
    return "".join(CHARS[i - 1] for i in ids if i != BLANK)


def _sinusoids(n: int, d: int) -> Tensor:
    """``(n, d)`` fixed sinusoidal positions: no length limit, so minute-long real audio works."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10_000.0) / d))
    out = torch.zeros(n, d)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


class CTCRecognizer(nn.Module):
    """Frame stacking (x4) + Transformer encoder + linear CTC head.

    Stacking 4 frames (a reshape) instead of strided convolutions, and attention instead of an RNN:
    on a shared 2-core CPU, matmuls are the only operations that run near peak (a BiGRU of the same
    size trains about five times slower per step here).
    """

    def __init__(self, cfg: CTCModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Linear(STACK * MEL.n_mels, cfg.width)
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab)

    @staticmethod
    def out_lengths(lengths: Tensor) -> Tensor:
        """Frames after stacking: ``ceil(T / 4)``."""
        return (lengths + STACK - 1) // STACK

    def hidden(
        self, feats: Tensor, lengths: Tensor, layer: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Output of encoder layer ``layer`` (1-based; ``None``: the last) ``(B, T', width)``,
        and ``lengths' (B,)``."""
        n_layers = len(self.encoder.layers)
        layer = n_layers if layer is None else layer
        if not 1 <= layer <= n_layers:
            raise ValueError(f"layer must be in [1, {n_layers}], got {layer}")
        b, t, f = feats.shape
        t4 = -(-t // STACK)
        x = nn.functional.pad(feats, (0, 0, 0, t4 * STACK - t)).reshape(b, t4, STACK * f)
        x = self.inp(x) + _sinusoids(t4, self.cfg.width).to(x)
        out_len = self.out_lengths(lengths)
        steps = torch.arange(t4, device=x.device)
        pad_mask = steps[None] >= out_len[:, None].to(x.device)
        band = None  # True = may not attend
        if self.cfg.attn_window is not None:
            band = (steps[:, None] - steps[None]).abs() > self.cfg.attn_window
        blocked = pad_mask[:, None, :] if band is None else band[None] | pad_mask[:, None, :]
        for block in self.encoder.layers[:layer]:
            if self.training:
                x = _train_block(block, x, blocked, self.cfg.dropout)
            else:
                x = block(x, src_mask=band, src_key_padding_mask=pad_mask)
            if band is not None:  # a padding step with no real step in its window attended to
                x = x.masked_fill(pad_mask[..., None], 0.0)  # nothing: NaN in eval mode
        return x, out_len

    def prefixed_state(self, prefix: str) -> dict[str, Tensor]:
        """The weights named ``prefix + name``, to be saved beside other tensors (a unit
        tokenizer's ``encoder.*``)."""
        return {prefix + k: v for k, v in self.state_dict().items()}

    @classmethod
    def from_prefixed(cls, cfg: dict, tensors: dict[str, Tensor], prefix: str) -> CTCRecognizer:
        """Rebuild from a saved :meth:`CTCModelConfig.to_dict` and the ``prefix``-named tensors
        among ``tensors`` (:meth:`prefixed_state`)."""
        model = cls(CTCModelConfig(**cfg))
        n = len(prefix)
        model.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(prefix)})
        return model.eval()

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``feats (B, T, 80)``, ``lengths (B,)`` -> log-probs ``(B, T', V)``, ``lengths' (B,)``."""
        x, out_len = self.hidden(feats, lengths)
        # The head and the log-probs in fp32 under bf16 autocast: CTC needs their precision.
        with torch.autocast(x.device.type, enabled=False):
            return self.head(self.norm(x.float())).log_softmax(-1), out_len


def _train_block(block: nn.TransformerEncoderLayer, x: Tensor, blocked: Tensor, p: float) -> Tensor:
    """The training forward of a pre-norm ``block`` on ``x (B, T, width)``: the same computation
    as ``block(x, ...)`` in training mode (attention-weight, attention-output and feed-forward
    dropout ``p``), with :func:`most.dropout.dropout`'s cheap mask instead of torch's.
    ``blocked (B or 1, T, T)`` is True where a step may not attend; a step with no key left
    attends to nothing (zero weights), as in torch's attention."""
    attn = block.self_attn
    b, t, width = x.shape
    heads = attn.num_heads
    qkv = nn.functional.linear(block.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, t, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-1, -2)) * (width // heads) ** -0.5
    mask = blocked[:, None]
    weights = scores.masked_fill(mask, torch.finfo(scores.dtype).min).softmax(-1)
    weights = dropout(weights.masked_fill(mask, 0.0), p)
    heard = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(b, t, width)
    x = x + dropout(attn.out_proj(heard), p)
    ff = block.linear2(dropout(block.activation(block.linear1(block.norm2(x))), p))
    return x + dropout(ff, p)


_LOGMEL = LogMel(MEL)


def features(wavs: Sequence[np.ndarray | Tensor]) -> list[Tensor]:
    """16 kHz waveforms -> per-utterance mean/variance-normalised log-mel ``(T_i, 80)``."""
    mels = _LOGMEL.batch([torch.tensor(np.asarray(w), dtype=torch.float32) for w in wavs])
    return [(m - m.mean(0)) / (m.std(0) + 1e-5) for m in mels]


def stack_steps(frames: Tensor) -> Tensor:
    """``(T, n)`` frames -> ``(ceil(T / 4), 4, n)``: the frames under each encoder step (see
    :meth:`CTCRecognizer.out_lengths`), the last step filled up by repeating the last frame."""
    frames = torch.cat([frames, frames[-1:].expand(-frames.shape[0] % STACK, -1)])
    return frames.reshape(-1, STACK, frames.shape[-1])


def pad(feats: Sequence[Tensor], multiple: int = 1) -> tuple[Tensor, Tensor]:
    """List of ``(T_i, 80)`` -> ``(B, T, 80)`` zero-padded, ``lengths (B,)``; ``T`` is the longest
    ``T_i`` rounded up to a multiple of ``multiple`` frames."""
    lengths = torch.tensor([f.shape[0] for f in feats])
    x = nn.utils.rnn.pad_sequence(list(feats), batch_first=True)
    extra = -x.shape[1] % multiple
    return (nn.functional.pad(x, (0, 0, 0, extra)) if extra else x), lengths


def greedy_decode(logp: Tensor, lengths: Tensor) -> list[str]:
    """Best path: argmax per frame, collapse repeats, drop blanks. ``(B, T, V)`` -> B strings."""
    best = logp.argmax(-1)
    out = []
    for row, n in zip(best, lengths.tolist(), strict=True):
        ids = torch.unique_consecutive(row[:n]).tolist()
        out.append(" ".join(ids_to_text(ids).split()))
    return out
