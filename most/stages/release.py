"""``most release``: a self-contained folder anyone can load with plain ``transformers``.

``RUN/release/`` (written atomically)::

    config.json, model.safetensors, generation_config.json   the adapted model (stop ids set)
    tokenizer.json, tokenizer_config.json, token_layout.json  text tokenizer + token layout
    unit_tokenizer/                                          speech-unit tokenizer (JSON + safetensors)
    music_tokenizer/                                         music-unit tokenizer (models with music)
    vocoder.json                                             how units become audio (kind, settings)
    eval/report.json, eval/report.md, eval/*.png             the evaluation it ships with
    README.md                                                model card (YAML metadata, eval table,
                                                             data provenance, licence, intended use)
    SHA256SUMS                                               checksum of every other file

Loading it::

    import most  # registers the model class
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("runs/demo/release")
    # or: most.generate.SpeechLM.load("runs/demo/release").asr([wav])

Before the folder is moved into place it is reloaded in a fresh Python process, which must
reproduce the report's ASR examples exactly (:func:`most.export.verify_release`). ``--source.lora`` merges a
peft LoRA adapter into the weights first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from most.eval.ttm import MUSIC_UNITS_DIR, find_music_tokenizer
from most.export import (
    REPORT_DIR,
    SUMS_FILE,
    ModelCard,
    copy_eval,
    merge_lora,
    model_card,
    provenance,
    reload_examples,
    verify_release,
    vocoder_settings,
    write_checksums,
)
from most.generate import UNITS_DIR, SpeechLM
from most.io import atomic_dir, atomic_write_json, atomic_write_text, read_json
from most.layout import MUSIC
from most.run import FINGERPRINT_FILE, Run, fingerprint, folder_id


@dataclass(frozen=True)
class ReleaseSource:
    """What goes into the release (``--source.*``)."""

    model: Path | None = None
    """Model folder; None = ``RUN/stage2/hf``."""
    units: Path | None = None
    """Unit tokenizer; None = ``RUN/units``."""
    lora: Path | None = None
    """Optional peft LoRA adapter folder merged into the weights before export."""
    verify: bool = True
    """Reload in a fresh process and reproduce the report's ASR examples."""


_DEFAULT_SOURCE, _DEFAULT_CARD = ReleaseSource(), ModelCard()


def release(
    run: Path,
    source: ReleaseSource = _DEFAULT_SOURCE,
    card: ModelCard = _DEFAULT_CARD,
    force: bool = False,
) -> Path:
    """Export ``RUN/release/`` from the evaluated model (needs ``RUN/eval/report.json``)."""
    run = Path(run)
    R = Run(run)
    out = R.release
    if not R.report.is_file():
        raise FileNotFoundError(f"{R.report}: no eval report; run `most eval` first")
    model_dir = Path(source.model or R.hf("stage2"))
    units_dir = Path(source.units or R.units)
    inputs = {"eval": R.output_id("eval"), "model": folder_id(model_dir)}
    current = fingerprint(dict(source=source, card=card), inputs)
    done = (out / SUMS_FILE).is_file()
    if done and not force and (R.recorded("release") is None or R.check("release", current, False)):
        print(f"{out} is up to date (pass --force=true to redo it)")
        return out
    report = read_json(R.report)
    evaluated = (R.recorded("eval") or {}).get("inputs", {}).get("model")
    if evaluated is not None and evaluated != inputs["model"]:
        raise ValueError(
            f"{R.report} scores another model than {model_dir} (model {evaluated} != "
            f"{inputs['model']}); run `most eval --force` on the model you release"
        )
    lm = SpeechLM.load(model_dir, units=units_dir, device="cpu")
    if lm.units is None:
        raise FileNotFoundError(f"{units_dir}: no unit tokenizer to ship")
    shipped = report.get("meta", {}).get("layout_hash")
    if shipped != lm.layout.hash:
        raise ValueError(
            f"{R.report}: report made with token layout {shipped}, the model has "
            f"{lm.layout.hash}; run `most eval --force` on the model you release"
        )
    model = merge_lora(lm.model, source.lora) if source.lora else lm.model
    gen = getattr(model, "generation_config", None)  # a multi-scale model's generate has none
    if gen is not None:
        gen.eos_token_id, gen.pad_token_id = lm.prompts.stop_ids(), lm.pad_id
        gen.max_new_tokens, gen.do_sample = 256, False
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        lm.tokenizer.save_pretrained(str(tmp))
        lm.layout.save(tmp)
        lm.units.save(tmp / UNITS_DIR)
        if MUSIC in lm.layout.modalities:  # `most music --model RELEASE` finds it there
            find_music_tokenizer(model_dir, R.music_units).save(tmp / MUSIC_UNITS_DIR)
        atomic_write_json(tmp / "vocoder.json", vocoder_settings(lm.units, tmp / UNITS_DIR))
        copy_eval(R.eval, tmp / REPORT_DIR)
        atomic_write_text(tmp / "README.md", model_card(card, report, provenance(run), lm))
        if source.verify:
            examples = reload_examples(run, report, lm.layout.unit_tokenizer_hash)
            meta = report["meta"]
            check = verify_release(tmp, examples, meta.get("sampling", {}), meta.get("device"))
            atomic_write_json(tmp / REPORT_DIR / "reload_check.json", check)
        atomic_write_json(tmp / FINGERPRINT_FILE, current)
        write_checksums(tmp)
    print(f"most release: wrote {out}")
    return out
