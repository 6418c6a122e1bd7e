"""``most.eval.preference``: candidates ranked by the judge (ties by the model's own ASR, spoken
answers by correctness), one pair per prompt whose candidates differ, chunks saved and read back
instead of sampled again, and no held-out sentence, question or fact ever a prompt."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest

from most.eval.preference import (
    build_pairs,
    check_no_heldout,
    heldout_texts,
    sample_chunks,
    sample_sqa,
    sample_tts,
    sqa_items,
    tts_items,
)
from most.generate import Sampling
from most.run import Run
from most.testing import Ear
from most.text import normalize

EOA, BOA = 99, 98
WORDS = {3: "it", 7: "tarsk", 8: "velm", 9: "brin"}
SAMPLING = Sampling(do_sample=True, max_new_tokens=8)


class Prompts:
    def tts_prompt(self, text: str) -> list[int]:
        return [1, len(text)]

    def s2s_prompt(self, units) -> list[int]:
        return [2, *units]


class Layout:
    def special_id(self, token: str) -> int:
        return BOA


class Sampler:
    """A model stand-in that writes the next of its scripted answers to each prompt."""

    def __init__(self, tts: dict[str, list[list[int]]], speak=None, reads=None) -> None:
        self.tts, self.speak, self.reads = tts, speak or {}, reads or {}
        self.prompts, self.layout = Prompts(), Layout()
        self.calls = 0

    def tts_ids(self, texts, sampling, on_batch=None):
        self.calls += 1
        seen: dict[str, int] = {}
        out = []
        for t in texts:
            out.append([*self.tts[t][seen.get(t, 0)], EOA])
            seen[t] = seen.get(t, 0) + 1
        return out

    def speak_ids(self, prompts, sampling, on_batch=None):
        self.calls += 1
        seen: dict[tuple, int] = {}
        out = []
        for p in prompts:
            text, units = self.speak[tuple(p)][seen.get(tuple(p), 0)]
            out.append((text, [*units, EOA]))
            seen[tuple(p)] = seen.get(tuple(p), 0) + 1
        return out

    def units_of(self, ids):
        return [i for i in ids if i < 50]

    def text_of(self, ids):
        return " ".join(WORDS[i] for i in ids)

    def vocode(self, units):
        return np.asarray(units, dtype=np.float32)

    def asr_units(self, units, sampling=None, on_batch=None):
        return [self.reads.get(tuple(u), "") for u in units]


def test_tts_pairs_rank_by_the_judge_then_by_own_asr() -> None:
    text = "the old gate is red"
    lm = Sampler(
        {text: [[1, 2], [3, 4], [5, 6]], "a b": [[7], [7], [7]]},
        reads={(1, 2): "the old gate is read", (3, 4): text, (5, 6): "nothing"},
    )
    # the judge hears readings 1 and 2 alike (both right); reading 3 is all wrong
    ear = Ear({(1.0, 2.0): text, (3.0, 4.0): text, (5.0, 6.0): "a cat", (7.0,): "a b"})
    records = sample_tts(
        lm, ear, 3, [{"id": "s", "text": text}, {"id": "t", "text": "a b"}], SAMPLING
    )
    assert records[0]["candidates"][0]["key"] == [0.0, 0.2]  # judge WER, own-ASR WER
    (pair,) = build_pairs(records)  # "a b" read the same three times: no pair
    assert pair["chosen_ids"] == [3, 4, EOA]  # the tie on the judge broken by the model's ASR
    assert pair["rejected_ids"] == [5, 6, EOA]
    assert pair["prompt_ids"] == [1, len(text)] and pair["decided_by"] == 0


def test_spoken_answers_rank_by_correctness() -> None:
    item = {"id": "q", "text": "what is the capital of velmora", "units": [4, 5],
            "answer": "tarsk", "answer_sentence": "it tarsk"}  # fmt: skip
    prompt = (2, 4, 5)
    lm = Sampler({}, speak={prompt: [([3, 8], [1]), ([3, 7], [2]), ([3, 7], [3])]})
    # answer 1: wrong text, heard wrong; 2: right text, heard wrong; 3: right text, heard right
    ear = Ear({(1.0,): "it velm", (2.0,): "it brin", (3.0,): "it tarsk"})
    (record,) = sample_sqa(lm, ear, 3, [item], SAMPLING)
    keys = [c["key"] for c in record["candidates"]]
    assert keys == [[1, 1, 0.5], [1, 0, 0.5], [0, 0, 0.0]]
    (pair,) = build_pairs([record])
    assert pair["chosen_ids"] == [3, 7, BOA, 3, EOA] and pair["rejected_ids"] == [3, 8, BOA, 1, EOA]
    assert "units" not in pair and pair["task"] == "s2s"


def test_chunks_are_read_back_not_sampled_again(tmp_path: Path) -> None:
    texts = ["one gate", "two gates", "three maps", "four keys", "five boxes"]
    lm = Sampler({t: [[i + 1], [i + 2]] for i, t in enumerate(texts)})
    ear = Ear({})

    def sample(items, sampling, tick):
        return sample_tts(lm, ear, 2, items, sampling, tick)

    items = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    first = sample_chunks(tmp_path, "tts", items, 2, sample, SAMPLING, 2)
    assert lm.calls == 3 and sorted(p.name for p in tmp_path.iterdir())[-1] == "tts-00002.json"
    (tmp_path / "tts-00001.json").unlink()  # interrupted while sampling chunk 1
    again = sample_chunks(tmp_path, "tts", items, 2, sample, SAMPLING, 2)
    assert lm.calls == 4 and again == first


@pytest.fixture
def split_run(tmp_path: Path) -> Path:
    """RUN/data/speech and RUN/data/sqa whose held-out splits repeat training texts."""
    r = Run(tmp_path)
    shared, own = "the red gate", "a map under the stairs"
    speech = {
        "train": [shared, own, own],
        "dev": ["nine sailors"],
        "test": [shared],
        "test_voices": ["The Red Gate!"],
    }
    datasets.DatasetDict(
        {k: datasets.Dataset.from_dict({"id": [f"{k}{i}" for i in range(len(v))], "text": v})
         for k, v in speech.items()}
    ).save_to_disk(str(r.dataset("speech")))  # fmt: skip

    def qa(ids, facts, questions):
        return datasets.Dataset.from_dict(
            {"id": ids, "fact_id": facts, "text": questions, "units": [[1, 2]] * len(ids),
             "answer": ["tarsk"] * len(ids), "answer_sentence": [f"{q} tarsk" for q in questions]}
        )  # fmt: skip

    sqa = datasets.DatasetDict(
        qa_train=qa(["a", "b", "c"], ["f1", "f2", "f3"], ["who is it", "where is it", "why"]),
        qa_heldout=qa(["h"], ["f3"], ["where is it"]),
    )
    sqa.save_to_disk(str(r.dataset("sqa")))
    return tmp_path


def test_no_heldout_text_or_fact_becomes_a_prompt(split_run: Path) -> None:
    held = heldout_texts(split_run)
    assert {"the red gate", "9 sailors", "where is it", "where is it tarsk"} <= held  # normalised
    sqa = datasets.load_from_disk(str(Run(split_run).dataset("sqa")))
    speech = datasets.load_from_disk(str(Run(split_run).dataset("speech")))
    tts = tts_items(speech, held, n=10, seed=0)
    assert [it["text"] for it in tts] == ["a map under the stairs"]  # once, though spoken twice
    questions = [it["text"] for it in sqa_items(sqa, held, n=10, seed=0)]
    assert questions == ["who is it"]  # "where is it" is held out, "why" asks a held-out fact
    assert not {normalize(t) for t in [*questions, *(it["text"] for it in tts)]} & held
    leaked = [{"text": "The red gate."}]
    with pytest.raises(ValueError, match=r"pairs: 1 preference prompts are held-out texts"):
        check_no_heldout(leaked, held, "pairs")
