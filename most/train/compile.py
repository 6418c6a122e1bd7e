"""``trainer.compile``: every decoder layer under ``torch.compile`` while training, its MoE block
left eager.

A small model's training step on the CPU is mostly elementwise passes over the activations (norms,
rotary embeddings, dtype casts, residual dropout, residual adds), each a full read and write of
memory; inductor fuses them into a few loops. The MoE block stays eager: its CPU dispatch reads a
row count on the host (a graph break) and its expert group sizes change every step (a recompile
each); only its gated activation is compiled, for any row count
(:meth:`~most.moe.experts.GroupedExperts.compile_activation`). Validation runs eager
(``torch.compiler.set_stance``), so its shapes and its eval mode cost no compiles. State-dict keys
are unchanged: checkpoints and the export are as without compiling.
"""

from __future__ import annotations

import shutil
import sys

import lightning as L
import torch
from torch import nn

from most.moe.arch import ArchError, decoder_layers, moe_block
from most.moe.experts import GroupedExperts

#: C++ compilers inductor's CPU code generation can use.
CXX = ("g++", "c++", "clang++")


def compile_layers(model: nn.Module) -> int:
    """Compiles each decoder layer of ``model`` in place (``nn.Module.compile``, static shapes) and
    returns how many. Each layer's MoE block gets an eager ``forward`` (an instance attribute) and
    its grouped experts a compiled activation.

    Raises :class:`~most.moe.arch.ArchError` when ``model`` has no decoder layers."""
    _, layers = decoder_layers(model)
    for layer in layers:
        found = moe_block(layer)
        if found is not None:
            block = found[1]
            block.forward = torch.compiler.disable(block.forward, recursive=True)
            experts = getattr(block, "experts", None)
            if isinstance(experts, GroupedExperts):
                experts.compile_activation()
        layer.compile(dynamic=False)
    return len(layers)


def can_compile(device: torch.device) -> str | None:
    """None when inductor can compile for ``device`` here, else why not (one line)."""
    if device.type == "cpu" and not any(shutil.which(c) for c in CXX):
        return f"no C++ compiler ({', '.join(CXX)}) on PATH for inductor's CPU code"
    return None


class CompileLayers(L.Callback):
    """Compiles the module's decoder layers when fitting starts (:func:`compile_layers`); trains
    eager, with a warning, where inductor cannot compile (:func:`can_compile`) or fails to."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        why = can_compile(pl_module.device)
        if why is not None:
            print(
                f"most {self.stage}: WARNING: trainer.compile is on but {why}; training eager",
                file=sys.stderr,
                flush=True,
            )
            return
        try:
            n = compile_layers(pl_module.model)
        except ArchError as e:
            raise ValueError(f"trainer.compile: {e}") from None
        # A layer that inductor fails to compile (an architecture or LoRA wrapping it has not
        # met) runs eager, with torch's warning, instead of ending the stage: compiling only
        # changes speed.
        torch._dynamo.config.suppress_errors = True
        if trainer.is_global_zero:
            print(
                f"most {self.stage}: {n} decoder layers compiled (torch.compile); the first step "
                "builds their kernels",
                flush=True,
            )

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.compiler.set_stance("force_eager")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.compiler.set_stance("default")
