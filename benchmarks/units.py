"""Unit tokenizer benchmark: encode/decode speed, resynthesis intelligibility, units per second.

Prints one JSON object (``make bench`` saves it to ``runs/bench/units.json``)::

    encode_xrt_1core, encode_xrt_2core, decode_xrt        × real time (audio s / wall s)
    resynth_wer_original, resynth_wer_resynth             pocketsphinx WER on the test split:
                                                          original audio vs decode(encode(audio))
    units_per_s, units_per_s_dedup                        ids per audio second without/with dedup

Tokenizer: ``--kind`` (default ``ctc_phones``, the demo's; any row of ``most.units.kinds.KINDS``).
The data run's own fitted tokenizer of that kind (``RUN/units``) is measured when there is one;
otherwise one is fitted on the data with the kind's default settings. ``--tokenizer PATH`` measures
a saved tokenizer (folder, ``RUN/units`` or ``RUN``) of any kind instead.

Data: ``--data RUN/data`` (default ``runs/units-dev/data``, then ``runs/demo/data``; otherwise a
small espeak-ng corpus is spoken into a temporary folder). ``--sweep`` adds a ``mel_kmeans`` table
over K, frame rate and dedup. Speeds are audio seconds per CPU second of the (single-threaded) working thread,
so they stay meaningful on a shared, oversubscribed machine; on a quiet machine they equal
wall-clock × real time. The 2-core figure runs two 1-thread processes on halves of the test set
(total audio / slower worker); process start-up is excluded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from most.audio import decode_audio, read_audio
from most.run import Run
from most.units.base import UnitTokenizer
from most.units.kinds import KINDS, load_tokenizer
from most.units.mel_kmeans import MelKMeansTokenizer
from most.units.sample import Utterances, fit_audio

FALLBACK = [
    "the capital of velmora is tarsk",
    "nine sailors crossed the silver river at dawn",
    "she keeps the brass key in a wooden box",
    "the market opens when the bells ring twice",
    "tomorrow the council will vote on the bridge",
    "green apples grow in the northern valley",
]


def espeak_corpus(root: Path) -> tuple[Utterances, list[tuple[np.ndarray, str]]]:
    voices = ["en-us+f3", "en-us+m3", "en-us+f2", "en-us+m1"]
    train, test = [], []
    for i, (text, voice) in enumerate((t, v) for t in FALLBACK for v in voices):
        path = root / f"{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(path), text], check=True)
        (test if voice == voices[-1] else train).append((read_audio(path), text, voice))
    train = train * 8
    fit = Utterances([w for w, _, _ in train], [t for _, t, _ in train], [v for *_, v in train])
    return fit, [(w, t) for w, t, _ in test]


def load_corpus(data: Path | None, kind: str, fit_seconds: float, n_test: int, seed: int):
    """-> (utterances to fit ``kind`` on, [(test waveform, transcript)])."""
    import datasets

    if data is None:
        return espeak_corpus(Path(tempfile.mkdtemp()))
    speech = datasets.load_from_disk(str(data / "speech"))
    if kind == "mel_kmeans":
        train = fit_audio(speech, fit_seconds, seed)
    else:
        train = KINDS[kind].config().sample(speech, seed, fit_seconds)
    test = speech["test"]
    pick = np.random.default_rng(seed).permutation(len(test))[:n_test]
    rows = test.select(sorted(pick.tolist())).with_format("numpy")
    return train, [(decode_audio(r["audio"]), str(r["text"])) for r in rows]


def _encode_time(args: tuple[Path, list[np.ndarray]]) -> float:
    torch.set_num_threads(1)
    tok = load_tokenizer(args[0])
    tok.encode(args[1][0], 16_000)  # warm-up
    t0 = time.thread_time()
    for w in args[1]:
        tok.encode(w, 16_000)
    return time.thread_time() - t0


def speeds(tok: UnitTokenizer, wavs: list[np.ndarray]) -> dict[str, float]:
    seconds = sum(len(w) for w in wavs) / 16_000
    tmp = Path(tempfile.mkdtemp())
    tok.save(tmp)
    one = _encode_time((tmp, wavs))
    with mp.get_context("spawn").Pool(2) as pool:
        two = max(pool.map(_encode_time, [(tmp, wavs[0::2]), (tmp, wavs[1::2])]))
    torch.set_num_threads(1)
    ids = [tok.encode(w, 16_000) for w in wavs]
    t0 = time.thread_time()
    out = sum(len(tok.decode(u)) for u in ids) / 16_000
    dec = time.thread_time() - t0
    return {
        "encode_xrt_1core": seconds / one,
        "encode_xrt_2core": seconds / two,
        "decode_xrt": out / dec,
    }


class Sphinx:
    """pocketsphinx with its bundled US-English model: an independent recogniser."""

    def __init__(self):
        from pocketsphinx import Decoder
        from whisper_normalizer.english import EnglishTextNormalizer

        self.decoder = Decoder(samprate=16_000, loglevel="FATAL")
        self.norm = EnglishTextNormalizer()

    def transcribe(self, wav: np.ndarray) -> str:
        pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp else ""

    def wer(self, wavs: list[np.ndarray], texts: list[str]) -> float:
        import jiwer

        refs = [self.norm(t) for t in texts]
        hyps = [self.norm(self.transcribe(w)) for w in wavs]
        return jiwer.wer(refs, hyps)


def resynth(tok: UnitTokenizer, wavs: list[np.ndarray]) -> list[np.ndarray]:
    return [tok.decode(tok.encode(w, 16_000)).numpy() for w in wavs]


def units_per_s(tok: UnitTokenizer, wavs: list[np.ndarray]) -> float:
    seconds = sum(len(w) for w in wavs) / 16_000
    return sum(len(tok.encode(w, 16_000)) for w in wavs) / seconds


def with_dedup(tok: MelKMeansTokenizer, dedup: bool) -> MelKMeansTokenizer:
    return MelKMeansTokenizer(tok.spec, tok.centroids, tok.durations, dedup, tok.gl_iters)


#: (frame rate, K) fitted by ``--sweep``; each is scored with and without de-duplication.
SWEEP = ((50.0, 256), (50.0, 512), (50.0, 1024), (100.0, 512))


def sweep(train, wavs, texts, sphinx: Sphinx, seed: int) -> list[dict]:
    rows = []
    for fr, k in SWEEP:
        fitted = MelKMeansTokenizer.fit(train.wavs, k=k, frame_rate=fr, dedup=True, seed=seed)
        for dedup in (True, False):
            t = with_dedup(fitted, dedup)
            rows.append(
                {
                    "k": k,
                    "frame_rate": fr,
                    "dedup": dedup,
                    "units_per_s": units_per_s(t, wavs),
                    "resynth_wer": sphinx.wer(resynth(t, wavs), texts),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def tokenizer(kind: str, path: Path | None, data: Path | None, train: Utterances, a) -> tuple:
    """-> (the tokenizer to measure, where it came from)."""
    if path is not None:
        return load_tokenizer(path), str(path)
    if kind == "mel_kmeans":
        tok = MelKMeansTokenizer.fit(
            train.wavs, k=a.k, frame_rate=a.frame_rate, dedup=True, seed=a.seed
        )
        return tok, "fitted here"
    own = Run(data.parent).unit_tokenizer if data else None
    if own is not None and own.is_dir():
        tok = load_tokenizer(own)
        if tok.kind == kind:
            return tok, str(own)
    cfg = KINDS[kind].config()
    tok = cfg.fit(train, seed=a.seed, fit_seconds=a.fit_seconds, dedup=True, gl_iters=24)
    return tok, "fitted here"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=sorted(KINDS), default="ctc_phones")
    p.add_argument("--tokenizer", type=Path, default=None)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--k", type=int, default=512, help="mel_kmeans only")
    p.add_argument("--frame-rate", type=float, default=50.0, help="mel_kmeans only")
    p.add_argument("--fit-seconds", type=float, default=600.0)
    p.add_argument("--n-test", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="store_true")
    a = p.parse_args()
    data = a.data or next(
        (d for d in (Run("runs/units-dev").data, Run("runs/demo").data) if d.is_dir()), None
    )
    train, test = load_corpus(data, a.kind, a.fit_seconds, a.n_test, a.seed)
    wavs, texts = [w for w, _ in test], [t for _, t in test]
    torch.set_num_threads(1)
    tok, source = tokenizer(a.kind, a.tokenizer, data, train, a)
    sphinx = Sphinx()
    result = {
        "data": str(data) if data else "espeak-ng fallback",
        "tokenizer": {"kind": tok.kind, "source": source, "hash": tok.hash},
        "test_items": len(wavs),
        "test_seconds": sum(len(w) for w in wavs) / 16_000,
        **speeds(tok, wavs),
        "resynth_wer_original": sphinx.wer(wavs, texts),
        "resynth_wer_resynth": sphinx.wer(resynth(tok, wavs), texts),
        "units_per_s": units_per_s(tok, wavs),
    }
    if isinstance(tok, MelKMeansTokenizer):
        result["tokenizer"].update(k=a.k, frame_rate=a.frame_rate, dedup=True)
        result["units_per_s_no_dedup"] = units_per_s(with_dedup(tok, False), wavs)
    if a.sweep:
        result["sweep"] = sweep(train, wavs, texts, sphinx, a.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
