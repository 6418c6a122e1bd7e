"""The task evals wired end to end on real espeak-ng audio, with stand-in models whose answers are
known: an oracle that speaks the target utterance, and a parrot that repeats its input."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from most.corpora.schema import audio_value
from most.corpora.speech import Voice, synthesize
from most.data.prompts import Prompts
from most.eval.speaker import SpeakerConfig
from most.eval.uniaudio import evaluate_tasks
from most.generate import Sampling
from most.layout import DEFAULT_SPECIALS, UNIAUDIO_SPECIALS, TokenLayout
from most.noise import add_noise
from most.testing import sentences
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer

SEEN = ["en-us+m3:165:45", "en-gb+f3:170:65"]
UNSEEN = ["en-us+f5:170:62", "en-gb-scotland+m4:155:42"]
TRAIN = [
    "One bird sang.",
    "Two ships sailed far.",
    "The old mill stood still.",
    "Rain fell all night.",
]
TEST = ["The cat sat down.", "A river runs north.", "Seven men went home.", "We saw the sea."]
K = 8  # unit ids an utterance


class Units:
    frame_rate, n_codebooks = 1.0, 1  # a 3-s voice prompt is 3 ids


class Lookup:
    """What every stand-in shares: utterance k has units ``[kK, (k+1)K)``; vocoding them gives
    back that utterance's recorded audio."""

    def __init__(self, wavs: list[np.ndarray], answer) -> None:
        tok = train_text_tokenizer(sentences(64), TokenizerConfig(300))
        specials = (*DEFAULT_SPECIALS, *UNIAUDIO_SPECIALS)
        self.layout = TokenLayout(len(tok), len(wavs) * K, "h", specials=specials)
        self.prompts, self.units, self.wavs, self.answer = (
            Prompts(self.layout, tok),
            Units(),
            wavs,
            answer,
        )

    def units_of(self, ids):
        return self.layout.ids_to_units(torch.as_tensor(ids)).tolist()

    def vocode(self, units):
        return self.wavs[units[0] // K]

    def generate(self, prompts, stops, sampling, guided=False, on_batch=None):
        if on_batch is not None:
            on_batch(len(prompts))
        return [
            self.prompts.unit_ids(
                self.answer(self.units_of([i for i in p if self.layout.is_unit(torch.tensor(i))]))
            )
            for p in prompts
        ]


class Judge:
    name = "lookup"

    def __init__(self, wavs, texts):
        self.by = {w.tobytes(): t for w, t in zip(wavs, texts, strict=True)}

    def transcribe(self, wavs):
        return [self.by.get(w.tobytes(), "") for w in wavs]


@pytest.fixture(scope="module")
def corpus():
    splits: dict[str, list] = {}
    wavs, texts = [], []

    def add(split, text, voice, wav):
        splits.setdefault(split, []).append((len(wavs), text, voice))
        wavs.append(wav)
        texts.append(text)

    for v in SEEN:
        for i, t in enumerate(TRAIN):
            add("train", t, v, synthesize(t, Voice.parse(v), f"tr{v}{i}"))
    for i, t in enumerate(TEST):
        add("test", t, SEEN[i % 2], synthesize(t, Voice.parse(SEEN[i % 2]), f"te{i}"))
        add("test_voices", t, UNSEEN[i % 2], synthesize(t, Voice.parse(UNSEEN[i % 2]), f"tv{i}"))
    rng = np.random.default_rng(0)
    for k, t, v in list(splits["test"]):
        add("test_noisy", t, v, add_noise(wavs[k], 5.0, rng))

    def dd(with_audio: bool):
        out = {}
        for split, rows in splits.items():
            cols = {"id": [f"{split}-{k}" for k, _, _ in rows], "text": [t for _, t, _ in rows]}
            cols["voice"] = [v for _, _, v in rows]
            if with_audio:
                cols["audio"] = [audio_value(wavs[k]) for k, _, _ in rows]
            else:
                cols["units"] = [list(range(k * K, (k + 1) * K)) for k, _, _ in rows]
            out[split] = datasets.Dataset.from_dict(cols)
        return datasets.DatasetDict(out)

    return {"wavs": wavs, "texts": texts, "speech": dd(True), "units": dd(False), "splits": splits}


def run(corpus, answer, tasks=("vtts", "vc", "se", "speech_continue")):
    lm = Lookup(corpus["wavs"], answer)
    judge = Judge(corpus["wavs"], corpus["texts"])
    return evaluate_tasks(
        lm, judge, corpus["speech"], corpus["units"], tasks, 4, Sampling(), SpeakerConfig(steps=60)
    )


def test_an_oracle_scores_perfectly(corpus) -> None:
    """Oracle: vc answers the target utterance, se the clean one."""
    sp = corpus["splits"]
    by_noisy = {k: c for (k, _, _), (c, _, _) in zip(sp["test_noisy"], sp["test"], strict=True)}
    by_source = {k: t for (k, _, _), (t, _, _) in zip(sp["test"], sp["test_voices"], strict=True)}

    def answer(units_in):
        """se: the clean test utterance of the noisy one; vc: the source's sentence said in the
        target voice (the test_voices utterance of it)."""
        first = units_in[0] // K
        k = by_noisy[first] if first in by_noisy else by_source[first]
        return list(range(k * K, (k + 1) * K))

    r = run(corpus, answer, ("vc", "se"))
    assert r["vc"]["wer"] == 0.0 and r["vc"]["speaker_sim"] == pytest.approx(1.0, abs=1e-5)
    assert r["vc"]["speaker_sim_source"] < r["vc"]["speaker_sim"] - 0.2
    assert r["se"]["si_sdr"] > 60 and r["se"]["si_sdr_input"] == pytest.approx(5.0, abs=0.3)
    assert r["se"]["stoi"] > 0.99 > r["se"]["stoi_input"] + 0.05 and r["se"]["wer"] == 0.0
    assert r["se"]["wer_resynth"] == 0.0 and r["se"]["stoi_resynth"] > 0.99
    assert r["speaker_encoder"]["accuracy"] >= 0.75


def test_a_parrot_gains_nothing(corpus) -> None:
    """Parrot: says its (first) input again: vc keeps the source voice, se the noise."""
    r = run(corpus, lambda units_in: units_in[:K])
    # the same noisy speech (the stored copy is FLAC-quantised, hence not bit-exact)
    assert abs(r["se"]["si_sdr_gain"]) < 1e-3
    assert r["se"]["stoi"] == pytest.approx(r["se"]["stoi_input"], abs=1e-3)
    assert r["se"]["stoi"] < 0.95
    assert r["vc"]["speaker_sim_source"] == pytest.approx(1.0, abs=1e-5)
    assert r["vc"]["wer"] == 0.0  # the words are kept, the voice is not
    # vtts: the parrot repeats the voice prompt (another sentence in the right voice)
    assert r["vtts"]["wer"] > 0.5
    assert r["vtts"]["speaker_sim"] > 0.5 and r["vtts"]["_n"] == 4
    # continuation: the parrot's "continuation" is its prompt's utterance, the real one itself
    assert r["speech_continue"]["speaker_sim"] == pytest.approx(1.0, abs=1e-5)


def test_missing_noisy_split_is_named(corpus) -> None:
    units = datasets.DatasetDict({k: v for k, v in corpus["units"].items() if k != "test_noisy"})
    lm = Lookup(corpus["wavs"], lambda u: u)
    with pytest.raises(ValueError, match="test_noisy"):
        evaluate_tasks(lm, Judge([], []), corpus["speech"], units, ["se"], 2, Sampling())


def test_trained_tasks_read_the_stage_ratios_and_layout(tmp_path) -> None:
    from most.eval.report import flat_metrics
    from most.eval.uniaudio import trained_tasks
    from most.io import atomic_write_json

    stage1, stage2 = tmp_path / "stage1" / "hf", tmp_path / "stage2" / "hf"
    for folder in (stage1, stage2):
        folder.mkdir(parents=True)
        TokenLayout(100, 16, "h", specials=(*DEFAULT_SPECIALS, *UNIAUDIO_SPECIALS)).save(folder)
    atomic_write_json(
        stage1.parent / "metrics.json", {"ratios": {"asr": 0.5, "vc": 0.1, "se": 0.1}}
    )
    atomic_write_json(stage2.parent / "metrics.json", {"ratios": {"asr": 0.5, "vtts": 0.2}})
    assert trained_tasks(stage2) == ["vtts"]
    assert trained_tasks(stage2, [stage1]) == ["vtts", "vc", "se"]
    plain = tmp_path / "plain" / "hf"
    plain.mkdir(parents=True)
    TokenLayout(100, 16, "h").save(plain)
    atomic_write_json(plain.parent / "metrics.json", {"ratios": {"vtts": 0.2}})
    assert trained_tasks(plain) == []  # no markers: never trained on them, whatever it says
    flat = flat_metrics({"tasks": {"se": {"si_sdr": 3.0, "si_sdr_input": 5.0, "_n": 2}}})
    assert flat == {"tasks.se.si_sdr": 3.0, "tasks.se.si_sdr_input": 5.0}
