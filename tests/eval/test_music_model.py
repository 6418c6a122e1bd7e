"""Text to music through a model: layout, prompts, generation, decoding, the CLI and the errors.

The tiny adapted model is random, so what it writes is rigged in one test: a hook on ``lm_head``
makes it write the units of a known melody, then ``<|end_of_music|>``; everything between the
caption and the wav (prompt, generation, stop, unit ids -> music units, decoding) is the real path.
"""

from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch

from most.adapt import LayoutSection, with_music
from most.cli import main
from most.corpora.music import generate_melody
from most.corpora.music_data import MUSIC_FEATURES
from most.corpora.schema import audio_value, decode_audio
from most.corpora.synth import render
from most.data.prompts import Prompts
from most.eval.music import score_audio
from most.eval.report import flat_metrics
from most.eval.ttm import MusicLM, evaluate_continuation, evaluate_ttm
from most.generate import SpeechLM
from most.layout import BEGIN_OF_MUSIC, END_OF_MUSIC, MUSIC, TEXT_TO_MUSIC
from most.run import Run
from most.testing import LAYOUT_UNITS, run_adapt
from most.tools import music as music_tool
from most.train.datamodule import DataConfig
from most.train.stage import STAGE1_RATIOS, music_sources
from most.units.mel_kmeans import MelKMeansTokenizer

GROUPS = {"text": 4, "speech": 2, "music": 2}
K = 128  # fitted on the 12 melodies the tests play: their round trip is exact


@pytest.fixture(scope="module")
def music_model(base_dirs, tmp_path_factory) -> tuple[Path, MelKMeansTokenizer]:
    """``RUN/adapt/hf`` with a music modality whose units are those of a fitted music tokenizer."""
    run = tmp_path_factory.mktemp("music-model")
    wavs = [render(generate_melody(s)) for s in range(12)]
    tok = MelKMeansTokenizer.fit(wavs, k=K, frame_rate=25.0, dedup=False, seed=0)
    tok.save(Run(run).music_units / "tokenizer")
    layout = with_music(run, LayoutSection(n_units=LAYOUT_UNITS, unit_tokenizer_hash="test-units"))
    hf = run_adapt(run, base_dirs["qwen3_moe"], layout, groups=GROUPS)
    return hf, tok


def test_layout_and_prompts(music_model):
    hf, tok = music_model
    lm = MusicLM.load(hf, device="cpu")  # the tokenizer is found beside RUN/adapt/hf
    layout = lm.lm.layout
    assert layout.modalities == ("text", "speech", "music")
    assert layout.unit_range(MUSIC)[1] - layout.unit_range(MUSIC)[0] == K
    assert layout.unit_tokenizer_hash_of(MUSIC) == tok.hash
    table = layout.modality_table()
    music_id = layout.modality_id(MUSIC)
    assert table[layout.special_id(BEGIN_OF_MUSIC)] == music_id
    assert table[layout.special_id(TEXT_TO_MUSIC)] == layout.modality_id("text")
    p: Prompts = lm.lm.prompts
    ex = p.ttm("a waltz in D minor", [0, 5, K - 1])
    start = layout.unit_range(MUSIC)[0]
    assert ex.input_ids[-4:] == [start, start + 5, start + K - 1, layout.special_id(END_OF_MUSIC)]
    assert ex.labels[: len(p.ttm_prompt("a waltz in D minor"))] == [-100] * len(
        p.ttm_prompt("a waltz in D minor")
    )
    cont = p.music_continue([1, 2, 3, 4], 1)
    assert cont.input_ids[: len(p.ttm_prompt())] == p.ttm_prompt()
    assert sum(label != -100 for label in cont.labels) == 4  # 3 units and the end
    with pytest.raises(ValueError, match="music unit index out of range"):
        p.music_ids([K])


def _rig(lm: MusicLM, units: list[int]) -> None:
    """Make ``lm`` write ``units`` (music unit indices) and then ``<|end_of_music|>``."""
    layout = lm.lm.layout
    ids = [*layout.units_to_ids(torch.tensor(units), MUSIC).tolist()]
    ids.append(layout.special_id(END_OF_MUSIC))
    step = [0]

    def hook(module, inputs, logits):
        out = torch.full_like(logits, -1e4)
        out[:, -1, ids[min(step[0], len(ids) - 1)]] = 1e4
        step[0] += 1
        return out

    lm.lm.model.get_output_embeddings().register_forward_hook(hook)


def test_text_to_music_path(music_model):
    hf, tok = music_model
    melody = generate_melody(3)  # one the tokenizer was fitted on
    units = tok.encode(render(melody), 16000).tolist()
    lm = MusicLM(SpeechLM.load(hf, device="cpu"), tok)
    _rig(lm, units)
    (written,) = lm.ttm_units([melody.caption()])
    assert written == units
    wav = lm.decode(written)
    assert np.array_equal(wav, tok.decode(torch.tensor(units)).numpy())
    assert abs(len(wav) / 16000 - len(units) / 25) < 0.1


def test_cli_writes_and_scores(music_model, tmp_path, monkeypatch, capsys):
    hf, tok = music_model
    melody = generate_melody(3)
    units = tok.encode(render(melody), 16000).tolist()

    def rigged_load(model, music_units=None, device="auto"):
        lm = MusicLM(SpeechLM.load(model, device="cpu"), tok)
        _rig(lm, units)
        return lm

    monkeypatch.setattr(music_tool.MusicLM, "load", rigged_load)
    out = tmp_path / "out.wav"
    assert main(["music", melody.caption(), "-o", str(out), "--model", str(hf)]) == 0
    wav, sr = sf.read(out)
    assert sr == 16000 and abs(len(wav) / 16000 - len(units) / 25) < 0.1
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "note_acc 1.000  key_acc 1.0  tempo_acc 1.0" in printed


def test_untrained_model_generates_through_the_cli(music_model, tmp_path):
    """No rigging: greedy decoding of the random model, cut at 12 tokens; whatever it writes
    is either music (a wav) or nothing musical (a one-line error), never a crash."""
    hf, _ = music_model
    out = tmp_path / "free.wav"
    args = ["music", "a slow waltz on a violin", "-o", str(out), "--model", str(hf)]
    rc = main([*args, "--sampling.max_new_tokens=12", "--device=cpu"])
    assert rc in (0, 2) and out.is_file() == (rc == 0)


def test_errors(music_model, base_dirs, tmp_path, capsys):
    hf, _ = music_model
    assert main(["music", "  ", "--model", str(hf)]) == 2
    assert "the caption is empty" in capsys.readouterr().err
    assert main(["music", "a waltz in C major: C4 H2", "--model", str(hf)]) == 2
    assert "'H2' is not a note name" in capsys.readouterr().err
    speech_only = run_adapt(tmp_path / "plain", base_dirs["qwen3_moe"])
    assert main(["music", "a waltz", "--model", str(speech_only)]) == 2
    assert "no music tokenizer" in capsys.readouterr().err
    assert main(["music", "a waltz", "--model", str(tmp_path / "none")]) == 2
    assert "no model folder (config.json missing)" in capsys.readouterr().err
    assert main(["music", "a waltz", "--model", str(hf), "--sampling.guidance=2"]) == 2
    assert "sampling.guidance is for speech" in capsys.readouterr().err
    _, tok = music_model
    with pytest.raises(ValueError, match="no music modality"):
        MusicLM(SpeechLM.load(speech_only, device="cpu"), tok)


def test_evaluate_ttm_scores_the_model_audio(music_model, tmp_path):
    hf, tok = music_model
    played, other = generate_melody(3), generate_melody(5)
    rows = [
        {
            "id": f"m{i}",
            "music": audio_value(render(m)),
            "text": m.caption(),
            "instrument": m.instrument,
            "task": "music",
            "duration": 1.0,
        }
        for i, m in enumerate((played, other))
    ]
    test = datasets.Dataset.from_list(rows, features=MUSIC_FEATURES)
    units = tok.encode(render(played), 16000).tolist()
    lm = MusicLM(SpeechLM.load(hf, device="cpu"), tok)
    _rig(lm, units)  # every caption gets the units of `played`
    out = evaluate_ttm(lm, test, 5, samples=tmp_path / "samples")
    assert out["n"] == 2 and out["original"]["note_acc"] == 1.0
    heard = tok.decode(torch.tensor(units)).numpy()
    expected = [score_audio(heard, m.caption()).note_acc for m in (played, other)]
    assert out["note_acc"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert expected[0] == 1.0 and expected[1] < 0.5  # its own caption, and another one
    assert out["resynth"]["note_acc"] == 1.0
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["ttm_m0.wav", "ttm_m1.wav"]
    metrics = flat_metrics({"music": out})
    assert metrics["music.note_acc"] == out["note_acc"] and metrics["music.n"] == 2
    assert metrics["music.original.note_acc"] == 1.0 and "music.resynth.tempo_acc" in metrics


def _music_units_data(run: Path, tok: MelKMeansTokenizer, seeds: range) -> None:
    """``RUN/units/music/<hash>``: the melodies of ``seeds`` encoded by ``tok``."""
    rows = []
    for s in seeds:
        m = generate_melody(s)
        rows.append({"id": f"m{s}", "text": m.caption(), "duration": 1.0,
                     "units": tok.encode(render(m), 16000).tolist()})  # fmt: skip
    split = datasets.Dataset.from_list(rows)
    datasets.DatasetDict(train=split, test=split).save_to_disk(str(Run(run).music_units / tok.hash))


def test_music_sources(music_model, base_dirs, tmp_path):
    hf, tok = music_model
    run = hf.parent.parent
    _music_units_data(run, tok, range(4))
    lm = SpeechLM.load(hf, device="cpu")
    p, layout = lm.prompts, lm.layout
    data = DataConfig(ratios={"ttm": 0.3, "music_continue": 0.1})
    ttm, cont = music_sources(run, p, layout, STAGE1_RATIOS, data, "train")
    assert (ttm.task, cont.task) == ("ttm", "music_continue")
    row = ttm.dataset[0]
    ex = ttm.build(row)
    assert sum(label != -100 for label in ex.labels) == len(row["units"]) + 1
    rng = np.random.default_rng(0)
    row = cont.augment(cont.dataset[1], rng)
    n = len(row["units"])
    assert 0.25 * n - 1 <= row["start"] <= 0.75 * n + 1
    ex = cont.build(row)
    assert sum(label != -100 for label in ex.labels) == n - row["start"] + 1
    assert music_sources(run, p, layout, STAGE1_RATIOS, DataConfig(), "train") == []
    plain = SpeechLM.load(run_adapt(tmp_path / "plain", base_dirs["qwen3_moe"]), device="cpu")
    with pytest.raises(ValueError, match=r"no music modality; adapt with --music=true"):
        music_sources(run, plain.prompts, plain.layout, STAGE1_RATIOS, data, "train")


def test_evaluate_continuation(music_model):
    hf, tok = music_model
    played = generate_melody(3)
    stored = audio_value(render(played))
    row = {"id": "m", "music": stored, "text": played.caption(), "instrument": "x", "task": "music"}
    test = datasets.Dataset.from_list([{**row, "duration": 1.0}], features=MUSIC_FEATURES)
    units = tok.encode(decode_audio(stored), 16000).tolist()
    half = round(0.5 * len(units))
    lm = MusicLM(SpeechLM.load(hf, device="cpu"), tok)
    _rig(lm, units[half:])  # the model writes exactly the rest of the melody
    out = evaluate_continuation(lm, test, 4)
    assert out["n"] == 1 and out["note_acc"] == 1.0 and out["tempo_acc"] == 1.0
    assert out["prompt_only"]["note_acc"] < 0.8  # the first half alone misses notes
    metrics = flat_metrics({"music": {"n": 1, "note_acc": 0.5, "continue": out}})
    assert metrics["music.continue.note_acc"] == 1.0
    assert metrics["music.continue.prompt_only.note_acc"] == out["prompt_only"]["note_acc"]
    with pytest.raises(ValueError, match="share must be in"):
        evaluate_continuation(lm, test, 1, share=1.0)
