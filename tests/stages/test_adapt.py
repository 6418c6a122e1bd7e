"""`most adapt` on tiny configs of every supported architecture: the full life cycle; bad inputs
fail before any weight is written; the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, PhimoeConfig, Qwen3Config

import most  # noqa: F401  (registers the adapted model with the Auto classes)
from most.adapt import SourceSection
from most.layout import LayoutError
from most.modeling import MostForCausalLM, load_layout
from most.moe.arch import ArchError
from most.stages.adapt import adapt
from most.testing import ARCHS, TEXT_VOCAB, layout_args, mixed_batch, run_adapt
from most.weights import load_causal_lm

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("arch", ARCHS)
def test_lifecycle(arch, base_dirs, tmp_path):
    out = run_adapt(tmp_path, base_dirs[arch])
    layout = load_layout(out)
    assert layout == load_layout(AutoModelForCausalLM.from_pretrained(out).config)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, MostForCausalLM)
    assert model.get_input_embeddings().weight.shape[0] == layout.vocab_size

    # forward with labels -> LM loss + aux loss; backward reaches experts, router, new rows
    model.train()
    ids = mixed_batch(layout)
    outputs = model(ids, attention_mask=torch.ones_like(ids), labels=ids)
    assert outputs.aux_loss is not None and outputs.aux_loss > 0
    outputs.loss.backward()
    block = next(m for m in model.modules() if type(m).__name__ == "ModalityMoE")
    assert block.experts.gate_up_proj.grad.abs().sum() > 0
    assert block.router.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad[layout.unit_offset :].abs().sum() > 0

    # greedy generation with and without the KV cache agree
    model.eval()
    prompt = ids[:, :9]
    kw = dict(max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(prompt))
    cached = model.generate(prompt, use_cache=True, **kw)
    uncached = model.generate(prompt, use_cache=False, **kw)
    assert cached.shape[1] == prompt.shape[1] + 6
    assert torch.equal(cached, uncached)

    # save -> reload -> identical logits
    with torch.no_grad():
        before = model(ids).logits
    model.save_pretrained(tmp_path / "again")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert torch.equal(again(ids).logits, before)


@pytest.mark.parametrize("arch", ARCHS)
def test_upcycle_text_logits_equal_base(arch, base_dirs, tmp_path):
    out = run_adapt(tmp_path, base_dirs[arch], init="upcycle")
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dirs[arch]).eval()
    ids = torch.randint(4, TEXT_VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(ids).logits[..., :TEXT_VOCAB] - base(ids).logits).abs().max()
    assert diff <= 1e-5
    layer_experts = [m.experts.num_experts for m in model.modules() if hasattr(m, "router")]
    assert layer_experts and all(n == 16 for n in layer_experts)  # 2 groups x 8 copies


def test_split_with_blind_topk_router_is_the_base_model(base_dirs, tmp_path):
    """Split copies experts and router rows 1:1: only the group restriction can change outputs."""
    out = run_adapt(tmp_path, base_dirs["qwen3_moe"], init="split", router="topk")
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dirs["qwen3_moe"]).eval()
    ids = torch.randint(4, TEXT_VOCAB, (2, 12))
    with torch.no_grad():
        diff = (model(ids).logits[..., :TEXT_VOCAB] - base(ids).logits).abs().max()
    assert diff <= 1e-5  # modality-blind top-k over the same 8 experts is the base model


def test_tokenizer_gains_tokens(base_dirs, tmp_path):
    out = run_adapt(tmp_path, base_dirs["qwen3_moe"])
    layout = load_layout(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = [
        layout.special_id("<|begin_of_audio|>"),
        *layout.units_to_ids(torch.tensor([0, 7])).tolist(),
    ]
    text = tok.decode(ids)
    assert "<|begin_of_audio|>" in text and "<|u0|>" in text and "<|u7|>" in text
    assert tok.convert_tokens_to_ids("<|u3|>") == layout.unit_offset + 3
    assert len(tok) == layout.vocab_size


def test_rerun_is_noop_unless_forced(base_dirs, tmp_path):
    out = run_adapt(tmp_path, base_dirs["olmoe"])
    stamp = (out / "config.json").stat().st_mtime_ns
    run_adapt(tmp_path, base_dirs["olmoe"])
    assert (out / "config.json").stat().st_mtime_ns == stamp
    adapt(
        run=tmp_path,
        source=SourceSection(model=base_dirs["olmoe"]),
        layout=layout_args(),
        force=True,
    )
    assert (out / "config.json").stat().st_mtime_ns != stamp


def test_units_read_from_units_stage(base_dirs, tmp_path):
    info = tmp_path / "units" / "tokenizer" / "unit_tokenizer.json"
    info.parent.mkdir(parents=True)
    info.write_text('{"vocab_size": 11, "hash": "abc123"}')
    out = adapt(run=tmp_path, source=SourceSection(model=base_dirs["mixtral"]))
    layout = load_layout(out)
    assert (layout.n_units, layout.unit_tokenizer_hash) == (11, "abc123")


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        (Qwen3Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, vocab_size=64), ArchError, "not a Mixture-of-Experts"),
        (PhimoeConfig(num_local_experts=4, vocab_size=64), ArchError, "phimoe: its gate is SparseMixer"),
    ],
)  # fmt: skip
def test_bad_models_rejected_before_writing(config, error, match, word_tokenizer, tmp_path):
    src = tmp_path / "src"  # only config + tokenizer: adapt must fail before it needs weights
    config.save_pretrained(src)
    word_tokenizer.save_pretrained(src)
    with pytest.raises(error, match=match):
        adapt(run=tmp_path, source=SourceSection(model=src), layout=layout_args())
    assert not (tmp_path / "adapt").exists()


@pytest.mark.parametrize("token", ["<|asr|>", "<|u3|>"])
def test_colliding_layout_rejected_before_writing(token, base_dirs, word_tokenizer, tmp_path):
    src = tmp_path / "src"
    for f in base_dirs["qwen3_moe"].iterdir():
        (src / f.name).parent.mkdir(exist_ok=True)
        (src / f.name).write_bytes(f.read_bytes())
    word_tokenizer.add_tokens([token])
    word_tokenizer.save_pretrained(src)
    with pytest.raises(LayoutError, match="already in the base tokenizer"):
        adapt(run=tmp_path, source=SourceSection(model=src), layout=layout_args())
    assert not (tmp_path / "adapt").exists()


def test_cli_runs_adapt(base_dirs, tmp_path, capsys):
    from most.cli import main

    args = ["adapt", "--config", str(REPO / "recipes/tiny/adapt.yaml"), "--run", str(tmp_path)]
    args += [f"--source.model={base_dirs['olmoe']}", "--experts.router=top_p"]
    assert main(args) == 2  # no units stage output and no explicit n_units
    assert "most units" in capsys.readouterr().err
    args += ["--layout.n_units=7", "--layout.unit_tokenizer_hash=h"]
    assert main(args) == 0
    report = json.loads((tmp_path / "adapt/hf/adapt_report.json").read_text())
    assert report["model_type"] == "olmoe"


def test_adapt_keeps_the_checkpoint_dtype(base_dirs, tmp_path):
    """A bf16 checkpoint is loaded, converted and saved in bf16 (``source.dtype: auto``); the
    split experts are the base's own bits."""
    src = tmp_path / "bf16"
    base = AutoModelForCausalLM.from_pretrained(base_dirs["qwen3_moe"], dtype=torch.bfloat16)
    base.save_pretrained(src)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (src / f).write_bytes((base_dirs["qwen3_moe"] / f).read_bytes())
    out = adapt(run=tmp_path, source=SourceSection(model=src), layout=layout_args())
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
    assert dtypes == {"BF16"}
    model = load_causal_lm(out)
    assert isinstance(model, MostForCausalLM) and model.dtype == torch.bfloat16
    got = model.lm.model.layers[0].mlp.experts.gate_up_proj
    assert torch.equal(got, base.model.layers[0].mlp.experts.gate_up_proj)


def test_dry_run_reports_the_plan_and_host_ram(base_dirs, tmp_path, capsys):
    report = adapt(
        run=tmp_path,
        source=SourceSection(model=base_dirs["deepseek_v2"]),
        layout=layout_args(),
        dry_run=True,
    )
    assert json.loads(capsys.readouterr().out) == report
    assert not (tmp_path / "adapt").exists()
    plan = report["plan"]
    assert plan["experts_per_layer"] == {
        "before": 8,
        "after": 8,
        "groups": {"text": 4, "speech": 4},
    }
    built = run_adapt(tmp_path, base_dirs["deepseek_v2"])
    model = AutoModelForCausalLM.from_pretrained(built)
    assert report["params_after"]["total"] == sum(p.numel() for p in model.parameters())
    assert report["bytes_per_weight"] == 4  # the tiny bases are fp32 checkpoints
    weights_gib = report["params_after"]["total"] * 4 / 2**30
    assert weights_gib < report["host_ram_gib"] < weights_gib + 1.0
