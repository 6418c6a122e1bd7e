"""Fixtures for the units tests: a tiny ``RUN/data`` spoken by espeak-ng, in the data-stage schema.

Built once per session (~40 short utterances, a few seconds of CPU); each test gets its own run
folder whose ``data`` links to it, so stages write their outputs separately.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import datasets
import numpy as np
import pytest

from most.audio import decode_audio, read_audio
from most.corpora.schema import SPEECH_FEATURES, SQA_FEATURES, audio_value
from most.run import Run
from most.testing import UNIT_SENTENCES

SENTENCES = UNIT_SENTENCES
VOICES = ["en-us+f3", "en-us+m3", "en-us+f2"]


def speak(text: str, voice: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", str(path), text], check=True)
    return read_audio(path)


def _rows(items: list[tuple[str, str]], tmp: Path, prefix: str) -> list[dict]:
    rows = []
    for i, (text, voice) in enumerate(items):
        wav = speak(text, voice, tmp / f"{prefix}{i}.wav")
        rows.append(
            {
                "id": f"{prefix}{i}",
                "audio": audio_value(wav),
                "text": text,
                "voice": voice,
                "task": "asr_tts",
                "duration": len(wav) / 16_000,
            }
        )
    return rows


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """``RUN/data`` with speech (train/dev/test, two bad rows in test) and sqa (answer audio)."""
    root = tmp_path_factory.mktemp("units-data")
    wavs = root / "wav"
    wavs.mkdir()
    train = _rows([(s, v) for s in SENTENCES for v in VOICES[:2]], wavs, "tr")
    dev = _rows([(SENTENCES[0], VOICES[2]), (SENTENCES[1], VOICES[2])], wavs, "dv")
    test = _rows([(SENTENCES[2], VOICES[2]), (SENTENCES[3], VOICES[2])], wavs, "te")
    bad = dict(test[0], id="bad_bytes", audio={"bytes": b"not audio", "sampling_rate": 16_000})
    silent = dict(test[0], id="bad_silent", audio=audio_value(np.zeros(8000, np.float32)))
    test += [bad, silent]
    speech = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_list(rows, features=SPEECH_FEATURES)
            for name, rows in (("train", train), ("dev", dev), ("test", test))
        }
    )
    speech.save_to_disk(str(Run(root).dataset("speech")))

    qa = []
    for i, row in enumerate(train[:3]):
        answer = speak("tarsk", VOICES[i % 2], wavs / f"ans{i}.wav")
        qa.append(
            dict(
                row,
                id=f"qa{i}",
                task="sqa",
                fact_id=f"f{i}",
                answer="tarsk",
                answer_sentence="The capital is tarsk.",
                answer_audio=audio_value(answer),
                answer_voice=VOICES[i % 2],
            )
        )
    sqa = datasets.DatasetDict({"qa_train": datasets.Dataset.from_list(qa, features=SQA_FEATURES)})
    sqa.save_to_disk(str(Run(root).dataset("sqa")))
    text = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"id": ["t0"], "text": ["x"]})}
    )
    text.save_to_disk(str(Run(root).dataset("text")))
    return Run(root).data


@pytest.fixture
def run_dir(tmp_path, data_dir) -> Path:
    """A fresh run folder whose ``data/`` is the shared fixture corpus."""
    run = tmp_path / "run"
    run.mkdir()
    Run(run).data.symlink_to(data_dir)
    return run


@pytest.fixture(scope="session")
def train_wavs(data_dir) -> list[np.ndarray]:
    train = datasets.load_from_disk(str(data_dir / "speech"))["train"].with_format("numpy")
    return [decode_audio(row["audio"]) for row in train]


@pytest.fixture(scope="session")
def mel_tok(train_wavs):
    from most.units.mel_kmeans import MelKMeansTokenizer

    return MelKMeansTokenizer.fit(train_wavs, k=32, frame_rate=50, dedup=True, seed=0, gl_iters=8)


@pytest.fixture
def vocoder_json(tmp_path):
    """``check(tok, spec) -> dict``: the release's ``vocoder.json`` for ``tok``, checked against
    the saved tokenizer: the tensors it names exist with their shapes, the mel settings are
    ``spec``, and, for one template per unit, those settings alone render what ``decode`` does."""
    import torch
    from safetensors.torch import load_file

    from most.export import vocoder_settings
    from most.mel import MelSpec

    def check(tok, spec) -> dict:
        folder = tok.save(tmp_path / "unit_tokenizer")
        settings = json.loads(json.dumps(vocoder_settings(tok, folder)))
        assert settings["kind"] == tok.kind and settings["hash"] == tok.hash
        assert settings["vocoder"] == "griffin_lim" and settings["gl_iters"] == tok.gl_iters
        assert settings["weights"] == "unit_tokenizer/unit_tokenizer.safetensors"
        assert MelSpec(**settings["mel"]) == spec
        tensors = load_file(str(folder / "unit_tokenizer.safetensors"))
        for part in ("templates", "durations"):
            source = settings[part]
            assert list(tensors[source["tensor"]].shape) == source["shape"], part
        if settings["templates"]["shape"][0] == tok.vocab_size:  # one template per unit
            # vocoder.json alone renders what decode renders.
            from most.units.dedup import frame_ids
            from most.units.vocoder import GriffinLim

            ids = torch.tensor([0, 1, 0, tok.vocab_size - 1])
            durations = tensors[settings["durations"]["tensor"]] if settings["dedup"] else None
            frames = tensors[settings["templates"]["tensor"]][
                frame_ids(ids, tok.vocab_size, durations)
            ]
            vocoder = GriffinLim(MelSpec(**settings["mel"]), n_iter=settings["gl_iters"])
            assert torch.equal(vocoder(frames.reshape(-1, frames.shape[-1])), tok.decode(ids))
        return settings

    return check
