"""`most release` on the evaluated tiny run: the files, the model card, the checksums and the reload
check."""

import hashlib
import json

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
