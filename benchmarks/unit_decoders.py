"""Unit decoders on real speech: decode speed and how close resynthesis stays to the recording.

Fits ``hubert_kmeans`` (on a tiny random HuBERT saved to a temporary folder: no download) and,
for reference, ``mel_kmeans`` on the first ``--fit`` utterances of the shared speechocean762
``train/`` split, then resynthesises ``whisper/jfk.flac`` (never fitted on). Prints one JSON
object per kind::

    decode_xrt          audio seconds per CPU second of decode on one thread (dedup units, mean
                        run lengths; CPU time keeps it meaningful on a shared machine)
    length_ratio        decoded / original length (dedup units)
    mel_l1              mean |log-mel difference| of decode(encode(audio)) against the audio,
                        level-free (each utterance's mean log-mel removed), frame-aligned
                        (units without dedup)
    mel_l1_shuffled     the same for the same units in a random order (mean of 3 orders)
    templates_l1        (hubert_kmeans) the unit templates themselves against the audio: what
                        the units lose before any vocoder
    vocoder_l1          (hubert_kmeans) the decoded audio against the templates it was given:
                        what Griffin-Lim loses
    constant_l1         (hubert_kmeans) one frame, the mean of those templates, held throughout:
                        what units that carried nothing would reach

Usage: ``python benchmarks/unit_decoders.py [--realdata ../shared/realdata] [--fit 20] [--k 64]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from most.audio import read_audio
from most.ctc.model import MEL
from most.mel import LogMel
from most.units.hubert_kmeans import HubertKMeansTokenizer
from most.units.mel_kmeans import MelKMeansTokenizer

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def tiny_hubert(folder: Path) -> Path:
    """A random HuBERT with base's 320-sample (50 Hz) frames, 2 layers of width 32."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 16),
        conv_kernel=(10, 8, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    HubertModel(config).save_pretrained(str(folder))
    return folder


def mel_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Level-free mean absolute log-mel difference over the common frames (audio or
    ``(T, n_mels)`` log-mel of :data:`most.ctc.model.MEL`)."""
    logmel = LogMel(MEL)
    x, y = (t if t.dim() == 2 else logmel(t) for t in (a, b))
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    return float(((x - x.mean()) - (y - y.mean())).abs().mean())


def measure(dedup_tok, frame_tok, wav: torch.Tensor) -> dict:
    ids = dedup_tok.encode(wav, 16_000)
    dedup_tok.decode(ids)  # warm-up
    start = time.thread_time()
    audio = dedup_tok.decode(ids)
    seconds = time.thread_time() - start
    frames = frame_tok.encode(wav, 16_000)
    gen = torch.Generator().manual_seed(0)
    shuffled = [
        mel_l1(frame_tok.decode(frames[torch.randperm(len(frames), generator=gen)]), wav)
        for _ in range(3)
    ]
    return {
        "decode_xrt": round(len(wav) / 16_000 / seconds, 1),
        "length_ratio": round(len(audio) / len(wav), 3),
        "mel_l1": round(mel_l1(frame_tok.decode(frames), wav), 3),
        "mel_l1_shuffled": round(sum(shuffled) / len(shuffled), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--realdata", type=Path, default=REALDATA)
    parser.add_argument("--fit", type=int, default=20, help="train utterances to fit on")
    parser.add_argument("--k", type=int, default=64)
    args = parser.parse_args()
    corpus = args.realdata / "speechocean762"
    lines = (corpus / "train" / "wav.scp").read_text().split("\n")[: args.fit]
    fit = [read_audio(corpus / line.split()[1]) for line in lines if line.strip()]
    wav = torch.as_tensor(read_audio(args.realdata / "whisper" / "jfk.flac"))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_hubert(Path(tmp))
        hubert = HubertKMeansTokenizer.fit(fit, model_path=model, layer=1, k=args.k)
        decoder = (hubert.templates, hubert.durations)
        frames = HubertKMeansTokenizer(model, 1, hubert.centroids, *decoder, dedup=False)
        out = {"hubert_kmeans": measure(hubert, frames, wav)}
        ids = frames.encode(wav, 16_000)
        templates = frames.templates[ids].reshape(-1, MEL.n_mels)
        out["hubert_kmeans"]["templates_l1"] = round(mel_l1(templates, wav), 3)
        out["hubert_kmeans"]["vocoder_l1"] = round(mel_l1(frames.decode(ids), templates), 3)
        constant = templates.mean(0).expand_as(templates)
        out["hubert_kmeans"]["constant_l1"] = round(mel_l1(constant, wav), 3)
    mel = MelKMeansTokenizer.fit(fit, k=args.k, frame_rate=50)
    mel_frames = MelKMeansTokenizer(mel.spec, mel.centroids, mel.durations, dedup=False)
    out["mel_kmeans"] = measure(mel, mel_frames, wav)
    out["fit_seconds"] = round(sum(len(w) for w in fit) / 16_000, 1)
    out["audio_seconds"] = round(len(wav) / 16_000, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
