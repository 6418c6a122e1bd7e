"""``most stage1`` with ``multiscale.enabled`` on units of 4 codebooks: the frame batches, the
losses falling, the export reloading through the Auto classes, and what is refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM

from most.data.prompts import Example
from most.layout import TokenLayout
from most.multiscale import MostMultiScale, to_frames
from most.multiscale.batches import FrameBatches, MultiScaleSettings
from most.run import UNIT_TOKENIZER_FILE, Run
from most.stages.stage1 import stage1
from most.stages.stage2 import stage2
from most.testing import UNIT_HASH
from most.testing.runs import N_UNITS, sentences
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig

C = 4
K = N_UNITS // C
FAST = TrainerConfig(max_steps=16, val_every=8, ckpt_every=8, log_every=1, progress=False)
DATA = DataConfig(batch_size=4, max_len=48, val_batches=1, pack=True, ratios={"text_lm": 0.1})
OPTIM = OptimConfig(lr=1e-2, warmup_steps=2, loss_weighting="token")
MS = MultiScaleSettings(enabled=True, local_hidden_size=16, local_layers=1, local_heads=2)


def frame_rows(n: int, seed: int) -> dict[str, list]:
    """Speech rows whose units are whole frames, code ``c`` of a frame in codebook ``c``; a
    frame's later codes follow from its first (``(first + c) % K``): something to learn."""
    rng = random.Random(seed)
    firsts = [[rng.randrange(K) for _ in range(rng.randint(3, 8))] for _ in range(n)]
    units = [[c * K + (f + c) % K for f in row for c in range(C)] for row in firsts]
    return {
        "id": [f"f{seed}-{i}" for i in range(n)],
        "units": units,
        "text": sentences(n, seed),
        "voice": ["v0"] * n,
    }


@pytest.fixture
def frame_run(speech_run: Path) -> Path:
    """The tiny speech run with its units read as 4 codebooks of 6."""
    R = Run(speech_run)
    info_file = R.unit_tokenizer / UNIT_TOKENIZER_FILE
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "n_codebooks": C, "codebook_size": K}))
    speech = datasets.DatasetDict(
        train=datasets.Dataset.from_dict(frame_rows(48, 0)),
        dev=datasets.Dataset.from_dict(frame_rows(4, 1)),
    )
    target = R.unit_dataset(UNIT_HASH, "speech")
    speech.save_to_disk(str(target.with_name("speech_frames")))
    import shutil

    shutil.rmtree(target)
    target.with_name("speech_frames").rename(target)
    return speech_run


def test_frame_batches_pad_or_pack_positions_with_their_codes(speech_run: Path) -> None:
    layout = TokenLayout.load(Run(speech_run).hf("adapt"))
    u = layout.unit_offset
    flat = [5, 6, u + 0, u + K + 1, u + 2 * K + 2, u + 3 * K + 3, 7]  # text, one frame, text
    ex = Example(flat, [-100, -100, *flat[2:]], "tts")
    batches = FrameBatches(layout, C, max_len=8, pad_id=1, batch_size=1)
    assert batches.length(ex) == 4
    padded = batches([ex, Example([5, 6], [-100, 6], "text_lm")])
    assert padded["input_ids"].tolist() == [[5, 6, u, 7], [5, 6, 1, 1]]
    assert padded["codes"][0, 2].tolist() == [0, 1, 2, 3]
    assert (padded["codes"][0, [0, 1, 3]] == -1).all() and (padded["codes"][1] == -1).all()
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    packed = FrameBatches(layout, C, max_len=8, pad_id=1, batch_size=1, pack=True)(
        [ex, Example([5, 6], [-100, 6], "text_lm")]
    )
    assert packed["input_ids"].tolist() == [[5, 6, u, 7, 5, 6]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1]]
    assert packed["codes"][0, 2].tolist() == [0, 1, 2, 3] and "attention_mask" not in packed
    cut = FrameBatches(layout, C, max_len=3, pad_id=1, batch_size=1)([ex])
    assert cut["input_ids"].tolist() == [[5, 6, u]]


def test_stage1_trains_and_exports_a_multi_scale_model(frame_run: Path) -> None:
    stage1(run=frame_run, data=DATA, optim=OPTIM, trainer=FAST, multiscale=MS)
    stage_dir = frame_run / "stage1"
    rows = (stage_dir / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "train/local_loss" in header and "train/loss_tts" in header
    col = header.index("train/local_loss")
    local = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert sum(local[-3:]) / 3 < sum(local[:3]) / 3 - 0.2, local
    model = AutoModelForCausalLM.from_pretrained(Run(frame_run).hf("stage1"))
    assert isinstance(model, MostMultiScale) and model.config.n_codebooks == C
    assert model.config.local_hidden_size == 16
    # the exported weights are the trained ones: its losses on a training row are low
    row = datasets.load_from_disk(str(Run(frame_run).unit_dataset(UNIT_HASH, "speech")))["train"]
    layout = model.layout
    ids = torch.tensor(
        [layout.special_id("<|begin_of_audio|>")]
        + [layout.unit_offset + x for x in row[0]["units"]]
    )
    pos, codes, labels = to_frames(ids, layout, C, ids)
    out = model(pos[None], codes[None], labels=labels[None])
    assert out.local_loss < torch.tensor(float(K)).log()  # below uniform over a codebook
    stage1(run=frame_run, data=DATA, optim=OPTIM, trainer=FAST, multiscale=MS)  # up to date: no-op
    assert (stage_dir / "metrics.json").is_file()
    with pytest.raises(
        ValueError, match="a multi-scale model; the speech stages train from a flat"
    ):
        stage2(run=frame_run, data=DATA, optim=OPTIM, trainer=FAST)


def test_multi_scale_refusals(frame_run: Path, speech_run: Path) -> None:
    with pytest.raises(ValueError, match="loss_weighting=token"):
        stage1(
            run=frame_run,
            data=DATA,
            optim=OptimConfig(loss_weighting="example"),
            trainer=FAST,
            multiscale=MS,
        )
    with pytest.raises(ValueError, match="must divide"):
        MultiScaleSettings(enabled=True, local_hidden_size=10, local_heads=4)


def test_one_codebook_units_are_refused(speech_run: Path) -> None:
    with pytest.raises(ValueError, match="several codebooks"):
        stage1(run=speech_run, data=DATA, optim=OPTIM, trainer=FAST, multiscale=MS)
