"""Where a model keeps its MoE pieces: the MoE block of each decoder layer, found by its structure
in any transformers architecture (what its config says is read by :mod:`most.moe.rules`, re-exported
here: :func:`text_config`, :func:`moe_shape`, :class:`ArchError`).

A decoder layer's MoE block is the child module holding an ``experts`` module of stacked expert
tensors (3-D parameters, one slice per expert) next to a router: a module with a weight of one row
per expert, ``(E, H)``. Optional pieces found beside them: shared experts (a child named
``shared...``), a shared-expert gate (a ``Linear`` to one output), a selection-only bias of the
router (``e_score_correction_bias``, ``expert_bias``: shape ``(E,)``, used to pick experts, not to
weight them) and a logit bias (the router's own ``bias``). Everything is read from an instantiated
model, so meta-device models (no weights) are discovered as well as loaded ones.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from most.moe.router import BaseRouting

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel
from most.moe.rules import ArchError, check_config, declared_rule, moe_shape, text_config

#: Names of a router's selection-only bias (added to the scores that choose experts).
SELECTION_BIAS = ("e_score_correction_bias", "expert_bias", "score_correction_bias")


@dataclass(frozen=True)
class ArchSpec:
    """Where one model keeps its MoE pieces (attribute paths), and its declared routing rule."""

    model_type: str
    layers: str
    """Path of the decoder layers' ``ModuleList`` in the causal LM (``model.layers``)."""
    block: str
    """Decoder-layer attribute of the MoE block (``mlp``, ``feed_forward``, ``block_sparse_moe``)."""
    gate: str
    """Path, inside the block, of the router weight ``(E, H)`` (``gate.weight``, ``gate.wg.weight``)."""
    experts: str = "experts"
    shared: str | None = None
    shared_gate: str | None = None
    score_bias: str | None = None
    """Path inside the block of the selection-only bias ``(E,)``."""
    logit_bias: str | None = None
    """Path inside the block of the bias added to the router logits ``(E,)`` (gpt-oss)."""
    routing: BaseRouting | None = None
    """Rule read from the config; :func:`most.moe.probe.fit_routing` checks it on real weights."""
    tuple_output: bool = False
    """The decoder layer unpacks ``(hidden, extra)`` from the block (gpt-oss)."""


def get_path(obj: object, path: str) -> object:
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def decoder_layers(lm: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(path, layers)``: the longest ``ModuleList`` of the causal LM named ``layers``/``h``/``blocks``."""
    found = [
        (name, mod)
        for name, mod in lm.named_modules()
        if isinstance(mod, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "h", "blocks")
    ]
    if not found:
        raise ArchError(f"{type(lm).__name__}: no decoder layers (a ModuleList named layers) found")
    return max(found, key=lambda nm: len(nm[1]))


def expert_weights(experts: nn.Module) -> tuple[Tensor, Tensor] | None:
    """``gate_up (E, 2I, H)`` (``up (E, I, H)`` for ungated experts) and ``down (E, H, I)`` views of
    a base experts module's weights, whatever its layout; None when they are not stacked tensors.

    Layouts: stacked (``gate_up_proj``/``down_proj``, transposed ones ``(E, H, 2I)``/``(E, I, H)``)
    and DBRX's flat ``mlp.w1``/``mlp.v1``/``mlp.w2`` ``(E*I, H)`` matrices.
    """
    own = dict(experts.named_parameters(recurse=False))
    gu, down = own.get("gate_up_proj", own.get("up_proj")), own.get("down_proj")
    if gu is not None and down is not None and gu.dim() == down.dim() == 3:
        transposed = getattr(experts, "is_transposed", None)
        if transposed is None:  # undecorated class: is the down projection (E, I, H)?
            transposed = down.shape[2] == gu.shape[1] and down.shape[1] in (
                gu.shape[2],
                gu.shape[2] // 2,
            )
        return (gu.transpose(1, 2), down.transpose(1, 2)) if transposed else (gu, down)
    mlp = getattr(experts, "mlp", None)
    n = getattr(experts, "num_experts", None)
    if n and all(isinstance(getattr(mlp, w, None), nn.Parameter) for w in ("w1", "v1", "w2")):
        h = mlp.w1.shape[1]
        w1, v1, w2 = (getattr(mlp, w).view(n, -1, h) for w in ("w1", "v1", "w2"))
        return torch.cat([w1, v1], dim=1), w2.transpose(1, 2)
    return None


def stacked(experts: nn.Module) -> bool:
    """Whether ``experts`` stores every expert in stacked tensors (:func:`expert_weights`)."""
    return expert_weights(experts) is not None


def moe_block(layer: nn.Module) -> tuple[str, nn.Module] | None:
    """``(attribute, block)`` of a decoder layer's MoE block (the child holding stacked ``experts``
    or a ``router``), or None for a layer without one."""
    for name, child in layer.named_children():
        experts = getattr(child, "experts", None)
        if isinstance(experts, nn.Module) and (stacked(experts) or hasattr(child, "router")):
            return name, child
    return None


def _describe(lm: nn.Module, model_type: str) -> str:
    """Why no layer of ``lm`` has a block the generic one can replace (one line)."""
    path, layers = decoder_layers(lm)
    for i, layer in enumerate(layers):
        for name, child in layer.named_children():
            experts = getattr(child, "experts", None)
            if isinstance(experts, nn.ModuleList):
                return (
                    f"{model_type}: the MoE block at {path}[{i}].{name} has experts as a ModuleList "
                    "of per-expert MLPs, not stacked expert tensors"
                )
            if isinstance(experts, nn.Module):
                names = ", ".join(n for n, _ in experts.named_parameters()) or "none"
                return (
                    f"{model_type}: the experts at {path}[{i}].{name}.experts "
                    f"({type(experts).__name__}) have no stacked gate_up_proj/down_proj tensors "
                    f"(parameters: {names})"
                )
    return f"{model_type}: no decoder layer under {path} has an MoE block with stacked experts"


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated pieces of a call's argument text."""
    depth, cur, out = 0, "", []
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [a.strip() for a in [*out, cur] if a.strip()]


def call_site(layer: nn.Module, attr: str) -> tuple[bool, list[str]]:
    """How the decoder layer's ``forward`` calls its block ``attr``: ``(unpacks a tuple, arguments)``,
    read from the source (``(False, [])`` when it cannot be read); of several calls, the one with
    the fewest arguments."""
    try:
        src = inspect.getsource(type(layer).forward)
    except (OSError, TypeError):
        return False, []
    sites = []
    for m in re.finditer(rf"^([ \t]*)([^\n=]*?)=\s*self\.{re.escape(attr)}\(", src, re.M):
        start, depth, i = m.end(), 1, m.end()
        while i < len(src) and depth:
            depth += src[i] == "("
            depth -= src[i] == ")"
            i += 1
        sites.append(("," in m.group(2), _split_args(src[start : i - 1])))
    # Hybrid layers call a differently typed block per layer: the MoE one gets the hidden states.
    return min(sites, key=lambda site: len(site[1]), default=(False, []))


def find_spec(lm: PreTrainedModel) -> ArchSpec:
    """Discover the MoE pieces of ``lm`` (a base causal LM, possibly on the meta device)."""
    cfg = check_config(lm.config)
    model_type = cfg.model_type
    path, layers = decoder_layers(lm)
    found = [(i, b) for i, layer in enumerate(layers) if (b := moe_block(layer)) is not None]
    if not found:
        raise ArchError(_describe(lm, model_type))
    i, (attr, block) = found[0]
    where = f"{path}[{i}].{attr}"
    if type(block).__name__ == "ModalityMoE":
        raise ArchError(f"{model_type}: {where} is already a modality-aware block")
    experts = block.experts
    weights = expert_weights(experts)
    if weights is None:
        raise ArchError(_describe(lm, model_type))
    e, h = weights[1].shape[0], weights[1].shape[1]
    if getattr(experts, "has_post_expert_norm", False):
        raise ArchError(f"{model_type}: the experts at {where} apply a norm after each expert")
    gate = score_bias = logit_bias = shared = shared_gate = None
    for name, p in block.named_parameters():
        if name.startswith("experts.") or "shared" in name:
            continue
        if tuple(p.shape) == (e, h) and gate is None:
            gate = name
    for name, t in [*block.named_parameters(), *block.named_buffers()]:
        last = name.rsplit(".", 1)[-1]
        if t.numel() == e and t.shape[-1] == e and not name.startswith("experts."):
            if last in SELECTION_BIAS:
                score_bias = name
            elif gate is not None and name == gate.rsplit(".", 1)[0] + ".bias":
                logit_bias = name
    for name, child in block.named_children():
        if name in ("experts",) or "shared" not in name:
            continue
        if isinstance(child, nn.Linear) and child.out_features == 1:
            shared_gate = name
        else:
            shared = name
    unpacks, args = call_site(layers[i], attr)
    if len(args) > 1:
        raise ArchError(
            f"{model_type}: the decoder layer calls the MoE block at {where} with more than the "
            f"hidden states ({', '.join(args[1:])})"
        )
    if gate is None:
        raise ArchError(
            f"{model_type}: the MoE block at {where} has no router weight of one row per expert "
            f"({e}, {h})"
        )
    known = {"experts", shared, shared_gate, (gate or "").split(".", 1)[0]}
    extra = [
        f"{name} ({type(child).__name__})"
        for name, child in block.named_children()
        if name not in known and any(True for _ in child.parameters())
    ]
    if extra:
        raise ArchError(
            f"{model_type}: the MoE block at {where} has parts the generic block lacks: "
            + ", ".join(extra)
        )
    spec = ArchSpec(
        model_type=model_type,
        layers=path,
        block=attr,
        gate=gate,
        shared=shared,
        shared_gate=shared_gate,
        score_bias=score_bias,
        logit_bias=logit_bias,
        tuple_output=unpacks,
    )
    return ArchSpec(**{**spec.__dict__, "routing": declared_rule(cfg, score_bias is not None)})


def moe_layers(lm: nn.Module, spec: ArchSpec) -> list[tuple[int, nn.Module]]:
    """``(layer index, decoder layer)`` for each layer whose block is a (base or adapted) MoE."""
    found = []
    for i, layer in enumerate(get_path(lm, spec.layers)):
        block = getattr(layer, spec.block, None)
        if block is not None and isinstance(getattr(block, "experts", None), nn.Module):
            found.append((i, layer))
    if not found:
        raise ArchError(f"no MoE layers found at {spec.layers}[*].{spec.block}")
    return found


def build_lm(cfg: PretrainedConfig) -> PreTrainedModel:
    """The base causal LM of ``cfg`` (a base LM config: see :func:`text_config`),
    built on the current default device with random weights."""
    # Imported here: importing transformers registers the adapted model (most/__init__.py), whose
    # module imports this one.
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    cls = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(cfg), None)
    if cls is None:
        raise ArchError(f"{cfg.model_type}: transformers has no causal-LM class for this config")
    return cls(cfg)


def spec_for(cfg: PretrainedConfig) -> ArchSpec:
    """Discover the MoE pieces of the model ``cfg`` describes, on the meta device (no weights, any
    size); one-line :class:`ArchError` for dense models and blocks the generic one cannot take."""
    inner = check_config(cfg)
    with torch.device("meta"):
        lm = build_lm(inner)
    return find_spec(lm)


__all__ = [
    "ArchError",
    "ArchSpec",
    "build_lm",
    "expert_weights",
    "find_spec",
    "get_path",
    "moe_layers",
    "moe_shape",
    "spec_for",
    "text_config",
]
