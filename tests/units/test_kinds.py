"""The kind table is the one place unit-tokenizer kinds are listed: every row has a recipe section,
fits, saves and loads through it; a kind not in it fails on one line naming the file."""

from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import most
from most.testing import UNIT_SENTENCES as SENTENCES
from most.units import load_tokenizer
from most.units.base import TOKENIZER_FILE
from most.units.ctc_kmeans import CTCKMeansTokenizer
from most.units.ctc_phones import CTCPhonesTokenizer
from most.units.kinds import KINDS, TokenizerConfig, kind
from most.units.sample import Utterances

#: Kinds a tiny fit can make here; hubert_kmeans needs a local model (tests/units/test_hubert_kmeans).
FITTABLE = ("ctc_phones", "ctc_kmeans", "mel_kmeans", "rvq")


def test_every_kind_has_its_own_section():
    sections = {f.name for f in fields(TokenizerConfig) if f.name in KINDS}
    assert sections == set(KINDS)
    for name, row in KINDS.items():
        assert row.tokenizer.kind == name
        assert isinstance(getattr(TokenizerConfig(kind=name), name), row.config)
        assert isinstance(TokenizerConfig(kind=name).settings, row.config)


@pytest.fixture(scope="module")
def audio(train_wavs) -> Utterances:
    texts = [s for s in SENTENCES for _ in range(2)]
    return Utterances(list(train_wavs), texts, ["en-us+f3", "en-us+m3"] * len(SENTENCES))


@pytest.mark.parametrize("name", FITTABLE)
def test_every_kind_round_trips(name, audio, tmp_path):
    cfg = TokenizerConfig(kind=name, fit_seconds=10, gl_iters=2)
    if name == "mel_kmeans":
        cfg.mel_kmeans.k = 8
    if name == "ctc_kmeans":
        cfg.ctc_kmeans.k = 8
    if name == "rvq":
        cfg.rvq.k = 8
    for section in (cfg.ctc_phones, cfg.ctc_kmeans):  # a round trip needs no good encoder
        section.encoder.epochs = 0.2
    tok = cfg.settings.fit(audio, seed=0, fit_seconds=10, dedup=True, gl_iters=2)
    assert isinstance(tok, KINDS[name].tokenizer)
    loaded = load_tokenizer(tok.save(tmp_path / "tok"))
    assert type(loaded) is type(tok) and loaded.hash == tok.hash
    assert cfg.differences(loaded) == {}
    wav = audio.wavs[0]
    assert torch.equal(loaded.encode(wav, 16_000), tok.encode(wav, 16_000))


def test_an_unknown_kind_fails_on_one_line(tmp_path, mel_tok):
    mel_tok.save(tmp_path / "tok")
    path = tmp_path / "tok" / TOKENIZER_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | {"kind": "wav2vec_kmeans"}))
    with pytest.raises(ValueError) as err:
        load_tokenizer(tmp_path / "tok")
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "'wav2vec_kmeans'" in message
    assert all(name in message for name in KINDS)
    with pytest.raises(ValueError, match=r"tokenizer\.kind: unknown unit tokenizer kind 'nope'"):
        TokenizerConfig(kind="nope")
    with pytest.raises(ValueError, match="unknown"):
        kind("nope")


#: Modules that still spell a kind, each with the reason; empty it as they go.
KNOWN: dict[str, str] = {}


def test_no_module_branches_on_a_kind_name():
    """Outside the table, a kind's name appears only in its own module (its ``kind`` attribute
    and docstrings): no ``if kind == ...`` anywhere."""
    root = Path(most.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "units" / "kinds.py" or str(path.relative_to(root)) in KNOWN:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            spelt = isinstance(node, ast.Constant) and node.value in KINDS
            if spelt and path != root / "units" / f"{node.value}.py":
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    assert not found, "kind names spelt outside most/units/kinds.py: " + ", ".join(found)


def test_ctc_kinds_share_the_encoder_settings():
    for name, cls in (("ctc_phones", CTCPhonesTokenizer), ("ctc_kmeans", CTCKMeansTokenizer)):
        settings = TokenizerConfig(kind=name).fit_settings()
        assert list(settings) == [
            "seed",
            "fit_seconds",
            "encoder_utterances",
            "encoder_epochs",
            "encoder_minutes",
            "encoder_short",
            "encoder_batch_frames",
            "encoder_lr",
            "encoder_precision",
        ]
        assert KINDS[name].tokenizer is cls
