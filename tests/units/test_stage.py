"""``most units`` end to end on the espeak fixture: outputs, rejects, resume, shards, idempotency."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import most.units.encode as encode_mod
from most.audio import decode_audio
from most.run import Run, StaleOutput
from most.stages.units import TokenizerConfig, units
from most.units import load_tokenizer
from most.units.mel_kmeans import MelKMeansConfig

CFG = TokenizerConfig(fit_seconds=60, gl_iters=4, mel_kmeans=MelKMeansConfig(k=16, frame_rate=50))


def _run(run: Path, **kw) -> Path:
    return units(run=run, tokenizer=CFG, part_rows=4, **kw)


def _tables(run: Path, dataset: str) -> dict[str, list[dict]]:
    return {s: ds.to_list() for s, ds in Run(run).load_units(dataset).items()}


def test_stage_outputs(run_dir):
    out = _run(run_dir)
    assert out == Run(run_dir).units
    tok = load_tokenizer(Run(run_dir).unit_tokenizer)
    meta = Run(run_dir).unit_info()
    assert meta["vocab_size"] == 16 and meta["hash"] == tok.hash
    speech = Run(run_dir).load_units("speech", tok.hash)
    assert set(speech) == {"train", "dev", "test"}
    row = speech["train"][0]
    assert "audio" not in row and {"id", "text", "duration", "units"} <= row.keys()
    assert row["units"] and all(0 <= u < 16 for u in row["units"])
    sqa = Run(run_dir).load_units("sqa")["qa_train"][0]
    assert sqa["units"] and sqa["answer_units"] and "answer_audio" not in sqa
    # no audio columns, nothing to encode
    assert not Run(run_dir).unit_dataset(tok.hash, "text").exists()

    manifest = json.loads(Run(run_dir).units_manifest.read_text())
    assert manifest["hash"] == tok.hash
    assert manifest["datasets"]["speech"]["train"]["rows"] == 16
    assert manifest["seconds"] > 0 and manifest["units_per_s"] > 0
    # The two broken test rows are named, counted, and dropped.
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rejects} == {"bad_bytes", "bad_silent"}
    assert manifest["rejects_by_reason"] == {"unreadable": 1, "empty_audio": 1}
    assert [r["id"] for r in speech["test"]] == ["te0", "te1"]
    with pytest.raises(ValueError, match="expected"):
        Run(run_dir).load_units("speech", "0" * 16)


def test_units_match_direct_encoding(run_dir, data_dir):
    import datasets

    out = _run(run_dir)
    tok = load_tokenizer(out)
    raw = datasets.load_from_disk(str(data_dir / "speech"))["dev"].with_format("numpy")
    for row, enc in zip(raw, Run(run_dir).load_units("speech")["dev"], strict=True):
        assert enc["units"] == tok.encode(decode_audio(row["audio"]), 16_000).tolist()


def test_rerun_is_noop_and_settings_change_is_refused(run_dir, monkeypatch):
    _run(run_dir)
    stamp = Run(run_dir).units_manifest.stat().st_mtime_ns
    monkeypatch.setattr(encode_mod, "encode_part", _fail)
    _run(run_dir)
    assert Run(run_dir).units_manifest.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="force"):
        units(
            run=run_dir,
            tokenizer=TokenizerConfig(fit_seconds=60, mel_kmeans=MelKMeansConfig(k=8)),
            part_rows=4,
        )


def _fail(*_a, **_k):
    raise AssertionError("nothing should be re-encoded")


def test_resume_after_interruption(run_dir, tmp_path, data_dir):
    reference = tmp_path / "ref"
    reference.mkdir()
    Run(reference).data.symlink_to(data_dir)
    _run(reference)

    real, calls = encode_mod.encode_part, []

    def dies_after_three(job, tok):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(job.out)
        return real(job, tok)

    encode_mod.encode_part = dies_after_three
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(run_dir)
        assert not Run(run_dir).units_manifest.exists()
        done = list(calls)
        calls.clear()
        encode_mod.encode_part = lambda job, tok: (calls.append(job.out), real(job, tok))[1]
        _run(run_dir)
    finally:
        encode_mod.encode_part = real
    assert not set(done) & set(calls)  # finished parts were not encoded again
    assert done and calls
    for name in ("speech", "sqa"):
        assert _tables(run_dir, name) == _tables(reference, name)


def test_shards_merge_without_recomputation(run_dir, tmp_path, data_dir, monkeypatch):
    reference = tmp_path / "ref"
    reference.mkdir()
    Run(reference).data.symlink_to(data_dir)
    _run(reference)

    _run(run_dir, fit_only=True)
    _run(run_dir, shard="0/2")
    assert not Run(run_dir).units_manifest.exists()
    _run(run_dir, shard="1/2")
    monkeypatch.setattr(encode_mod, "encode_part", _fail)
    _run(run_dir)
    for name in ("speech", "sqa"):
        assert _tables(run_dir, name) == _tables(reference, name)
    with pytest.raises(ValueError, match="need 0 <= i < n"):
        _run(run_dir, shard="2/2")


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="most data"):
        units(run=tmp_path, tokenizer=CFG)


@pytest.mark.slow
def test_num_proc_matches_single_process(run_dir, tmp_path, data_dir):
    reference = tmp_path / "ref"
    reference.mkdir()
    Run(reference).data.symlink_to(data_dir)
    _run(reference)
    _run(run_dir, num_proc=2)
    for name in ("speech", "sqa"):
        assert _tables(run_dir, name) == _tables(reference, name)


def test_units_of_changed_data_are_refused_then_redone(run_dir, tmp_path, data_dir):
    """``most data`` re-run with a new split (e.g. ``speech.n_short``), then ``most units``: the
    units made from the old data are refused (naming the input), never reported "up to date";
    ``--force`` encodes the new data."""
    import datasets

    run = tmp_path / "grown"
    Run(run).data.mkdir(parents=True)
    Run(run).dataset("sqa").symlink_to(data_dir / "sqa")
    speech = datasets.load_from_disk(str(data_dir / "speech"))
    speech.save_to_disk(str(Run(run).dataset("speech")))
    _run(run)
    assert set(Run(run).load_units("speech")) == {"train", "dev", "test"}
    speech["train_short"] = speech["dev"]
    shutil.rmtree(Run(run).dataset("speech"))
    speech.save_to_disk(str(Run(run).dataset("speech")))
    with pytest.raises(StaleOutput, match=r"\(input data \w+ -> \w+\); pass --force to redo units"):
        _run(run)
    _run(run, force=True)
    grown = Run(run).load_units("speech")
    assert set(grown) == {"train", "dev", "test", "train_short"}
    assert grown["train_short"]["units"] == grown["dev"]["units"]
    manifest = json.loads(Run(run).units_manifest.read_text())
    assert manifest["datasets"]["speech"]["train_short"]["rows"] == len(speech["dev"])
