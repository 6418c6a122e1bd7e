"""Any HF ASR model in a local folder as a judge: CTC (hubert-large-ls960-ft, as MoST used,
wav2vec2) or seq2seq (Whisper).

The folder must hold the model and its processor (feature extractor + tokenizer), as
``save_pretrained`` writes them. ``config.is_encoder_decoder`` picks the decoding: greedy CTC
(argmax, the processor's CTC decode collapses repeats and blanks) or ``generate`` (greedy; English
transcription is requested when the model's generation config knows languages, as Whisper's does).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class HFJudge:
    """``transcribe`` batches ``batch_size`` utterances through the processor and model."""

    def __init__(self, model, processor, name: str, batch_size: int = 8, max_new_tokens: int = 128):
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    @classmethod
    def load(cls, path: str | Path) -> HFJudge:
        from transformers import (
            AutoConfig,
            AutoModelForCTC,
            AutoModelForSpeechSeq2Seq,
            AutoProcessor,
        )

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no HF ASR model folder (config.json missing)")
        config = AutoConfig.from_pretrained(str(path))
        auto = AutoModelForSpeechSeq2Seq if config.is_encoder_decoder else AutoModelForCTC
        model = auto.from_pretrained(str(path), dtype=torch.float32)
        return cls(model, AutoProcessor.from_pretrained(str(path)), f"hf:{path.name}")

    @torch.no_grad()
    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        out: list[str] = []
        for s in range(0, len(wavs), self.batch_size):
            batch = [np.asarray(w, dtype=np.float32) for w in wavs[s : s + self.batch_size]]
            inputs = self.processor(batch, sampling_rate=16_000, return_tensors="pt", padding=True)
            if self.model.config.is_encoder_decoder:
                out += self._generate(inputs)
            else:
                logits = self.model(**inputs).logits
                out += self.processor.batch_decode(logits.argmax(-1), skip_special_tokens=True)
        return [" ".join(t.split()) for t in out]

    def _generate(self, inputs) -> list[str]:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        if getattr(self.model.generation_config, "lang_to_id", None):
            kwargs |= {"language": "en", "task": "transcribe"}
        ids = self.model.generate(**inputs, **kwargs)
        return self.processor.batch_decode(ids, skip_special_tokens=True)
