"""Packing: our best-fit-decreasing rows against in-order next fit and trl's ``pack_dataset`` (JSON).

Each training batch of a packed stage is drawn as examples until they hold ``batch_size x
max_len`` tokens (:class:`most.train.mixing.MixtureStream`), then packed into ``batch_size`` rows:
ours best fit decreasing (:func:`most.data.collate.best_fit`), examples drawn at random leaving
until the rest fit (:func:`most.data.collate.fit_rows`); ``next_fit`` fills rows in drawn order
and keeps the first ``batch_size``.
Every packer gets the same drawn examples of every batch; reported per packer: ``fill`` (share of
the rows' ``batch_size x max_len`` slots holding a token), ``kept`` (share of the drawn tokens that
made it into the rows; batches draw with replacement, so the rest cost only the drawing) and
milliseconds per batch.
Example lengths follow the tiny demo's stage-1 mixture (``--lengths``: ``task:min:max:ratio``,
uniform in ``[min, max]`` tokens: ASR ~12 units/s of speech plus its transcript, TTS the same the
other way round, text-LM paragraphs).

    python benchmarks/packing.py [--batches 200] [--batch-size 8] [--max-len 512]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from most.data.collate import best_fit, fit_rows
from most.data.prompts import Example

LENGTHS = ["asr:40:200:0.3", "tts:40:200:0.45", "text_lm:20:160:0.15", "speech_lm:10:180:0.1"]


def draw(rng: np.random.Generator, tasks: list[tuple], budget: int) -> list[Example]:
    """Examples of random lengths until ``budget`` tokens, tasks drawn by ratio."""
    p = np.array([t[3] for t in tasks], dtype=float)
    out, tokens = [], 0
    while tokens < budget:
        name, lo, hi, _ = tasks[rng.choice(len(tasks), p=p / p.sum())]
        n = int(rng.integers(lo, hi + 1))
        out.append(Example([1] * n, [1] * n, name))
        tokens += n
    return out


def ours(examples: list[Example], batch_size: int, max_len: int) -> list[int]:
    lengths = [min(len(e), max_len) for e in examples]
    kept = [lengths[i] for i in fit_rows(lengths, max_len, batch_size, np.random.default_rng(0))]
    return [sum(kept[i] for i in row) for row in best_fit(kept, max_len)]


def next_fit(examples: list[Example], batch_size: int, max_len: int) -> list[int]:
    rows = [0]
    for n in (min(len(e), max_len) for e in examples):
        if rows[-1] + n > max_len and rows[-1]:
            rows.append(0)
        rows[-1] += n
    return rows[:batch_size]


def trl_bfd(examples: list[Example], batch_size: int, max_len: int) -> list[int]:
    import datasets
    from trl import pack_dataset

    ds = datasets.Dataset.from_dict({"input_ids": [e.input_ids for e in examples]})
    packed = pack_dataset(ds, max_len, strategy="bfd")
    return [len(ids) for ids in packed["input_ids"][:batch_size]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--lengths", nargs="+", default=LENGTHS)
    args = ap.parse_args()
    tasks = [
        (n, int(lo), int(hi), float(r)) for n, lo, hi, r in (s.split(":") for s in args.lengths)
    ]
    import datasets

    datasets.disable_progress_bars()
    rng = np.random.default_rng(0)
    slots = args.batch_size * args.max_len
    batches = [draw(rng, tasks, slots) for _ in range(args.batches)]
    out: dict = {"batch_size": args.batch_size, "max_len": args.max_len, "lengths": args.lengths}
    for name, packer in (("ours", ours), ("next_fit", next_fit), ("trl_bfd", trl_bfd)):
        t0 = time.perf_counter()
        rows = [packer(b, args.batch_size, args.max_len) for b in batches]
        ms = 1000 * (time.perf_counter() - t0) / len(batches)
        drawn = [sum(len(e) for e in b) for b in batches]
        out[name] = {
            "fill": round(sum(map(sum, rows)) / (slots * len(rows)), 4),
            "kept": round(sum(map(sum, rows)) / sum(drawn), 4),
            "ms_per_batch": round(ms, 2),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
