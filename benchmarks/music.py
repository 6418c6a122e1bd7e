"""Music: how exact the scorer is, and the ceiling of music tokenizers (JSON on stdout).

Renders ``--train`` melodies (fit) and ``--test`` held-out melodies (score) with the synth, then

- ``scorer``: the test melodies scored against their own captions (the scorer's exactness), with
  white noise at 20 dB SNR, and against another melody's caption (what a wrong one scores);
- ``tokenizers``: each melody through a mel k-means tokenizer and back (encode -> Griffin-Lim),
  scored against its caption: the ceiling of any model that writes those units. The default of
  ``most units`` (:class:`most.units.music.MusicUnitsConfig`) is the row ``k512_25fps``.

    python benchmarks/music.py [--train 300] [--test 40]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from most.corpora.music import generate_melody
from most.corpora.music_data import SEED_BLOCK, TEST_OFFSET
from most.corpora.synth import render
from most.eval.music import score_audio, summarize
from most.units.mel_kmeans import MelKMeansTokenizer

#: name -> (K, frames per second, collapse repeats)
TOKENIZERS = {
    "k128_25fps": (128, 25.0, False),
    "k256_25fps": (256, 25.0, False),
    "k512_25fps": (512, 25.0, False),
    "k256_50fps": (256, 50.0, False),
    "k256_50fps_dedup": (256, 50.0, True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--test", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    train = [render(generate_melody(s)) for s in range(args.train)]
    test = [generate_melody(TEST_OFFSET + s) for s in range(args.test)]
    wavs = [render(m) for m in test]
    render_s = time.perf_counter() - t0
    captions = [m.caption() for m in test]
    rng = np.random.default_rng(0)

    def noisy(w: np.ndarray) -> np.ndarray:
        n = rng.standard_normal(len(w)).astype(np.float32)
        return w + n * np.sqrt(np.mean(w**2) / np.mean(n**2)) / 10

    t1 = time.perf_counter()
    own = [score_audio(w, c) for w, c in zip(wavs, captions, strict=True)]
    score_s = (time.perf_counter() - t1) / len(wavs)
    other = [generate_melody(SEED_BLOCK - 1 - s).caption() for s in range(args.test)]
    out: dict = {
        "train": args.train,
        "test": args.test,
        "render_s_per_melody": round(render_s / (args.train + args.test), 4),
        "score_s_per_melody": round(score_s, 4),
        "scorer": {
            "own_caption": summarize(own),
            "own_caption_noise_20db": summarize(
                [score_audio(noisy(w), c) for w, c in zip(wavs, captions, strict=True)]
            ),
            "other_caption": summarize(
                [score_audio(w, c) for w, c in zip(wavs, other, strict=True)]
            ),
        },
        "tokenizers": {},
    }
    for name, (k, fps, dedup) in TOKENIZERS.items():
        t2 = time.perf_counter()
        tok = MelKMeansTokenizer.fit(train, k=k, frame_rate=fps, dedup=dedup, seed=0)
        fit_s = time.perf_counter() - t2
        units = [tok.encode(w, 16000) for w in wavs]
        back = [tok.decode(u).numpy() for u in units]
        seconds = sum(len(w) for w in wavs) / 16000
        out["tokenizers"][name] = {
            **summarize([score_audio(w, c) for w, c in zip(back, captions, strict=True)]),
            "units_per_s": round(sum(len(u) for u in units) / seconds, 1),
            "fit_s": round(fit_s, 1),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
