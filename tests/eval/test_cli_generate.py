"""`most asr|tts|chat` through the real CLI entry point, on real recordings and on bad input."""

import json
import shutil

import numpy as np
import pytest

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
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == files


def test_tts_and_chat(model_dir, tmp_path, capsys):
    out = tmp_path / "out.wav"
    rc = main(["tts", "--text", "the old gate", "--output", str(out), "--model", str(model_dir),
               "--sampling.max_new_tokens=12"])  # fmt: skip
    assert (
        rc == 0 or "no speech units" in capsys.readouterr().err
    )  # an untrained model may stop at once
    if rc == 0:
        assert read_audio(out).size > 0
    wav = tmp_path / "q.wav"
    from most.audio import write_wav

    write_wav(wav, np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32))
    rc = main(["chat", "--model", str(model_dir), "--audio", str(wav), "--speak=true",
               "--output", str(tmp_path / "a.wav"), "--sampling.max_new_tokens=6"])  # fmt: skip
    assert rc == 0
    rc = main(["chat", "--model", str(model_dir), "--text", "repeat tarsk",
               "--sampling.max_new_tokens=4"])  # fmt: skip
    assert rc == 0


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
