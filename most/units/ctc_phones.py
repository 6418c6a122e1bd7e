"""Phoneme units (``ctc_phones``): a small CTC recogniser trained on espeak-ng phoneme transcripts, read greedily.

Why: clustering an encoder's states (``ctc_kmeans``) gives units that still split one sound into
several ids by voice and neighbourhood; the recogniser's own best path is a phoneme string, so the
same word gets the same ids from any voice.

Encoding: per-utterance normalised log-mel (100 Hz) -> :class:`~most.ctc.model.CTCRecognizer`
with one output per phoneme (+ blank) -> argmax per encoder step (25 Hz) -> repeats collapsed,
blanks dropped (CTC's best path). Unit ``i`` is phoneme ``symbols[i]``; ``symbols[0]`` is the
word boundary. Each utterance is encoded on its own, so ids never depend on batch padding.

Decoding (training-free): the best path also says where each unit sits: a unit owns the encoder
steps from its emission to the next unit's. For every (previous unit, unit, step within the unit)
the decoder keeps the mean log-mel of those steps (4 frames each) over the fitting audio, backing
off to (unit, step) and to the unit when a context was seen fewer than ``min_count`` times, and
every (previous unit, unit) its median length in steps. Decoded speech has one neutral voice.
The context matters: a unit's sound depends on its neighbours, and one template per unit alone
resynthesises much less intelligible speech.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from most.audio import SAMPLE_RATE
from most.ctc.model import (
    BLANK,
    MEL,
    STACK,
    CTCModelConfig,
    CTCRecognizer,
    features,
    stack_steps,
)
from most.ctc.train import CTCSchedule, train_recognizer
from most.mel import TARGET_RMS, LogMel
from most.units.base import (
    base_meta,
    content_hash,
    differing,
    read_tokenizer,
    tensor_source,
    to_waveform,
    write_tokenizer,
)
from most.units.dedup import frame_ids
from most.units.encoder import EncoderConfig
from most.units.phones import BOUNDARY, transcribe
from most.units.sample import Utterances
from most.units.vocoder import GriffinLim

#: Part of the hash: bump it whenever a code change (features, decoding) can change an id.
FORMAT_VERSION = 1
ENCODER_PREFIX = "encoder."
#: Steps within a unit the decoder tells apart (later steps share the last template).
CONTEXT_STEPS = 6
#: Fewer fitting examples of a context than this: the decoder backs off to a coarser one.
MIN_COUNT = 3


class CTCPhonesTokenizer:
    """Units = the phonemes a CTC recogniser hears.

    Args:
        encoder: the trained recogniser (``encoder.cfg.n_symbols == len(symbols)``).
        symbols: espeak-ng phoneme of each unit id; ``symbols[0]`` is the word boundary.
        templates: ``(K + 1, K, CONTEXT_STEPS, 4, n_mels)`` log-mel of a unit's step given the
            previous unit (row ``K``: none, the utterance's first unit).
        durations: ``(K + 1, K)`` steps (25 Hz) a unit lasts given the previous unit.
        dedup: also collapse a unit repeated across a blank (a doubled phoneme).
        gl_iters: Griffin-Lim iterations in ``decode`` (does not change ids).
    """

    kind = "ctc_phones"
    has_decoder = True

    def __init__(
        self,
        encoder: CTCRecognizer,
        symbols: Sequence[str],
        templates: torch.Tensor,
        durations: torch.Tensor,
        dedup: bool = True,
        gl_iters: int = 24,
    ):
        k = len(symbols)
        if encoder.cfg.n_symbols != k:
            raise ValueError(f"the encoder has {encoder.cfg.n_symbols} outputs for {k} symbols")
        if len(set(symbols)) != k or symbols[0] != BOUNDARY:
            raise ValueError("symbols must be distinct and start with the word boundary ' '")
        if templates.shape != (k + 1, k, CONTEXT_STEPS, STACK, MEL.n_mels):
            raise ValueError(f"templates must be (K+1, K, {CONTEXT_STEPS}, 4, n_mels)")
        if durations.shape != (k + 1, k):
            raise ValueError("durations must be (K+1, K)")
        self.encoder = encoder.eval()
        self.symbols = list(symbols)
        self.templates = templates.float().contiguous()
        self.durations = durations.float()
        self.dedup = dedup
        self.gl_iters = gl_iters
        self.vocab_size = k
        self.sample_rate = SAMPLE_RATE
        self.frame_rate = MEL.frame_rate / STACK
        self._vocoder = GriffinLim(MEL, n_iter=gl_iters)
        self._hash = content_hash(self._id_settings(), self._id_tensors())

    def _id_settings(self) -> dict:
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "encoder": self.encoder.cfg.to_dict(),
            "symbols": self.symbols,
            "mel": MEL.to_dict(),
            "dedup": self.dedup,
        }

    def _id_tensors(self) -> dict[str, torch.Tensor]:
        return self.encoder.prefixed_state(ENCODER_PREFIX)

    @property
    def hash(self) -> str:
        return self._hash

    # ---- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        wavs: Sequence[np.ndarray],
        texts: Sequence[str],
        voices: Sequence[str | None],
        *,
        fit_seconds: float = 1800.0,
        encoder: CTCModelConfig | None = None,
        schedule: CTCSchedule | None = None,
        dedup: bool = True,
        gl_iters: int = 24,
    ) -> CTCPhonesTokenizer:
        """Transcribe ``texts`` into phonemes in each utterance's accent (``voices``), train the
        encoder on the 16 kHz ``wavs``, then fit the decoder on the first ``fit_seconds``."""
        if not wavs or not len(wavs) == len(texts) == len(voices):
            raise ValueError("fit needs the same number (> 0) of utterances, texts and voices")
        phones = transcribe(texts, voices)
        symbols = [BOUNDARY, *sorted({p for seq in phones for p in seq} - {BOUNDARY})]
        index = {s: i + 1 for i, s in enumerate(symbols)}  # CTC class = unit id + 1
        cfg = replace(encoder or CTCModelConfig(), n_symbols=len(symbols))
        targets = [[index[p] for p in seq] for seq in phones]
        model, _ = train_recognizer(wavs, targets, cfg, schedule or CTCSchedule(), "units")
        n_fit = int(np.searchsorted(np.cumsum([len(w) for w in wavs]), fit_seconds * SAMPLE_RATE))
        fit_wavs = [torch.tensor(w, dtype=torch.float32) for w in wavs[: n_fit + 1]]
        spans = [_spans(_best_path(model, w), dedup) for w in fit_wavs]
        templates, durations = _fit_decoder(fit_wavs, spans, len(symbols))
        return cls(model, symbols, templates, durations, dedup=dedup, gl_iters=gl_iters)

    # ---- encode / decode -----------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        return self.encode_batch([wav], sr)[0]

    @torch.no_grad()
    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        out = []
        for w in wavs:
            ids, _ = _spans(_best_path(self.encoder, to_waveform(w, sr)), self.dedup)
            out.append(ids)
        return out

    @torch.no_grad()
    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """``(U,)`` ids -> ``(n,)`` float32 audio at 16 kHz."""
        k = self.vocab_size
        units = frame_ids(units, k, None)  # checked, not expanded: durations depend on context
        if units.numel() == 0:
            return torch.zeros(0)
        prev = torch.cat([torch.tensor([k]), units[:-1]])
        steps = self.durations[prev, units].round().clamp(min=1).long()
        step = torch.cat([torch.arange(int(n)) for n in steps]).clamp(max=CONTEXT_STEPS - 1)
        frames = self.templates[prev.repeat_interleave(steps), units.repeat_interleave(steps), step]
        return self._vocoder(frames.reshape(-1, MEL.n_mels))

    def decoder_settings(self) -> dict[str, Any]:
        what = (
            f"mean log-mel of the {STACK} mel frames of each (previous unit or start, unit, step "
            f"within the unit, capped at {CONTEXT_STEPS - 1})"
        )
        return {
            **self._vocoder.settings(),
            "templates": tensor_source("templates", self.templates, what),
            "durations": tensor_source(
                "durations", self.durations, "median steps per (previous unit or start, unit)"
            ),
        }

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        meta = {
            **base_meta(self),
            "gl_iters": self.gl_iters,
            "symbols": self.symbols,
            "encoder": self.encoder.cfg.to_dict(),
            "mel": MEL.to_dict(),
            "target_rms": TARGET_RMS,
            "version": FORMAT_VERSION,
        }
        tensors = {**self._id_tensors(), "templates": self.templates, "durations": self.durations}
        return write_tokenizer(directory, meta, tensors)

    @classmethod
    def load(cls, directory: str | Path) -> CTCPhonesTokenizer:
        meta, tensors = read_tokenizer(directory)
        if meta.get("version") != FORMAT_VERSION or meta.get("mel") != MEL.to_dict():
            raise ValueError(f"{directory}: unsupported ctc_phones version or mel settings")
        encoder = CTCRecognizer.from_prefixed(meta["encoder"], tensors, ENCODER_PREFIX)
        return cls(
            encoder,
            meta["symbols"],
            tensors["templates"],
            tensors["durations"],
            dedup=meta["dedup"],
            gl_iters=meta["gl_iters"],
        )


@dataclass
class CTCPhonesConfig:
    """``--tokenizer.ctc_phones.*``: the vocabulary is the phoneme inventory of the transcripts
    (espeak-ng, in each utterance's accent), so there is no ``k``."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def sample(self, speech: datasets.DatasetDict, seed: int, fit_seconds: float) -> Utterances:
        return self.encoder.sample(speech, seed)

    def fit(
        self, audio: Utterances, *, seed: int, fit_seconds: float, dedup: bool, gl_iters: int
    ) -> CTCPhonesTokenizer:
        return CTCPhonesTokenizer.fit(
            audio.wavs,
            [str(t) for t in audio.texts],
            audio.voices,
            fit_seconds=fit_seconds,
            encoder=self.encoder.model(),
            schedule=self.encoder.schedule(seed),
            dedup=dedup,
            gl_iters=gl_iters,
        )

    def fit_settings(self) -> dict:
        return self.encoder.fit_settings()

    def differences(self, tok: CTCPhonesTokenizer) -> dict:
        window = (tok.encoder.cfg.attn_window, self.encoder.window)
        return differing(**{"encoder.window": window})


@torch.no_grad()
def _best_path(model: CTCRecognizer, wav: torch.Tensor) -> torch.Tensor:
    """One 16 kHz utterance -> ``(T/4,)`` most likely CTC class per encoder step."""
    feats = features([wav])[0]
    logp, _ = model(feats[None], torch.tensor([feats.shape[0]]))
    return logp[0].argmax(-1)


def _spans(path: torch.Tensor, dedup: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Best path ``(T,)`` -> unit ids ``(U,)`` and each unit's first step ``(U,)``.

    A unit starts where its class starts a run of non-blank steps; with ``dedup`` a unit equal to
    the previous one (a doubled phoneme, separated by a blank) joins it.
    """
    starts = torch.nonzero(
        (path != BLANK) & torch.cat([torch.tensor([True]), path[1:] != path[:-1]])
    )[:, 0]
    ids = path[starts] - 1
    if dedup and ids.numel():
        keep = torch.cat([torch.tensor([True]), ids[1:] != ids[:-1]])
        ids, starts = ids[keep], starts[keep]
    return ids.long(), starts


def _fit_decoder(
    wavs: Sequence[torch.Tensor], spans: Sequence[tuple[torch.Tensor, torch.Tensor]], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Context templates ``(K+1, K, CONTEXT_STEPS, 4, n_mels)`` and median durations ``(K+1, K)``
    from each utterance's log-mel and its units' spans (steps before the first unit are left out).
    """
    logmel = LogMel(MEL)
    shape = (k + 1, k, CONTEXT_STEPS)
    total = torch.zeros(*shape, STACK * MEL.n_mels, dtype=torch.float64)
    count = torch.zeros(shape, dtype=torch.float64)
    lengths: dict[tuple[int, int], list[int]] = {}
    for wav, (ids, starts) in zip(wavs, spans, strict=True):
        if not ids.numel():
            continue
        m = stack_steps(logmel(wav)).flatten(1).double()
        n_steps = m.shape[0]
        ends = torch.cat([starts[1:], torch.tensor([n_steps])])
        prev = torch.cat([torch.tensor([k]), ids[:-1]])
        rows = zip(prev.tolist(), ids.tolist(), starts.tolist(), ends.tolist(), strict=True)
        for p, u, a, b in rows:
            lengths.setdefault((p, u), []).append(b - a)
            s = torch.arange(b - a).clamp(max=CONTEXT_STEPS - 1)
            total[p, u].index_add_(0, s, m[a:b])
            count[p, u].index_add_(0, s, torch.ones(b - a, dtype=torch.float64))
    # Back-off levels, finest first: (prev, unit, step), (unit, step), (unit), everything.
    by_step, n_step = total.sum(0), count.sum(0)
    by_unit, n_unit = by_step.sum(1), n_step.sum(1)
    overall = by_unit.sum(0) / n_unit.sum().clamp(min=1)
    out = overall.expand(*shape, -1).clone()
    unit_mean = by_unit / n_unit.clamp(min=1)[:, None]
    out = torch.where((n_unit > 0)[None, :, None, None], unit_mean[None, :, None], out)
    step_mean = by_step / n_step.clamp(min=1)[..., None]
    out = torch.where((n_step >= MIN_COUNT)[None, ..., None], step_mean[None], out)
    ctx_mean = total / count.clamp(min=1)[..., None]
    out = torch.where((count >= MIN_COUNT)[..., None], ctx_mean, out)
    templates = out.reshape(*shape, STACK, MEL.n_mels).float()

    all_lengths = [n for ns in lengths.values() for n in ns]
    durations = torch.full((k + 1, k), float(np.median(all_lengths)) if all_lengths else 1.0)
    per_unit: dict[int, list[int]] = {}
    for (_, u), ns in lengths.items():
        per_unit.setdefault(u, []).extend(ns)
    for u, ns in per_unit.items():
        durations[:, u] = float(np.median(ns))
    for (p, u), ns in lengths.items():
        if len(ns) >= MIN_COUNT:
            durations[p, u] = float(np.median(ns))
    return templates, durations
