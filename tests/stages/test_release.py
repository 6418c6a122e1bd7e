"""`most release` on the evaluated tiny run: the files, the model card, the checksums and the reload
check."""

import hashlib
import json
import shutil
import stat

import pytest
import yaml

from most.stages.release import ReleaseSource, release


def test_release_reload_identity(evaluated):
    run, _ = evaluated
    out = release(run=run, source=ReleaseSource())
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "token_layout.json", "unit_tokenizer/unit_tokenizer.json", "vocoder.json",
                 "README.md", "eval/report.json", "SHA256SUMS"):  # fmt: skip
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    check = json.loads((out / "eval" / "reload_check.json").read_text())
    assert check == {"examples": 3, "identical": True}
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "asr.test.wer" in card
    meta = yaml.safe_load(card.split("---")[1])
    names = {m["name"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert {"asr.test.wer", "tts.ctc.wer_model", "sqa.s2t.accuracy"} <= names
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    vocoder = json.loads((out / "vocoder.json").read_text())
    assert vocoder["vocoder"] == "griffin_lim" and vocoder["gl_iters"] > 0
    assert vocoder["mel"]["hop_length"] > 0
    assert (out / vocoder["weights"]).is_file() and vocoder["templates"]["tensor"]
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert modes["model.safetensors"] == 0o644 and modes["unit_tokenizer"] == 0o755
    assert all(m & 0o444 == 0o444 for m in modes.values()), modes  # readable by everyone


def copy_run(src, dst):
    """A writable copy of the evaluated run (its inputs linked, its eval copied)."""
    for name in ("data", "units", "base", "stage2", "judge"):
        (dst / name).symlink_to((src / name).resolve())
    shutil.copytree(src / "eval", dst / "eval")
    return dst


def test_release_refuses_a_report_of_another_model(evaluated, tmp_path):
    run = copy_run(evaluated[0], tmp_path)
    report = json.loads((run / "eval" / "report.json").read_text())
    report["meta"]["layout_hash"] = "0" * 16
    (run / "eval" / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="report made with token layout 0000000000000000"):
        release(run=run, source=ReleaseSource())
    record = json.loads((run / "eval" / "fingerprint.json").read_text())
    record["inputs"]["model"] = "another"
    (run / "eval" / "fingerprint.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="scores another model"):
        release(run=run, source=ReleaseSource())
    assert not (run / "release").exists()


def test_release_refuses_a_reload_check_of_nothing(evaluated, tmp_path):
    run = copy_run(evaluated[0], tmp_path)
    report = json.loads((run / "eval" / "report.json").read_text())
    report["details"]["asr"] = {}
    (run / "eval" / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="no ASR examples to reproduce"):
        release(run=run, source=ReleaseSource())
    assert not (run / "release").exists()
