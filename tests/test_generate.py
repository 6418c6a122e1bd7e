"""``most.generate``: prompts from most.data.prompts, stop ids, batching, length guard, bad input."""

import json
import shutil

import numpy as np
import pytest
import torch

from most.generate import Sampling, SpeechLM, resolve_device
from most.layout import END_OF_AUDIO, LayoutError


@pytest.fixture(scope="module")
def lm(eval_run):
    return SpeechLM.load(eval_run / "stage2" / "hf", units=eval_run / "units")


def test_chat_prompt_reduces_to_trained_formats(lm):
    p, units = lm.prompts, [1, 2, 3]
    assert lm.chat_prompt([{"text": "repeat tarsk"}]) == p.instruct_prompt("repeat tarsk")
    assert lm.chat_prompt([{"units": units}]) == p.s2t_prompt(units)
    assert lm.chat_prompt([{"units": units}], speak=True) == p.s2s_prompt(units)
    with pytest.raises(ValueError, match="needs text or audio"):
        lm.chat_prompt([{"text": "  "}])


def test_batched_greedy_equals_one_by_one(lm):
    prompts = [lm.prompts.asr_prompt(u) for u in ([1, 2], [3, 4, 5, 6, 7, 8], [9])]
    stops = lm.prompts.stop_ids()
    s = Sampling(max_new_tokens=6, batch_size=3)
    batched = lm.generate(prompts, stops, s)
    single = [lm.generate([p], stops, Sampling(max_new_tokens=6, batch_size=1))[0] for p in prompts]
    assert batched == single


def test_length_guard_and_stop_ids(lm):
    prompt = lm.prompts.tts_prompt("the old gate")
    free = lm.generate([prompt], [-1], Sampling(max_new_tokens=5))[0]  # -1 never occurs
    assert len(free) == 5
    # Make the first generated token a stop id: the answer must come back empty.
    stopped = lm.generate([prompt], [free[0]], Sampling(max_new_tokens=5))[0]
    assert stopped == []


def test_sampling_is_seeded(lm):
    prompt = [lm.prompts.tts_prompt("the old gate")]
    s = Sampling(max_new_tokens=8, do_sample=True, temperature=1.5, seed=3)
    assert lm.generate(prompt, [-1], s) == lm.generate(prompt, [-1], s)


def test_tts_returns_audio_and_asr_text(lm, eval_run):
    eoa = lm.layout.special_id(END_OF_AUDIO)
    assert eoa in lm._audio_stops() and lm.prompts.stop_ids()[0] not in lm._audio_stops()
    (wav,) = lm.tts(["the old gate"], Sampling(max_new_tokens=12))
    assert wav.dtype == np.float32 and wav.ndim == 1
    (text,) = lm.asr([np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)],
                     Sampling(max_new_tokens=4))  # fmt: skip
    assert isinstance(text, str)
    with pytest.raises(ValueError, match="empty text"):
        lm.tts(["  "])


def test_load_errors(eval_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        SpeechLM.load(tmp_path / "missing")
    bad = tmp_path / "model"
    shutil.copytree(eval_run / "stage2" / "hf", bad)
    layout = json.loads((bad / "token_layout.json").read_text())
    layout["unit_tokenizer_hash"] = "0000000000000000"
    layout.pop("hash")
    (bad / "token_layout.json").write_text(json.dumps(layout))
    with pytest.raises(LayoutError, match="does not match"):
        SpeechLM.load(bad)
    with pytest.raises(FileNotFoundError, match="no unit tokenizer"):
        SpeechLM.load(eval_run / "stage2" / "hf").asr([np.ones(1600, np.float32)])


def test_device_choice(lm, eval_run):
    """``auto`` takes the GPU only where one is visible; asking for CUDA without one is refused
    with a message, before any weights move."""
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert lm.model.device.type == resolve_device("auto")  # the default is auto
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is visible"):
            SpeechLM.load(eval_run / "stage2" / "hf", device="cuda")


def test_spoken_answers_keep_the_text_then_units_format(lm, monkeypatch):
    """Whatever ends the written part (here <|end_of_turn|>, as an S->T answer would), the answer
    goes on with <|begin_of_audio|> and units; ``units``-mode prompts go straight to the units."""
    from most.layout import BEGIN_OF_AUDIO, END_OF_AUDIO

    boa, eot = lm.layout.special_id(BEGIN_OF_AUDIO), lm.layout.special_id("<|end_of_turn|>")
    text_ids = lm.tokenizer.encode("tarsk", add_special_tokens=False)
    unit_ids = lm.layout.units_to_ids(torch.tensor([3, 1, 4])).tolist()
    calls = []

    def scripted(prompts, stop_ids, sampling=None, on_batch=None, guided=False, keep_stop=False):
        calls.append(([list(p) for p in prompts], list(stop_ids), guided))
        stop = [stop_ids[0]] if keep_stop else []  # the ids as the model wrote them, stop kept
        return [text_ids if eot in stop_ids else unit_ids + stop for _ in prompts]

    monkeypatch.setattr(lm, "generate", scripted)
    talk, direct = lm.prompts.s2s_prompt([1, 2]), lm.prompts.s2s_prompt([1, 2], "units")
    answers = lm._speak([talk, direct], Sampling())
    assert answers == [("tarsk", [3, 1, 4]), ("", [3, 1, 4])]
    (written, text_stops, text_guided), (spoken, audio_stops, units_guided) = calls
    assert written == [talk] and {eot, boa} <= set(text_stops)
    assert units_guided and not text_guided  # guidance is for speech only
    assert spoken == [[*talk, *text_ids, boa], direct] and eot not in audio_stops
    assert lm.s2s_units([[1, 2]]) == [("tarsk", [3, 1, 4])]
    # the exact ids, for scoring the answer again: text, then the units with their stop id
    ((text, units),) = lm.speak_ids([talk], Sampling())
    assert text == text_ids and units == [*unit_ids, lm.layout.special_id(END_OF_AUDIO)]


def test_guidance_weighs_the_prompt_against_speech_alone(lm):
    """Each guided unit is the argmax of cond + (g - 1) * (cond - uncond), uncond being the
    speech-LM context followed by the units spoken so far; text generation is never guided."""
    model, prompt = lm.model, lm.prompts.tts_prompt("the old gate")
    uncond_prompt, g = lm.prompts.speech_lm_prompt(), 50.0  # large: the tiny model is untrained
    (guided,) = lm.generate([prompt], [-1], Sampling(max_new_tokens=4, guidance=g), guided=True)
    expected: list[int] = []
    with torch.no_grad():
        for _ in range(4):
            cond = model(torch.tensor([[*prompt, *expected]])).logits[0, -1].log_softmax(-1)
            uncond = model(torch.tensor([[*uncond_prompt, *expected]])).logits[0, -1]
            mixed = cond + (g - 1) * (cond - uncond.log_softmax(-1))
            expected.append(int(mixed.argmax()))
    assert guided == expected
    (plain,) = lm.generate([prompt], [-1], Sampling(max_new_tokens=4))
    assert guided != plain  # it does something
    assert lm.generate([prompt], [-1], Sampling(max_new_tokens=4, guidance=g)) == [plain]
    # batched rows of different lengths get the same units as alone
    prompts = [prompt, lm.prompts.tts_prompt("a much longer old gate by the river")]
    both = lm.generate(prompts, [-1], Sampling(max_new_tokens=4, guidance=g), guided=True)
    assert both[0] == guided
    with pytest.raises(ValueError, match="guidance"):
        Sampling(guidance=0.5)
