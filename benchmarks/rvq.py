"""Residual k-means units (``rvq``) on real speech: error per number of codebooks, and speed.

Fits ``rvq`` on the first ``--fit`` utterances of the shared speechocean762 ``train/`` split and
measures on the first ``--eval`` utterances of its ``test/`` split (other speakers, never fitted
on), one thread. Prints one JSON object::

    fit_seconds / fit_s         audio fitted on / wall seconds the fit took
    per_codebooks[c]            with the first c codebooks:
        feature_mse             mean squared log-mel error of the quantised frames
        relative_mse            feature_mse / the frames' variance (1.0 = a constant frame)
        resynth_mel_l1          level-free mean |log-mel difference| of decoded audio against
                                the recording (dedup off, so frames align)
        kept_with_dedup         share of frames left once runs of identical frames collapse
    vocoder_mel_l1              the same for the unquantised log-mel through the same vocoder: the
                                floor no number of codebooks can pass
    encode_xrt / decode_xrt     audio seconds per CPU second (thread time) of encode and of
                                decode (all codebooks; Griffin-Lim is most of decode)
    ids_per_second              flat ids per second of audio (frame rate x codebooks)
    codec_xrt                   (``--codec``) encode/decode x real time of full-size EnCodec 24 kHz,
                                DAC 16 kHz and Mimi (their default configs, random weights: the
                                compute is the real one) through the ``codec`` kind, 4 codebooks

Usage: ``python benchmarks/rvq.py [--realdata ../shared/realdata] [--fit 200] [--eval 40]
[--codebooks 8] [--k 256] [--gl-iters 24] [--codec]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from most.audio import read_audio
from most.units.codebooks import collapse_frames
from most.units.codec import CodecTokenizer
from most.units.rvq import RVQTokenizer, reconstruct, residual_assign

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def utterances(root: Path, split: str, n: int) -> list:
    lines = (root / "speechocean762" / split / "wav.scp").read_text().split("\n")
    paths = [root / "speechocean762" / line.split()[1] for line in lines if line.strip()][:n]
    return [read_audio(p) for p in paths]


def level_free_l1(x: torch.Tensor, y: torch.Tensor) -> float:
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    return float(((x - x.mean()) - (y - y.mean())).abs().mean())


def codec_speed(test: list) -> dict:
    """Encode/decode x real time (thread time) of full-size codecs on ``test`` through the kind."""
    from transformers import (
        DacConfig,
        DacModel,
        EncodecConfig,
        EncodecModel,
        MimiConfig,
        MimiModel,
    )

    seconds = sum(len(w) for w in test) / 16_000
    out = {}
    for name, model in (
        ("encodec_24khz", EncodecModel(EncodecConfig())),
        ("dac_16khz", DacModel(DacConfig(downsampling_ratios=[2, 4, 5, 8], n_codebooks=12))),
        ("mimi", MimiModel(MimiConfig())),
    ):
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            tok = CodecTokenizer(folder, n_codebooks=4, dedup=False)
            start = time.thread_time()
            ids = [tok.encode(w, 16_000) for w in test]
            encode_s = time.thread_time() - start
            start = time.thread_time()
            for i in ids:
                tok.decode(i)
            decode_s = time.thread_time() - start
        out[name] = {
            "frame_rate": tok.frame_rate,
            "encode_xrt": round(seconds / encode_s, 1),
            "decode_xrt": round(seconds / decode_s, 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=REALDATA)
    ap.add_argument("--fit", type=int, default=200)
    ap.add_argument("--eval", type=int, default=40)
    ap.add_argument("--codebooks", type=int, default=8)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--gl-iters", type=int, default=24)
    ap.add_argument("--codec", action="store_true", help="also time full-size neural codecs")
    args = ap.parse_args()
    torch.set_num_threads(1)

    train = utterances(args.realdata, "train", args.fit)
    test = utterances(args.realdata, "test", args.eval)
    start = time.perf_counter()
    tok = RVQTokenizer.fit(
        train, n_codebooks=args.codebooks, k=args.k, dedup=False, gl_iters=args.gl_iters
    )
    fit_s = time.perf_counter() - start

    feats = [tok.features(w, 16_000) for w in test]
    codes = [residual_assign(f, tok.centroids) for f in feats]
    frames = torch.cat(feats)
    variance = float((frames - frames.mean(0)).pow(2).mean())
    per_codebooks = {}
    for c in range(1, args.codebooks + 1):
        rebuilt = torch.cat([reconstruct(x[:, :c], tok.centroids) for x in codes])
        mse = float((rebuilt - frames).pow(2).mean())
        resynth = [tok.features(tok.decode_codes(x[:, :c]).numpy(), 16_000) for x in codes]
        kept = sum(len(collapse_frames(x[:, :c])[0]) for x in codes) / len(frames)
        per_codebooks[c] = {
            "feature_mse": round(mse, 4),
            "relative_mse": round(mse / variance, 4),
            "resynth_mel_l1": round(
                sum(level_free_l1(r, f) for r, f in zip(resynth, feats, strict=True)) / len(feats),
                4,
            ),
            "kept_with_dedup": round(kept, 3),
        }
    vocoder = [tok.features(tok._vocoder(f).numpy(), 16_000) for f in feats]
    seconds = sum(len(w) for w in test) / 16_000

    start = time.thread_time()
    ids = [tok.encode(w, 16_000) for w in test]
    encode_s = time.thread_time() - start
    start = time.thread_time()
    for i in ids:
        tok.decode(i)
    decode_s = time.thread_time() - start

    out = {
        "machine": platform.processor() or platform.machine(),
        "fit_utterances": len(train),
        "fit_seconds": round(sum(len(w) for w in train) / 16_000, 1),
        "fit_s": round(fit_s, 1),
        "eval_utterances": len(test),
        "eval_seconds": round(seconds, 1),
        "codebooks": args.codebooks,
        "k": args.k,
        "gl_iters": args.gl_iters,
        "per_codebooks": per_codebooks,
        "vocoder_mel_l1": round(
            sum(level_free_l1(r, f) for r, f in zip(vocoder, feats, strict=True)) / len(feats), 4
        ),
        "encode_xrt": round(seconds / encode_s, 1),
        "decode_xrt": round(seconds / decode_s, 1),
        "ids_per_second": tok.frame_rate * tok.n_codebooks,
    }
    if args.codec:
        out["codec_xrt"] = codec_speed(test[:10])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
