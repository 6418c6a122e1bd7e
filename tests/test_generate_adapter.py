"""Inference through the audio adapter: ``SpeechLM.asr``/``chat`` and ``most asr``/``most chat``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from most.audio import write_wav
from most.cli import main as most_main
from most.data.collate import audio_inputs
from most.generate import Sampling, SpeechLM
from most.moe.adapter import AdapterConfig, join_clips
from most.testing.models import load_adapted, run_adapt

SHORT = Sampling(max_new_tokens=4)


def noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(16_000 * seconds)).astype(np.float32)


@pytest.fixture
def adapter_dir(tmp_path, base_dirs):
    """An adapted tiny model with a MoE adapter on log-mel, saved over its ``most adapt`` folder
    (tokenizer and layout included, no unit tokenizer anywhere)."""
    model, _ = load_adapted(tmp_path / "run", base_dirs)
    torch.manual_seed(0)
    model.attach_adapter(AdapterConfig(kind="moe", stack=8, expert_size=16), {"kind": "mel"}, 80)
    folder = run_adapt(tmp_path / "run", base_dirs["qwen3_moe"])
    model.save_pretrained(folder)
    return folder


def test_asr_hears_through_the_adapter_batched_as_alone(adapter_dir):
    lm = SpeechLM.load(adapter_dir, device="cpu")
    assert lm.units is None and lm.frontend is not None
    wavs = [noise(0.6, 0), noise(0.25, 1), noise(0.4, 2)]
    batched = lm.generate(
        [lm.prompts.asr_prompt(lm.placeholders(f)) for f in lm.hear(wavs)],
        lm._text_stops(), SHORT, features=lm.hear(wavs),
    )  # fmt: skip
    alone = [
        lm.generate(
            [lm.prompts.asr_prompt(lm.placeholders(f))], lm._text_stops(), SHORT, features=[f]
        )[0]
        for f in lm.hear(wavs)
    ]
    assert batched == alone  # left padding moves the placeholders and the mask with them
    assert len(lm.asr(wavs, SHORT)) == 3
    # the answer depends on the audio: the first new token follows the adapter's tokens
    f = lm.hear(wavs[:1])[0]
    prompt = torch.tensor([lm.prompts.asr_prompt(lm.placeholders(f))])
    inputs = audio_inputs(prompt, [f], lm.layout.unit_range()[0])
    logits = lm.model(input_ids=prompt, **inputs).logits[0, -1]
    other = lm.model(
        input_ids=prompt, **(inputs | {"input_features": inputs["input_features"] * 0})
    )
    assert not torch.allclose(logits, other.logits[0, -1])
    first = int(logits.argmax())
    assert batched[0][:1] == ([] if first in lm._text_stops() else [first])


def test_chat_with_two_clips_gives_each_its_own_tokens(adapter_dir):
    lm = SpeechLM.load(adapter_dir, device="cpu")
    a, b = lm.hear([noise(0.33, 3), noise(0.21, 4)])
    joined = join_clips([a, b], lm.stack)
    tokens, valid = lm.model.audio_adapter(joined[None])
    ta, _ = lm.model.audio_adapter(a[None])
    tb, _ = lm.model.audio_adapter(b[None])
    assert int(valid.sum()) == len(lm.placeholders(a)) + len(lm.placeholders(b))
    torch.testing.assert_close(tokens[0], torch.cat([ta[0], tb[0]]), atol=1e-5, rtol=1e-5)
    messages = [
        {"role": "user", "audio": noise(0.33, 3)},
        {"role": "assistant", "text": "w5"},
        {"role": "user", "text": "w7", "audio": noise(0.21, 4)},
    ]
    reply = lm.chat(messages, sampling=SHORT)
    assert isinstance(reply.text, str)
    spoken = lm.chat(messages, speak=True, sampling=SHORT)  # units come out; no vocoder here
    assert spoken.audio is None and all(0 <= u < lm.layout.n_units for u in spoken.units)


def test_most_asr_and_chat_commands_take_a_wav(adapter_dir, tmp_path, capsys):
    wav = write_wav(tmp_path / "q.wav", noise(0.5, 5))
    args = ["--model", str(adapter_dir), "--device", "cpu", "--sampling.max_new_tokens", "3"]
    most_main(["asr", str(wav), *args])
    assert capsys.readouterr().out.startswith(f"{wav}\t")
    most_main(["chat", "--audio", str(wav), *args])
    assert capsys.readouterr().out.endswith("\n")


def test_hear_needs_an_adapter(tmp_path, base_dirs):
    folder = run_adapt(tmp_path / "run", base_dirs["qwen3_moe"])
    lm = SpeechLM.load(folder, device="cpu")
    assert lm.frontend is None
    with pytest.raises(ValueError, match="no audio adapter"):
        lm.hear([noise(0.2, 0)])
