"""Training-only regularisers that leave the saved model untouched.

Residual dropout drops units of each decoder layer's attention and MLP outputs before they join
the residual stream (GPT-2's ``resid_pdrop``). Qwen3-MoE and the other ``transformers`` MoE
classes have no such option, so it is added with forward hooks: nothing is written into the config
or the weights, a released checkpoint is a plain ``transformers`` model, and the hooks act only
while the module is in training mode (validation and generation see the full network).

The mask is :func:`most.dropout.dropout`: 16 random bits per element instead of torch's float draw.
"""

from __future__ import annotations

import re

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from most.dropout import dropout

# A decoder layer's two residual branches, in every transformers decoder-only LM we load
# (``model.layers.3.self_attn``, ``base_model.model.model.layers.3.mlp`` under peft).
_BRANCH = re.compile(r"(^|\.)layers\.\d+\.(self_attn|mlp)$")


def add_residual_dropout(model: nn.Module, p: float) -> list[RemovableHandle]:
    """Dropout ``p`` on every decoder layer's attention and MLP output while training.

    Returns the hook handles (``handle.remove()`` undoes it). Raises ``ValueError`` when ``p`` is
    outside ``[0, 1)`` or when ``model`` has no ``layers.N.self_attn`` / ``layers.N.mlp`` module.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"optim.dropout must be in [0, 1), got {p}")
    if p == 0.0:
        return []

    def hook(module: nn.Module, args, output: Tensor | tuple) -> Tensor | tuple:
        if not module.training:
            return output
        if isinstance(output, tuple):  # attention returns (output, weights)
            return (dropout(output[0], p), *output[1:])
        return dropout(output, p)

    handles = [
        m.register_forward_hook(hook) for name, m in model.named_modules() if _BRANCH.search(name)
    ]
    if not handles:
        raise ValueError(
            f"optim.dropout: {type(model).__name__} has no layers.N.self_attn / layers.N.mlp "
            "modules to put residual dropout on"
        )
    return handles
