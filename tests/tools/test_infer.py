"""`most asr|tts|chat` through the real CLI entry point, on real recordings and on bad input."""

import json
import shutil

import numpy as np
import pytest
import torch

from most.audio import read_audio
from most.cli import main
from most.generate import UNITS_DIR

AUDIO = ("*.flac", "*.wav", "*.mp3")


@pytest.fixture(scope="module")
def model_dir(eval_run, tmp_path_factory):
    """A release-shaped folder: the model plus its unit tokenizer."""
    out = tmp_path_factory.mktemp("cli") / "model"
    shutil.copytree(eval_run / "stage2" / "hf", out)
    shutil.copytree(eval_run / "units" / "tokenizer", out / UNITS_DIR)
    return out


def test_asr_on_real_recordings(model_dir, realdata, capsys):
    files = sorted(str(p) for pattern in AUDIO for p in realdata.rglob(pattern))
    assert len(files) >= 10  # flac 16 kHz, wav 8/22.05 kHz, mp3, 44.1 kHz stereo 24-bit
    args = ["asr", "--model", str(model_dir), "--sampling.max_new_tokens=4"]
    assert main([*args, f"--files={json.dumps(files)}"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    from most.generate import Sampling, SpeechLM

    lm = SpeechLM.load(model_dir, device="cpu")
    texts = lm.asr([read_audio(f) for f in files], Sampling(max_new_tokens=4))
    assert lines == [f"{f}\t{t}" for f, t in zip(files, texts, strict=True)]  # file<TAB>its text


@pytest.fixture(scope="module")
def speaking_model(model_dir, tmp_path_factory):
    """``model_dir`` whose output layer can only say units: ``lm_head`` is untied from the input
    embeddings, every non-unit row is zero and the second unit's row is minus the first's, so one
    of them has a positive logit and greedy decoding says units until ``max_new_tokens``."""
    from transformers import AutoModelForCausalLM

    from most.layout import TokenLayout

    out = tmp_path_factory.mktemp("speaking") / "model"
    shutil.copytree(model_dir, out)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    layout = TokenLayout.load(out)
    for cfg in (model.config, model.config.text_config):
        cfg.tie_word_embeddings = False
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    first = layout.unit_offset
    with torch.no_grad():
        head.weight[:first] = 0.0
        head.weight[first + layout.n_units :] = 0.0
        head.weight[first + 1] = -head.weight[first]
    model.save_pretrained(str(out))
    return out


def test_tts_writes_a_wav_of_the_units_it_spoke(speaking_model, tmp_path, capsys):
    out = tmp_path / "out.wav"
    rc = main(["tts", "--text", "the old gate", "--output", str(out), "--model",
               str(speaking_model), "--sampling.max_new_tokens=12"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    wav = read_audio(out)
    assert f"wrote {out} ({wav.size / 16_000:.2f} s)" in capsys.readouterr().out
    from most.generate import Sampling, SpeechLM

    lm = SpeechLM.load(speaking_model, device="cpu")
    (units,) = lm.tts_units(["the old gate"], Sampling(max_new_tokens=12))
    assert len(units) == 12  # it spoke until the length guard
    assert wav.size == lm.vocode(units).size > 0  # the file holds exactly those units' audio


def test_chat_answers_in_text_and_in_speech(model_dir, speaking_model, tmp_path, capsys):
    wav = tmp_path / "q.wav"
    from most.audio import write_wav
    from most.generate import Sampling, SpeechLM

    write_wav(wav, np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32))
    answer = tmp_path / "a.wav"
    rc = main(["chat", "--model", str(speaking_model), "--audio", str(wav), "--speak=true",
               "--output", str(answer), "--sampling.max_new_tokens=12"])  # fmt: skip
    assert rc == 0
    assert f"(spoken answer: {answer})" in capsys.readouterr().out
    assert read_audio(answer).size > 0
    rc = main(["chat", "--model", str(model_dir), "--text", "repeat tarsk",
               "--sampling.max_new_tokens=4"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out.splitlines()
    lm = SpeechLM.load(model_dir, device="cpu")
    reply = lm.chat([{"role": "user", "text": "repeat tarsk"}], sampling=Sampling(max_new_tokens=4))
    assert printed[-1] == reply.text  # the model's own answer, printed as it is


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["asr", '--files=["{bad}"]'], "cannot decode audio"),
        (["asr", '--files=["{missing}"]'], "file not found"),
        (["tts", "--text", "  "], "empty"),
        (["asr", '--files=["{good}"]', "--model", "{tmp}/nothing"], "no model folder"),
        (["chat", "--text", " "], "empty"),
    ],
)
def test_bad_input_one_line_errors(argv, message, model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    good = tmp_path / "good.wav"
    from most.audio import write_wav

    write_wav(good, np.full(8000, 0.1, np.float32))
    fill = {"bad": bad, "missing": tmp_path / "none.wav", "good": good, "tmp": tmp_path}
    argv = [a.format(**fill) for a in argv]
    if "--model" not in argv:
        argv += ["--model", str(model_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_wrong_layout_hash_is_one_line(model_dir, tmp_path, capsys):
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    layout = json.loads((bad / "token_layout.json").read_text())
    layout["n_units"] += 1
    layout.pop("hash")
    (bad / "token_layout.json").write_text(json.dumps(layout))
    assert main(["chat", "--model", str(bad), "--text", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match" in err


def test_asr_files_as_words_keeps_going_past_a_bad_one(model_dir, realdata, tmp_path, capsys):
    """`most asr a b c` (shell-glob style): a silent recording is empty text, an unreadable file is
    named in one line, the others are transcribed, and the command fails saying how many failed."""
    from most.audio import write_wav
    from most.generate import Sampling, SpeechLM

    speech = str(realdata / "whisper" / "jfk.flac")
    silent = str(write_wav(tmp_path / "silent.wav", np.zeros(16_000, np.float32)))
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3 not really an mp3")
    files = [silent, str(broken), speech]
    assert main(["asr", *files, "--model", str(model_dir), "--sampling.max_new_tokens=4"]) == 2
    out, err = capsys.readouterr()
    (text,) = SpeechLM.load(model_dir, device="cpu").asr(
        [read_audio(speech)], Sampling(max_new_tokens=4)
    )
    assert out.splitlines() == [f"{silent}\t", f"{speech}\t{text}"]
    ours = [line for line in err.splitlines() if line.startswith("most asr:")]
    assert len(ours) == 2
    assert ours[0].startswith(f"most asr: {broken}: cannot decode audio")
    assert ours[1] == "most asr: error: 1 of 3 files could not be read (named above)"

    assert main(["asr", silent, "--model", str(tmp_path / "no-model")]) == 0  # no model needed
    assert capsys.readouterr().out == f"{silent}\t\n"
