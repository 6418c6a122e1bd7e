"""Modality expert groups for any number of modalities (G = 3: text, speech, music), with unequal
sizes or explicit expert index lists; and the two-group default routes, saves and loads exactly as
the two-modality code did (``v1_reference.json``, written by ``make_v1_reference.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from most.adapt import SourceSection, plan
from most.cli import main
from most.layout import TokenLayout
from most.modeling import MostConfig, MostForCausalLM, load_layout
from most.moe.aux import load_balance
from most.moe.block import ModalityMoE
from most.moe.config import ExpertsConfig
from most.moe.groups import resolve_groups
from most.moe.router import BaseRouting, ModalityRouter, Routing
from most.run import changes, fingerprint
from most.testing import MUSIC_UNITS, TEXT_VOCAB, layout_args, mixed_batch
from most.testing.tiny_moe import adapt_tiny, tiny_base, tiny_config

REFERENCE = json.loads((Path(__file__).parent / "v1_reference.json").read_text())
MODALITIES = ("text", "speech", "music")
UNEQUAL = {"text": 4, "speech": 2, "music": 2}
LISTS = {"text": [0, 2, 5, 7], "speech": [1, 3], "music": [4, 6]}
N_MUSIC = 5


def blocks(model) -> list[ModalityMoE]:
    return [m for m in model.modules() if isinstance(m, ModalityMoE)]


def own_groups(spec) -> list[list[int]]:
    """Expert ids of text, speech and music under ``spec`` (sizes: contiguous in that order)."""
    if isinstance(spec["text"], list):
        return [sorted(spec[m]) for m in MODALITIES]
    ends = torch.tensor([spec[m] for m in MODALITIES]).cumsum(0).tolist()
    return [list(range(end - spec[m], end)) for m, end in zip(MODALITIES, ends, strict=True)]


# ---- the two-group default is the code it replaces -----------------------------------------------


def test_default_groups_route_as_the_two_group_router_did():
    t = {k: torch.tensor(v) for k, v in REFERENCE["routing_inputs"].items()}
    groups = resolve_groups(None, ("text", "speech"), 8, "split")
    assert groups == ((0, 1, 2, 3), (4, 5, 6, 7))
    for case in REFERENCE["routing"]:
        rule = BaseRouting(**REFERENCE["rules"][case["rule"]])
        router = ModalityRouter(16, groups, case["kind"], rule, **case["kwargs"])
        with torch.no_grad():
            router.weight.copy_(t["weight"][: router.weight.shape[0]])
            if router.bias is not None:
                router.bias.copy_(t["bias"])
            if router.logit_bias is not None:
                router.logit_bias.copy_(t["logit_bias"])
            r = router(t["x"], t["modality"])
        for key in ("index", "local_index", "weight", "probs", "n_null_picks"):
            got = getattr(r, key)
            want = torch.tensor(case[key], dtype=got.dtype)
            msg = f"{case['rule']}/{case['kind']}: {key} differs"
            if got.is_floating_point():  # another CPU may round a matmul's last bit differently
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=msg)
            else:
                assert torch.equal(got, want), msg


def test_a_two_modality_model_config_builds_the_same_weights():
    """An adapted folder saved before groups existed: same state-dict names and shapes, default
    groups, so its safetensors load into the model built from its config."""
    old = REFERENCE["config"]
    lm = tiny_base("qwen3_moe")
    lm.resize_token_embeddings(TokenLayout.from_dict(old["layout"]).vocab_size)
    config = MostConfig(
        text_config=lm.config, layout=old["layout"], experts=old["experts"], routing=old["routing"]
    )
    model = MostForCausalLM(config)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == REFERENCE["state_shapes"]
    assert all(b.router.groups == ((0, 1, 2, 3), (4, 5, 6, 7)) for b in blocks(model))
    assert model.layout.hash == REFERENCE["layout_file"]["hash"]


def test_a_run_adapted_before_groups_is_up_to_date():
    """The adapt fingerprint of a run recorded by the two-modality code shows no changed setting."""
    settings = dict(
        source=SourceSection(model=Path("/models/base")),
        experts=ExpertsConfig(),
        layout=layout_args(),
    )
    recorded = {"settings": REFERENCE["adapt_settings"], "inputs": {}}
    assert changes(recorded, fingerprint(settings, {})) == []


# ---- G = 3: routing stays inside each modality's group ------------------------------------------


@pytest.mark.parametrize("spec", [UNEQUAL, LISTS], ids=["sizes", "lists"])
@pytest.mark.parametrize("router", ["modality", "most_compat", "top_p"])
@pytest.mark.parametrize("arch", ["qwen3_moe", "deepseek_v3"])
def test_three_groups_confine_tokens(arch, router, spec):
    model = adapt_tiny(tiny_base(arch), layout_args(music=True), groups=spec, router=router)
    groups = own_groups(spec)
    assert all(b.router.groups == tuple(map(tuple, groups)) for b in blocks(model))
    ids = mixed_batch(model.layout, batch=3, n_music=N_MUSIC)
    model.most_telemetry(enable=True)
    with torch.no_grad():
        model(ids)
    summary = model.most_telemetry_summary()
    assert summary["modalities"] == list(MODALITIES)
    for per in summary["layers"].values():
        assert [per[m]["tokens"] for m in MODALITIES] == [3 * 6, 3 * 7, 3 * (1 + N_MUSIC)]
        for m, own in zip(MODALITIES, groups, strict=True):
            load = per[m]["load"]
            assert per[m]["experts"] == own and per[m]["in_group"] == 1.0
            assert sum(load[i] for i in own) > 0
            assert all(load[i] == 0 for i in range(8) if i not in own), (m, load)

    # text-only logits do not depend on the speech and music experts, nor on their router rows
    # (except under most_compat, whose softmax runs over all experts before the group is read)
    text = torch.randint(4, TEXT_VOCAB, (2, 8), generator=torch.Generator().manual_seed(2))
    others = torch.tensor(groups[1] + groups[2])
    with torch.no_grad():
        before = model(text).logits
        for b in blocks(model):
            b.experts.in_proj[others] = torch.randn_like(b.experts.in_proj[others])
            if router != "most_compat":
                b.router.weight[others] = torch.randn_like(b.router.weight[others])
        assert torch.equal(model(text).logits, before)


def test_modality_blind_topk_reports_how_much_lands_in_each_group():
    model = adapt_tiny(tiny_base("qwen3_moe"), layout_args(music=True), groups=LISTS, router="topk")
    model.most_telemetry(enable=True)
    with torch.no_grad():
        model(mixed_batch(model.layout, batch=3, n_music=N_MUSIC))
    per = model.most_telemetry_summary()["layers"]["0"]
    for m, own in zip(MODALITIES, own_groups(LISTS), strict=True):
        load = per[m]["load"]
        assert per[m]["in_group"] == pytest.approx(sum(load[i] for i in own) / sum(load))
    assert any(per[m]["in_group"] < 1.0 for m in MODALITIES)  # nothing confines blind routing


def test_load_balance_is_one_for_uniform_use_of_unequal_groups():
    """Groups of 3 and 1 experts (view padded to 3): every expert picked equally often, with
    uniform probabilities inside the group, is perfectly balanced (1.0) in both groups."""
    sizes = torch.tensor([3, 1])
    modality = torch.tensor([0, 0, 0, 1, 1, 1])
    local = torch.tensor([[0], [1], [2], [0], [0], [0]])
    probs = torch.tensor([[1 / 3] * 3] * 3 + [[1.0, 0.0, 0.0]] * 3)
    r = Routing(
        index=local, weight=torch.ones(6, 1), local_index=local, probs=probs, view=modality,
        logits=torch.zeros(6, 4), n_null_picks=torch.zeros(6), view_sizes=sizes, num_experts=4,
        n_views=2, can_skip=False,
    )  # fmt: skip
    assert load_balance(r, None, seq_len=6).item() == pytest.approx(1.0)


# ---- G = 3 through `most adapt`: recipe, forward/backward, save and reload ------------------------


def adapt_recipe(path: Path, base: Path, groups) -> Path:
    """An adapt recipe for a G = 3 layout, as a user writes it."""
    recipe = {
        "source": {"model": str(base)},
        "experts": {"init": "split", "router": "modality", "groups": groups},
        "layout": {
            "n_units": 20,
            "unit_tokenizer_hash": "test-units",
            "specials": list(layout_args(music=True).specials),
            "extra_modalities": [
                {
                    "name": "music",
                    "n_units": MUSIC_UNITS,
                    "unit_tokenizer_hash": "test-music",
                    "specials": ["<|begin_of_music|>", "<|end_of_music|>"],
                }
            ],
        },
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize(("arch", "spec"), [("qwen3_moe", UNEQUAL), ("deepseek_v2", LISTS)])
def test_three_groups_lifecycle(arch, spec, base_dirs, tmp_path):
    recipe = adapt_recipe(tmp_path / "adapt.yaml", base_dirs[arch], spec)
    assert main(["adapt", "--config", str(recipe), "--run", str(tmp_path / "run")]) == 0
    out = tmp_path / "run" / "adapt" / "hf"
    report = json.loads((out / "adapt_report.json").read_text())
    sizes = {m: len(ids) for m, ids in zip(MODALITIES, own_groups(spec), strict=True)}
    assert report["experts_per_layer"] == {"before": 8, "after": 8, "groups": sizes}
    layout = load_layout(out)
    assert layout.modalities == MODALITIES
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids("<|music3|>") == layout.unit_range("music")[0] + 3
    assert len(tok) == layout.vocab_size

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.experts["groups"] == spec
    model.train()
    ids = mixed_batch(layout, n_music=N_MUSIC)
    model(ids, labels=ids).loss.backward()
    music = own_groups(spec)[2]
    start, end = layout.unit_range("music")
    for b in blocks(model):
        assert b.experts.in_proj.grad[music].abs().sum() > 0
        assert b.router.weight.grad[music].abs().sum() > 0
    assert model.get_input_embeddings().weight.grad[start:end].abs().sum() > 0

    model.eval()
    with torch.no_grad():
        before = model(ids).logits
    model.save_pretrained(tmp_path / "again")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    assert load_layout(again.config) == layout
    with torch.no_grad():
        assert torch.equal(again(ids).logits, before)
        if arch == "deepseek_v2":  # shared experts serve every modality
            shared = blocks(again)[0].shared_experts
            for p in shared.parameters():
                p.add_(torch.randn_like(p))
            changed = (again(ids).logits != before).any(-1)[0]
            music_pos = (model.modality_of(ids) == 2)[0]
            assert changed[music_pos].all() and changed[~music_pos].all()


# ---- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ({"text": [0, 1, 2], "speech": [2, 3], "music": [4, 5, 6, 7]}, r"^experts\.groups: expert 2 is in both 'text' and 'speech'$"),
        ({"text": [0, 1, 2, 3], "speech": [4, 5], "music": [6, 7, 8]}, r"^experts\.groups: experts \[8\] out of range; the model has 8 routed experts per layer"),
        ({"text": [0, 1, 2, 3, 4, 5], "speech": [], "music": [6, 7]}, r"^experts\.groups: 'speech' lists no experts$"),
        ({"text": 6, "speech": 0, "music": 2}, r"^experts\.groups: empty groups \{'speech': 0\}"),
        ({"text": [0, 1, 2], "speech": [3, 4], "music": [6, 7]}, r"^experts\.groups: experts \[5\] are in no group"),
        ({"text": 4, "speech": 2, "music": 1}, r"^experts\.groups: sizes .* sum to 7, the model has 8 routed"),
        ({"text": 4, "speech": 4}, r"^experts\.groups must name each modality .* \(missing \['music'\], unknown \[\]\)$"),
        ({"text": 6, "speech": 1, "music": 1}, r"^experts\.groups: 'speech' has 1 experts, fewer than the base's top-k \(2\)"),
        ({"text": 4, "speech": [4, 5], "music": [6, 7]}, r"^experts\.groups: give every modality a size or every modality an expert list"),
    ],
    ids=["overlap", "out-of-range", "empty-list", "empty-size", "idle", "sum", "missing", "below-top-k", "mixed"],
)  # fmt: skip
def test_bad_groups_refused_in_one_line(groups, match):
    with pytest.raises(ValueError, match=match) as err:
        plan(tiny_config("qwen3_moe"), ExpertsConfig(groups=groups), MODALITIES)
    assert "\n" not in str(err.value)


def test_groups_with_upcycle_and_default_split_of_three_refused():
    with pytest.raises(ValueError, match="upcycle gives every group a copy of all experts"):
        ExpertsConfig(init="upcycle", groups=UNEQUAL)
    with pytest.raises(ValueError, match=r"8 experts divisible by 3 groups \(or experts\.groups"):
        plan(tiny_config("qwen3_moe"), ExpertsConfig(), MODALITIES)
    report = plan(tiny_config("qwen3_moe"), ExpertsConfig(init="upcycle"), MODALITIES)
    assert report["experts_per_layer"]["groups"] == dict.fromkeys(MODALITIES, 8)


def test_most_adapt_refuses_bad_groups_before_writing(base_dirs, tmp_path, capsys):
    recipe = adapt_recipe(tmp_path / "adapt.yaml", base_dirs["qwen3_moe"], LISTS)
    bad = "--experts.groups={text: [0, 1, 2, 3], speech: [4, 5], music: [6, 7, 9]}"
    assert main(["adapt", "--config", str(recipe), "--run", str(tmp_path), bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("most adapt: error:") and "out of range" in err and "\n" not in err
    assert not (tmp_path / "adapt").exists()
