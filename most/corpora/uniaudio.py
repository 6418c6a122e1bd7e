"""Extra speech splits of the embedded default for UniAudio's tasks (off by default).

- ``train_parallel``: ``n_parallel`` ``train`` sentences said again by another train voice, so
  voice conversion has pairs (same words, two voices) and voice-prompted TTS sees a sentence in
  more than one voice. Rows pair with ``train`` by their text (``train`` sentences are distinct).
- ``train_noisy`` / ``test_noisy``: ``n_noisy`` ``train`` utterances and every ``test`` one,
  said exactly as in their clean split (same jitter key) with noise at an SNR drawn uniformly in
  ``[snr_low, snr_high]`` dB (:func:`most.noise.add_noise`); they pair with the clean split by text.

``test`` and ``test_voices`` already say the same sentences in seen and unseen voices: the
evaluation pairs of conversion need no split of their own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from most.corpora.ingest import SourceItem, SpokenAudio
from most.corpora.speech import Voice


@dataclass
class TasksConfig:
    """Attributes:
    n_parallel: train sentences said again by another train voice (``train_parallel``); 0 = none.
    n_noisy: train utterances copied with noise (``train_noisy``); > 0 also writes ``test_noisy``.
    snr_low: lowest SNR of a noisy copy, dB.
    snr_high: highest SNR of a noisy copy, dB.
    seed: draws of voices, SNRs and noise.
    """

    n_parallel: int = 0
    n_noisy: int = 0
    snr_low: float = 0.0
    snr_high: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_parallel < 0 or self.n_noisy < 0:
            raise ValueError("tasks.n_parallel and tasks.n_noisy must be >= 0")
        if not self.snr_low <= self.snr_high:
            raise ValueError(f"tasks: snr_low {self.snr_low} > snr_high {self.snr_high}")

    @property
    def enabled(self) -> bool:
        return self.n_parallel > 0 or self.n_noisy > 0


def task_items(
    speech: dict[str, list[SourceItem]], cfg: TasksConfig, train_voices: list[str]
) -> dict[str, list[SourceItem]]:
    """The extra splits of ``cfg`` from the world's ``speech`` items (split -> items)."""
    rng = random.Random(cfg.seed)
    out: dict[str, list[SourceItem]] = {}
    if cfg.n_parallel:
        if len(train_voices) < 2:
            raise ValueError("tasks.n_parallel needs at least two speech.train_voices")
        voices = [Voice.parse(v) for v in train_voices]
        items = []
        for i, it in enumerate(speech["train"][: cfg.n_parallel]):
            other = rng.choice([v for v in voices if v.name != it.columns["voice"]])
            cols = {**it.columns, "voice": other.name}
            audio = {"audio": SpokenAudio(str(cols["text"]), other)}
            items.append(SourceItem(f"train_parallel-{i:06d}", cols, audio))
        out["train_parallel"] = items
    if cfg.n_noisy:
        for split, chosen in (("train", speech["train"][: cfg.n_noisy]), ("test", speech["test"])):
            out[f"{split}_noisy"] = [
                _noisy(it, f"{split}_noisy-{i:06d}", cfg, rng) for i, it in enumerate(chosen)
            ]
    return out


def _noisy(item: SourceItem, new_id: str, cfg: TasksConfig, rng: random.Random) -> SourceItem:
    spec = item.audio["audio"]
    if not isinstance(spec, SpokenAudio):
        raise ValueError(f"{item.id}: noisy copies need synthesised speech")
    snr = rng.uniform(cfg.snr_low, cfg.snr_high)
    noisy = replace(spec, key=f"{item.id}/audio", snr_db=snr, noise_seed=rng.randrange(2**31))
    return SourceItem(new_id, dict(item.columns), {"audio": noisy})
