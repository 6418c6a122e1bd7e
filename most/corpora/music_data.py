"""``RUN/data/music``: captioned melodies rendered by the synth, for text-to-music and continuation.

Rows are generated from seeds (:func:`most.corpora.music.generate_melody`), rendered at 16 kHz
(:func:`most.corpora.synth.render`) and stored FLAC-encoded in a column named ``music``, not
``audio``: the speech units stage encodes every ``audio``/``*_audio`` column with the speech
tokenizer, while music has its own tokenizer (:mod:`most.units.music`). Test melodies come from a
seed range disjoint from train's and any test caption equal to a train caption is dropped, so
a test caption is never one the model was trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import datasets

from most.audio import SAMPLE_RATE
from most.corpora.music import generate_melody
from most.corpora.schema import AUDIO_FEATURE, audio_value
from most.corpora.synth import render
from most.progress import progress

MUSIC_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "music": AUDIO_FEATURE,
        "text": datasets.Value("string"),
        "instrument": datasets.Value("string"),
        "task": datasets.Value("string"),
        "duration": datasets.Value("float32"),
    }
)
#: Seeds of test melodies start here (train seeds count up from ``seed * SEED_BLOCK``).
TEST_OFFSET = 500_000
SEED_BLOCK = 1_000_000


@dataclass(frozen=True)
class MusicConfig:
    """Captioned melodies (``--music.*``); off unless ``train`` > 0.

    Args:
        train: melodies in ``music/train`` (0: the run has no music).
        test: melodies in ``music/test`` (what ``most eval`` scores text-to-music on).
        seed: picks the melodies (train and test seeds never overlap).
    """

    train: int = 0
    test: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train < 0 or self.test < 0:
            raise ValueError(
                f"music.train and music.test must be >= 0, got {self.train}, {self.test}"
            )
        if self.test and not self.train:
            raise ValueError(
                "music.test needs music.train > 0 (a model cannot learn music from none)"
            )

    @property
    def enabled(self) -> bool:
        return self.train > 0


def _rows(seeds: list[int], split: str, exclude: set[str]) -> list[dict]:
    rows = []
    with progress() as bar:
        task = bar.add_task(f"music {split}", total=len(seeds))
        for seed in seeds:
            bar.advance(task)
            melody = generate_melody(seed)
            caption = melody.caption()
            if caption in exclude:
                continue
            wav = render(melody)
            rows.append(
                {
                    "id": f"music-{split}-{seed}",
                    "music": audio_value(wav),
                    "text": caption,
                    "instrument": melody.instrument,
                    "task": "music",
                    "duration": float(len(wav) / SAMPLE_RATE),
                }
            )
    return rows


def music_dataset(cfg: MusicConfig) -> datasets.DatasetDict:
    """``train`` and ``test`` splits of captioned melodies (columns: :data:`MUSIC_FEATURES`)."""
    if not cfg.enabled:
        raise ValueError("music_dataset: music.train is 0 (no music asked for)")
    base = cfg.seed * SEED_BLOCK
    train = _rows(list(range(base, base + cfg.train)), "train", set())
    captions = {r["text"] for r in train}
    test_seeds = list(range(base + TEST_OFFSET, base + TEST_OFFSET + cfg.test))
    test = _rows(test_seeds, "test", captions)
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(rows, features=MUSIC_FEATURES)
            for split, rows in (("train", train), ("test", test))
        }
    )


def music_hash(music: datasets.DatasetDict, seed_hash: str = "") -> str:
    """Hash of every row (captions and stored FLAC bytes), chained onto ``seed_hash``."""
    h = hashlib.sha256(seed_hash.encode())
    for split in sorted(music):
        for row in music[split].select_columns(["id", "text", "music"]):
            h.update(f"{split}/{row['id']}/{row['text']}".encode() + row["music"]["bytes"])
    return h.hexdigest()[:16]
