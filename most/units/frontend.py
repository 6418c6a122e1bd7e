"""Frozen audio features for the continuous input path (:mod:`most.moe.adapter`).

Where units turn audio into ids, a frontend turns it into frames the audio adapter maps into the
LLM's embedding space. Nothing here trains; every kind runs in eval mode without gradients:

- ``mel``: the CTC recogniser's input, 80 per-utterance-normalised log-mel bins at 100 frames/s
  (:func:`most.ctc.model.features`); no file needed.
- ``ctc``: the hidden states of the CTC recogniser inside a unit tokenizer folder (``ctc_phones``
  or ``ctc_kmeans``, e.g. ``RUN/units``), 25 frames/s: phonetic, voice-robust features.
- ``hf``: a local HF audio encoder folder: HuBERT / wav2vec2 / WavLM (``hidden_states[layer]`` of
  the raw waveform) or Whisper's encoder (log-mel input, padded to its fixed window, cut back to
  the utterance's frames).

Shapes: ``features(wav)`` ``(n,)`` 16 kHz -> ``(F, dim)``; ``batch(wavs)`` -> ``(B, F_max, dim)``
zero-padded and ``mask (B, F_max)`` bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from most.audio import SAMPLE_RATE
from most.ctc.model import MEL, STACK, CTCRecognizer, features

FrontendKind = Literal["mel", "ctc", "hf"]


@dataclass
class FrontendConfig:
    """Which frozen features feed the adapter (``adapter.frontend`` in a stage recipe)."""

    kind: FrontendKind = "mel"
    """``mel`` (log-mel), ``ctc`` (the unit tokenizer's CTC recogniser states) or ``hf`` (a local
    HuBERT / wav2vec2 / WavLM / Whisper encoder folder)."""
    path: str | None = None
    """``ctc``: a unit tokenizer folder (or RUN/units) with a CTC encoder; ``hf``: the encoder's
    HF folder. Unused for ``mel``."""
    layer: int | None = None
    """``ctc``: encoder layer, 1-based; ``hf``: ``hidden_states`` index. None: the last."""

    def __post_init__(self) -> None:
        if self.kind not in ("mel", "ctc", "hf"):
            raise ValueError(f"adapter.frontend.kind must be mel, ctc or hf, got {self.kind!r}")
        if self.kind != "mel" and not self.path:
            raise ValueError(f"adapter.frontend.kind {self.kind} needs adapter.frontend.path")
        if self.path is not None:
            self.path = str(self.path)

    def to_dict(self) -> dict:
        return asdict(self)


class AudioFrontend:
    """A frozen feature extractor: ``dim`` features per frame at ``frame_rate`` frames/s."""

    def __init__(self, cfg: FrontendConfig) -> None:
        self.cfg = cfg
        self._encoder: CTCRecognizer | None = None
        self._hf = None
        if cfg.kind == "mel":
            self.dim, self.frame_rate = MEL.n_mels, MEL.frame_rate
        elif cfg.kind == "ctc":
            self._encoder = _ctc_encoder(Path(cfg.path))
            self.dim, self.frame_rate = self._encoder.cfg.width, MEL.frame_rate / STACK
        else:
            self._hf, self.dim, self.frame_rate = _hf_encoder(Path(cfg.path))

    @torch.no_grad()
    def features(self, wav: np.ndarray | Tensor) -> Tensor:
        """``(n,)`` float audio at 16 kHz -> ``(F, dim)`` float32."""
        wav = torch.as_tensor(np.asarray(wav), dtype=torch.float32).reshape(-1)
        if wav.numel() == 0:
            raise ValueError("empty audio: no features")
        if self.cfg.kind == "hf":
            return self._hf_features(wav)
        (mel,) = features([wav.numpy()])
        if self.cfg.kind == "mel":
            return mel
        x, _ = self._encoder.hidden(mel[None], torch.tensor([mel.shape[0]]), self.cfg.layer)
        return x[0]

    def batch(self, wavs: Sequence[np.ndarray | Tensor]) -> tuple[Tensor, Tensor]:
        """List of ``(n_i,)`` -> ``feats (B, F_max, dim)`` zero-padded, ``mask (B, F_max)``."""
        return pad_features([self.features(w) for w in wavs])

    def _hf_features(self, wav: Tensor) -> Tensor:
        model, cfg = self._hf, self._hf.config
        if cfg.model_type == "whisper":
            from transformers import WhisperFeatureExtractor

            window = 2 * cfg.max_source_positions  # mel frames (10 ms) the encoder requires
            fe = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins)
            mel = fe(
                wav.numpy(),
                sampling_rate=SAMPLE_RATE,
                max_length=window * 160,
                truncation=True,
                return_tensors="pt",
            ).input_features
            n = min(-(-wav.numel() // 320), cfg.max_source_positions)  # 20 ms encoder frames
            return model(mel.to(model.dtype)).last_hidden_state[0, :n].float()
        # HuBERT-family encoders expect zero-mean unit-variance input (their feature extractor's).
        x = (wav - wav.mean()) / (wav.std() + 1e-7)
        hidden = model(x[None].to(model.dtype), output_hidden_states=True).hidden_states
        layer = len(hidden) - 1 if self.cfg.layer is None else self.cfg.layer
        if not 0 <= layer < len(hidden):
            raise ValueError(f"{self.cfg.path}: layer {layer} not in [0, {len(hidden) - 1}]")
        return hidden[layer][0].float()


def pad_features(feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """List of ``(F_i, D)`` -> ``(B, F_max, D)`` zero-padded and ``mask (B, F_max)`` bool."""
    lengths = torch.tensor([f.shape[0] for f in feats])
    out = torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True)
    return out, torch.arange(out.shape[1])[None] < lengths[:, None]


def _ctc_encoder(path: Path) -> CTCRecognizer:
    """The CTC recogniser inside the unit tokenizer at ``path``."""
    from most.units.kinds import load_tokenizer

    tok = load_tokenizer(path)
    encoder = getattr(tok, "encoder", None)
    if not isinstance(encoder, CTCRecognizer):
        raise ValueError(f"{path}: a {tok.kind} tokenizer has no CTC encoder (use ctc_phones)")
    return encoder.eval()


def _hf_encoder(path: Path):
    """``(model, dim, frame_rate)`` of the local HF audio encoder at ``path``."""
    from transformers import AutoConfig, AutoModel

    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (a local HF audio encoder folder?)")
    cfg = AutoConfig.from_pretrained(str(path))
    if cfg.model_type == "whisper":
        from transformers import WhisperModel

        model = WhisperModel.from_pretrained(str(path)).get_encoder().eval()
        return model, cfg.d_model, SAMPLE_RATE / 320
    if not hasattr(cfg, "conv_stride"):
        raise ValueError(f"{path}: {cfg.model_type} is not a HuBERT/wav2vec2/Whisper encoder")
    model = AutoModel.from_pretrained(str(path)).eval()
    return model, cfg.hidden_size, SAMPLE_RATE / int(np.prod(cfg.conv_stride))
