"""``trainer.compile``: every decoder layer under ``torch.compile`` while training, its MoE block
left eager.

A small model's training step on the CPU is mostly elementwise passes over the activations (norms,
rotary embeddings, dtype casts, residual dropout, residual adds), each a full read and write of
memory; inductor fuses them into a few loops. The MoE block stays eager: its CPU dispatch reads a
row count on the host (a graph break) and its expert group sizes change every step (a recompile
each); only its gated activation is compiled, for any row count
(:meth:`~most.moe.experts.GroupedExperts.compile_activation`). On the CPU under bf16 autocast the
layers attend with the ``eager`` implementation (matmuls and a softmax that inductor fuses): the
CPU flash-attention kernel's bf16 backward is ~5x its forward, and the step is ~5 % faster without
it (rows of up to :data:`EAGER_MAX_LEN` tokens); the model's own implementation is restored when
fitting ends. Validation runs eager (``torch.compiler.set_stance``), so its shapes and its eval mode cost
no compiles. State-dict keys are unchanged: checkpoints and the export are as without compiling.
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


#: Longest rows (tokens) that train with ``eager`` attention: it keeps each layer's
#: ``(batch, heads, T, T)`` weights for the backward, 4 MiB a row and head at 1,024.
EAGER_MAX_LEN = 1024


def train_attention(device: torch.device, precision: str, max_len: int | None) -> str | None:
    """The attention implementation compiled layers train with: ``eager`` on the CPU under bf16
    autocast for rows of at most :data:`EAGER_MAX_LEN` tokens, None (the model's own) elsewhere
    and where the row length is unknown."""
    short = max_len is not None and max_len <= EAGER_MAX_LEN
    return "eager" if device.type == "cpu" and str(precision).startswith("bf16") and short else None


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
        self.restore: str | None = None

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
        data = getattr(getattr(trainer, "datamodule", None), "cfg", None)
        attention = train_attention(
            pl_module.device, trainer.precision, getattr(data, "max_len", None)
        )
        model = pl_module.model
        own = getattr(getattr(model, "config", None), "_attn_implementation", None)
        settable = hasattr(model, "set_attn_implementation")
        if attention is not None and settable and own not in (None, attention):
            model.set_attn_implementation(attention)
            self.restore = own
        if trainer.is_global_zero:
            how = f", attention {attention}" if self.restore is not None else ""
            print(
                f"most {self.stage}: {n} decoder layers compiled (torch.compile{how}); the first "
                "step builds their kernels",
                flush=True,
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.restore is not None:
            pl_module.model.set_attn_implementation(self.restore)
            self.restore = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.compiler.set_stance("force_eager")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.compiler.set_stance("default")
