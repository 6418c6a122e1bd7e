"""Unit tokenizer benchmark: do units encode *what* is said rather than *who* says it?

Speaks ``--n`` test sentences (``RUN/data/speech/test``: never seen by a tokenizer's fitting) with
four of the run's training voices, twice each (two jitter seeds), encodes them, and prints one JSON
object with mean normalised edit distances between unit sequences::

    same_voice    one sentence, one voice, two readings     (the noise floor)
    cross_voice   one sentence, two voices
    different     two sentences, two voices                 (the ceiling)
    voice_ratio   (cross_voice - same_voice) / (different - same_voice): 0 = voice-invariant

for the run's tokenizer and, as the baseline measured in the same run, log-mel k-means (K=512,
50 Hz) fitted on the run's first 400 training utterances. Needs espeak-ng and a finished
``most units``::

    python benchmarks/unit_invariance.py --run runs/demo [--n 40]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

from most.audio import decode_audio
from most.corpora.speech import Voice, synthesize
from most.run import Run
from most.units import load_tokenizer
from most.units.base import UnitTokenizer
from most.units.mel_kmeans import MelKMeansTokenizer


def distances(tok: UnitTokenizer, audio: dict[tuple[int, int, int], np.ndarray], n: int) -> dict:
    seqs = {key: tok.encode(wav, 16_000).tolist() for key, wav in audio.items()}
    n_voices = 1 + max(v for _, v, _ in audio)
    same, cross, diff = [], [], []
    for i in range(n):
        for a in range(n_voices):
            same.append(Levenshtein.normalized_distance(seqs[i, a, 0], seqs[i, a, 1]))
            for b in range(a + 1, n_voices):
                cross.append(Levenshtein.normalized_distance(seqs[i, a, 0], seqs[i, b, 0]))
                diff.append(Levenshtein.normalized_distance(seqs[i, a, 0], seqs[(i + 1) % n, b, 0]))
    s, c, d = float(np.mean(same)), float(np.mean(cross)), float(np.mean(diff))
    seconds = sum(len(w) for w in audio.values()) / 16_000
    return {
        "kind": tok.kind,
        "vocab_size": tok.vocab_size,
        "same_voice": round(s, 3),
        "cross_voice": round(c, 3),
        "different": round(d, 3),
        "voice_ratio": round((c - s) / max(d - s, 1e-9), 3),
        "units_per_s": round(sum(len(x) for x in seqs.values()) / seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--n", type=int, default=40, help="test sentences")
    args = ap.parse_args()
    speech = Run(args.run).load_data("speech")
    voices = list(dict.fromkeys(speech["train"]["voice"]))[:4]
    texts = speech["test"]["text"][: args.n]
    t0 = time.perf_counter()
    audio = {
        (i, v, r): synthesize(text, Voice.parse(voice), f"bench{r}-{i}")
        for i, text in enumerate(texts)
        for v, voice in enumerate(voices)
        for r in range(2)
    }
    fit = speech["train"].select(range(min(400, len(speech["train"])))).with_format("numpy")
    baseline = MelKMeansTokenizer.fit([decode_audio(row["audio"]) for row in fit], k=512)
    out = {
        "run": str(args.run),
        "sentences": len(texts),
        "voices": voices,
        "tokenizer": distances(load_tokenizer(args.run), audio, len(texts)),
        "baseline_mel_kmeans": distances(baseline, audio, len(texts)),
        "seconds": None,
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
