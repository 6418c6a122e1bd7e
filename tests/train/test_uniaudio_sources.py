"""UniAudio task sources: voice prompts from another utterance of the voice, parallel and noisy
pairs by text, frame-aligned continuation cuts, and clear refusals."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from most.data.prompts import IGNORE, Prompts
from most.layout import DEFAULT_SPECIALS, UNIAUDIO_SPECIALS, TokenLayout
from most.testing import sentences
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer
from most.train import uniaudio as U


@pytest.fixture(scope="module")
def tok():
    return train_text_tokenizer(sentences(64), TokenizerConfig(300))


def prompts(tok, specials=(*DEFAULT_SPECIALS, *UNIAUDIO_SPECIALS)) -> Prompts:
    return Prompts(
        TokenLayout(len(tok), n_units=32, unit_tokenizer_hash="h", specials=specials), tok
    )


def speech() -> datasets.DatasetDict:
    """Voice A says units 0-9, voice B 10-19: a prompt's units tell its voice."""
    train = {
        "units": [
            [0, 1, 2, 3, 4, 5],
            [6, 7, 8, 9, 0, 1, 2, 3],
            [10, 11, 12, 13],
            [14, 15, 16, 17, 18, 19],
        ],
        "text": ["one two", "three four", "five six", "seven eight"],
        "voice": ["A", "A", "B", "B"],
    }
    parallel = {"units": [[12, 13, 14, 15]], "text": ["one two"], "voice": ["B"]}
    noisy = {"units": [[31, 30, 29]], "text": ["five six"], "voice": ["B"]}
    return datasets.DatasetDict(
        {
            k: datasets.Dataset.from_dict(v)
            for k, v in (("train", train), ("train_parallel", parallel), ("train_noisy", noisy))
        }
    )


def test_voice_prompt_is_another_utterance_of_the_voice_in_whole_frames() -> None:
    vp = U.VoicePrompts(speech()["train"], prompt_ids=4, ids_per_frame=2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        got = vp("A", [0, 1, 2, 3, 4, 5], rng)
        assert len(got) == 4 and all(u < 10 for u in got)
        window = [6, 7, 8, 9, 0, 1, 2, 3]
        starts = [i for i in range(0, len(window) - 3, 2) if window[i : i + 4] == got]
        assert starts, f"{got} is not a frame-aligned window of the other utterance"
    assert vp("B", [10, 11, 12, 13]) == [14, 15, 16, 17]  # no generator: the first window
    with pytest.raises(ValueError, match="voice 'C'"):
        vp("C", [])
    with pytest.raises(ValueError, match="multiple of 2"):
        U.VoicePrompts(speech()["train"], prompt_ids=3, ids_per_frame=2)


def test_vtts_example_has_prompt_text_and_target(tok) -> None:
    p, sp = prompts(tok), speech()
    src = U.vtts(p, sp["train"], U.VoicePrompts(sp["train"], 4))
    row = src.augment(src.dataset[2], np.random.default_rng(1))
    ex = src.build(row)
    assert ex.task == "vtts"
    assert ex.input_ids == p.vtts(row["prompt"], "five six", [10, 11, 12, 13]).input_ids
    assert all(u >= 10 for u in row["prompt"])  # voice B's prompt for voice B's utterance
    answer = [i for i, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE]
    assert answer[:-1] == p.unit_ids([10, 11, 12, 13])


def test_vc_pairs_both_directions_and_target_voice_prompt(tok) -> None:
    sp = speech()
    pairs = U.vc_pairs(sp["train"], sp["train_parallel"])
    assert pairs["source"] == [[0, 1, 2, 3, 4, 5], [12, 13, 14, 15]]
    assert pairs["target"] == [[12, 13, 14, 15], [0, 1, 2, 3, 4, 5]]
    assert pairs["voice"] == ["B", "A"]
    p = prompts(tok)
    src = U.vc(p, pairs, U.VoicePrompts(sp["train"], 4))
    ex = src.build(src.dataset[0])  # validation path: deterministic prompt of voice B
    assert ex.input_ids == p.vc([0, 1, 2, 3, 4, 5], [10, 11, 12, 13], [12, 13, 14, 15]).input_ids


def test_se_pairs_noisy_with_clean_by_text(tok) -> None:
    sp = speech()
    pairs = U.se_pairs(sp["train"], sp["train_noisy"])
    assert (pairs["noisy"], pairs["clean"]) == ([[31, 30, 29]], [[10, 11, 12, 13]])
    ex = U.se(prompts(tok), pairs).build(pairs[0])
    assert (
        ex.task == "se"
        and ex.input_ids == prompts(tok).se([31, 30, 29], [10, 11, 12, 13]).input_ids
    )


def test_speech_continue_cuts_on_frames(tok) -> None:
    src = U.speech_continue(prompts(tok), speech()["train"], ids_per_frame=2)
    rng = np.random.default_rng(0)
    for i in range(len(src.dataset)):
        row = src.augment(src.dataset[i], rng)
        n = len(row["units"])
        assert row["start"] % 2 == 0 and 0 < row["start"] < n
        assert src.build(row).task == "speech_continue"


def test_task_sources_refuse_missing_markers_and_splits(tok, tmp_path) -> None:
    sp = speech()
    with pytest.raises(ValueError, match="lacks their task markers"):
        U.task_sources(tmp_path, prompts(tok, DEFAULT_SPECIALS), sp, {"vtts": 0.1})
    without = datasets.DatasetDict({"train": sp["train"]})
    with pytest.raises(ValueError, match="'train_noisy'"):
        U.task_sources(tmp_path, prompts(tok), without, {"se": 0.1})
    assert U.task_sources(tmp_path, prompts(tok, DEFAULT_SPECIALS), sp, {"vtts": 0.0}) == []
