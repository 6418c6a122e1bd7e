"""Music units: a ``mel_kmeans`` tokenizer of its own, fitted on ``RUN/data/music``, and the units.

Why ``mel_kmeans``: a log-mel frame keeps what music is made of, the pitch (where the harmonics
sit) and the timbre (their strengths), and it needs nothing downloaded; the CTC kinds are trained to
hear phonemes and throw pitch and timbre away by design, and HuBERT is a speech model from a local
path. Repeats are kept: collapsing them and restoring mean durations in the decoder loses the
tempo. K and the frame rate: the ceiling each gives (notes, key, tempo through encode -> decode)
is in docs/results.md, "Music" (``benchmarks/music.py``).

Layout on disk (``Run.music_units``)::

    RUN/units/music/tokenizer/      the saved tokenizer and fit.json
    RUN/units/music/<hash>/         DatasetDict, splits of ``RUN/data/music``; columns ``id``,
                                    ``text`` (the caption), ``units`` list[int32], ``duration``
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np

from most.audio import SAMPLE_RATE
from most.corpora.schema import decode_audio
from most.io import atomic_dir, atomic_write_json, read_json, save_dataset
from most.progress import progress
from most.run import Run
from most.units.base import TOKENIZER_FILE
from most.units.kinds import load_tokenizer
from most.units.mel_kmeans import MelKMeansTokenizer

MUSIC_DATA = "music"
FIT_FILE = "fit.json"


@dataclass
class MusicUnitsConfig:
    """``--music.*`` of ``most units``: the music tokenizer (used when ``RUN/data/music`` exists)."""

    k: int = 512
    """Unit vocabulary size (the music modality's ``n_units``)."""
    frame_rate: float = 25.0
    """Log-mel frames (= units, repeats are kept) per second."""
    n_mels: int = 80
    fit_seconds: float = 600.0
    """Seconds of ``music/train`` (a seeded sample of melodies) the k-means is fitted on."""
    seed: int = 0
    gl_iters: int = 24
    """Griffin-Lim iterations of the decoder (speed/quality; does not change ids)."""
    path: Path | None = None
    """Load this saved tokenizer folder instead of fitting one."""

    def __post_init__(self) -> None:
        if self.k < 2 or self.frame_rate <= 0 or self.fit_seconds <= 0:
            raise ValueError("music.k must be >= 2, music.frame_rate and music.fit_seconds > 0")


def tokenizer_dir(run: Run) -> Path:
    return run.music_units / "tokenizer"


def _wavs(ds: datasets.Dataset, rows: list[int]) -> list[np.ndarray]:
    return [decode_audio(r["music"]) for r in ds.select(rows).select_columns(["music"])]


def fit_music_tokenizer(train: datasets.Dataset, cfg: MusicUnitsConfig) -> MelKMeansTokenizer:
    """Fit on a seeded sample of about ``cfg.fit_seconds`` of ``train`` melodies."""
    order = np.random.default_rng(cfg.seed).permutation(len(train))
    durations = np.asarray(train["duration"])[order]
    n = max(1, int(np.searchsorted(np.cumsum(durations), cfg.fit_seconds)) + 1)
    wavs = _wavs(train, sorted(order[:n].tolist()))
    return MelKMeansTokenizer.fit(
        wavs,
        k=cfg.k,
        frame_rate=cfg.frame_rate,
        dedup=False,
        n_mels=cfg.n_mels,
        seed=cfg.seed,
        gl_iters=cfg.gl_iters,
    )


def prepare_music_tokenizer(run: Run, cfg: MusicUnitsConfig, force: bool = False):
    """The run's music tokenizer: the saved one when it was made as ``cfg`` asks, else fitted
    (or loaded from ``cfg.path``) and saved to ``RUN/units/music/tokenizer``."""
    folder = tokenizer_dir(run)
    wanted = {k: v for k, v in asdict(cfg).items() if k not in ("gl_iters", "path")}
    if (folder / TOKENIZER_FILE).is_file() and not force:
        tok = load_tokenizer(folder)
        saved = read_json(folder / FIT_FILE) if (folder / FIT_FILE).is_file() else None
        if cfg.path is None and saved != wanted:
            raise ValueError(
                f"{folder}: fitted with {saved}, asked for {wanted}; pass --force=true to refit"
            )
        return tok
    if cfg.path is not None:
        tok = load_tokenizer(cfg.path)
    else:
        tok = fit_music_tokenizer(run.load_data(MUSIC_DATA)["train"], cfg)
        print(f"most units: fitted the music tokenizer, K={tok.vocab_size} -> {tok.hash}")
    with atomic_dir(folder) as tmp:
        tok.save(tmp)
        if cfg.path is None:
            atomic_write_json(tmp / FIT_FILE, wanted)
    return tok


def music_units(run: Run, cfg: MusicUnitsConfig, force: bool = False) -> Path:
    """Fit (or reuse) the music tokenizer and encode every split of ``RUN/data/music``; returns
    the units folder ``RUN/units/music/<hash>``."""
    tok = prepare_music_tokenizer(run, cfg, force)
    out = run.music_units / tok.hash
    data = run.load_data(MUSIC_DATA)
    if (out / "dataset_dict.json").is_file() and not force:
        done = datasets.load_from_disk(str(out))
        if {s: len(d) for s, d in done.items()} == {s: len(d) for s, d in data.items()}:
            return out
    splits = {}
    with progress() as bar:
        for split, ds in data.items():
            task = bar.add_task(f"music units {split}", total=len(ds))
            rows = []
            for row in ds.select_columns(["id", "text", "music", "duration"]):
                units = tok.encode(decode_audio(row["music"]), SAMPLE_RATE)
                rows.append({**{k: row[k] for k in ("id", "text", "duration")}, "units": units})
                bar.advance(task)
            features = datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "text": datasets.Value("string"),
                    "duration": datasets.Value("float32"),
                    "units": datasets.Sequence(datasets.Value("int32")),
                }
            )
            rows = [{**r, "units": np.asarray(r["units"], dtype=np.int32)} for r in rows]
            splits[split] = datasets.Dataset.from_list(rows, features=features)
    save_dataset(datasets.DatasetDict(splits), out)
    print(f"most units: music units -> {out}")
    return out


def music_tokenizer_info(run: Run) -> tuple[int, str]:
    """``(vocab_size, hash)`` of the run's music tokenizer (what ``most adapt`` adds to the layout)."""
    path = tokenizer_dir(run) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no music tokenizer; run `most data` with --music.train > 0, then `most units`"
        )
    meta = read_json(path)
    return int(meta["vocab_size"]), str(meta["hash"])


def load_music_units(run: Run, expected_hash: str) -> datasets.DatasetDict:
    """``RUN/units/music/<hash>`` for the tokenizer the model's layout was built on."""
    path = run.music_units / expected_hash
    if not (path / "dataset_dict.json").is_file():
        raise FileNotFoundError(
            f"{path}: no music units of tokenizer {expected_hash}; run `most units` "
            "(and `most adapt` after it, if the music tokenizer was refitted)"
        )
    return datasets.load_from_disk(str(path))
