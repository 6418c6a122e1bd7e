"""``most adapt``: turn a pretrained HF MoE causal LM into a modality-aware speech-text model.

Reads ``source.model`` (default ``RUN/base/hf``) and the run's unit tokenizer, writes ``RUN/adapt/hf``:
the steps and their checks are in :mod:`most.adapt`. ``--dry-run`` reads only the config and the
tokenizer and prints the plan, the adapted parameter counts and the host RAM adapt needs.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from most.adapt import (
    LayoutSection,
    SourceSection,
    adapted_config,
    build_layout,
    check_collisions,
    extend_tokenizer,
    extend_vocab,
    plan,
    with_music,
)
from most.io import atomic_dir, atomic_write_json
from most.layout import LAYOUT_FILE
from most.modeling import MostConfig, MostForCausalLM
from most.moe.arch import spec_for
from most.moe.config import ExpertsConfig
from most.run import Run, fingerprint, folder_id
from most.weights import bounded_heap, default_dtype, load_causal_lm, resolve_dtype


def adapt(
    run: Path,
    source: SourceSection | None = None,
    experts: ExpertsConfig | None = None,
    layout: LayoutSection | None = None,
    music: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> Path | dict:
    """Adapt ``source.model`` (default ``RUN/base/hf``) and write ``RUN/adapt/hf``.

    ``music``: add the music modality of ``RUN/units/music`` to the layout
    (:func:`most.adapt.with_music`; the run needs ``most data --music.*`` and ``most units``).

    ``dry_run``: print (and return) what adapt would build and the host RAM it needs, reading only
    the config (``source.model`` may then also be a ``config.json`` file) and the tokenizer.
    """
    source, experts, layout_args = (
        source or SourceSection(),
        experts or ExpertsConfig(),
        layout or LayoutSection(),
    )
    if music:  # the layout section then holds the music modality: it is in the fingerprint
        layout_args = with_music(run, layout_args)
    run = Path(run)
    R = Run(run)
    out = R.hf("adapt")
    src = Path(source.model) if source.model is not None else R.hf("base")
    if dry_run:
        return _dry_run(run, src, source, experts, layout_args)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(
            f"{src}: no HF model folder (config.json missing); run `most base`?"
        )
    inputs = {"source": folder_id(src)}
    if layout_args.n_units is None:  # the layout reads the run's unit tokenizer
        inputs["units"] = R.output_id("units")
    current = fingerprint(dict(source=source, experts=experts, layout=layout_args), inputs)
    finished = (out / "config.json").is_file() and (out / LAYOUT_FILE).is_file()
    if finished and not force and (R.recorded("adapt") is None or R.check("adapt", current, False)):
        print(f"most adapt: {out} is up to date (pass --force=true to rebuild it)")
        return out

    cfg = AutoConfig.from_pretrained(src)
    spec_for(cfg)  # dense or unknown architectures stop here
    tokenizer = AutoTokenizer.from_pretrained(src)
    layout = build_layout(run, layout_args, max(cfg.vocab_size, len(tokenizer)))
    check_collisions(layout, tokenizer.get_vocab())
    report = plan(cfg, experts, layout.modalities, layout.vocab_size)

    with bounded_heap():
        out = _convert_and_save(src, out, source, experts, layout_args, layout, tokenizer, report)
    R.record("adapt", current)
    print(f"most adapt: wrote {out} ({report['params_after']:,} params, layout {layout.hash})")
    return out


def _dry_run(
    run: Path, src: Path, source: SourceSection, experts: ExpertsConfig, layout_args: LayoutSection
) -> dict:
    # Imported here: the training package pulls Lightning, which adapt itself does not need.
    from most.train.dryrun import adapt_dry_run, load_config, print_report

    cfg = load_config(src)
    spec_for(cfg)
    tokenizer = None
    if src.is_dir() and (src / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(src)
    vocab = max(cfg.vocab_size, len(tokenizer)) if tokenizer is not None else cfg.vocab_size
    layout = build_layout(run, layout_args, vocab)
    if tokenizer is not None:
        check_collisions(layout, tokenizer.get_vocab())
    report = plan(cfg, experts, layout.modalities, layout.vocab_size)
    folder = src if src.is_dir() else src.parent
    dt = resolve_dtype(source.dtype, folder, cfg)
    adapted = adapted_config(cfg, layout, experts)
    return print_report(adapt_dry_run(cfg, adapted, report, dt.itemsize))


def _convert_and_save(src, out, source, experts, layout_args, layout, tokenizer, report) -> Path:
    """Load, extend the vocabulary, convert and save; host memory stays near one model copy."""
    lm = load_causal_lm(src, source.dtype)
    lm.config.output_router_logits = False  # our blocks own the aux loss
    extend_vocab(lm, layout.vocab_size, layout_args.init_noise, layout_args.seed)
    tokenizer = extend_tokenizer(tokenizer, layout)

    config = MostConfig(text_config=lm.config, layout=layout.to_dict(), experts=experts.to_dict())
    # Blocks are converted one layer at a time (each old block is freed once its successor is
    # filled); new blocks are created directly in the weights' dtype, never in a wider one first.
    with default_dtype(lm.dtype):
        model = MostForCausalLM(config, source=lm)
    with atomic_dir(out) as tmp:
        # Stacked expert tensors as they are in memory: writing transformers' per-expert layout
        # would first copy every layer's gate/up halves (about half the model at once).
        model.save_pretrained(tmp, save_original_format=False)
        tokenizer.save_pretrained(tmp)
        layout.save(tmp)
        atomic_write_json(
            tmp / "adapt_report.json", {**report, "layout_hash": layout.hash, "source": str(src)}
        )
    return out
