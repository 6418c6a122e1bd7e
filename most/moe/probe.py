"""Check a converted MoE block against the base block it replaces, on the real weights.

The routing rule read from the config (:func:`most.moe.arch.declared_rule`) is a guess until it is
checked: a few random tokens go through the base block and through the new block with its router
in the modality-blind view of the base experts; the first candidate rule whose output matches is
the model's rule. When none matches, the base block computes something the generic one does not
(its own gate arithmetic, weights applied to the expert input, a differently combined shared
expert) and the model is refused in one line. The check costs a few tokens through one layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from most.moe.block import ModalityMoE
from most.moe.router import BaseRouting
from most.moe.rules import ArchError

PROBE_TOKENS = 32
#: Largest relative error (to the base output's largest entry) accepted as "the same block".
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}
LOW_PRECISION_TOLERANCE = 2e-2
#: Share of probe tokens allowed past the tolerance (expert choices flipped by rounding).
MAY_DIFFER = 1 / 8


def _output(block: nn.Module, x: Tensor, **kw) -> Tensor:
    out = block(x, **kw)
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def _eager_experts(block: nn.Module) -> Iterator[None]:
    """Run transformers' expert modules inside ``block`` with their eager forward where the config
    they hold names no experts implementation (a base LM's text sub-config, say), which transformers
    would otherwise warn about as a failed dispatch; the configs are restored afterwards."""
    configs = {
        id(c): c
        for m in block.modules()
        if (c := getattr(m, "config", None)) is not None
        and hasattr(c, "_experts_implementation")
        and c._experts_implementation is None
    }
    for c in configs.values():
        c._experts_implementation = "eager"
    try:
        yield
    finally:
        for c in configs.values():
            c._experts_implementation = None


def fit_routing(
    old: nn.Module,
    new: ModalityMoE,
    candidates: Iterable[BaseRouting],
    view: Sequence[int],
    probe_kind: str,
    where: str,
    view_routing,
) -> BaseRouting:
    """The first of ``candidates`` with which ``new`` reproduces ``old``; :class:`ArchError` if none.

    ``probe_kind``: the router kind under which the new block's text group sees exactly the base
    experts (``topk`` after a split init, ``modality`` after upcycling); ``view``: the sizes of
    that kind's views.
    """
    router = new.router
    param = router.weight
    h = param.shape[1]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, PROBE_TOKENS, h, generator=gen).to(param.device, new.experts.down_proj.dtype)
    modality = torch.zeros(1, PROBE_TOKENS, dtype=torch.long, device=param.device)
    tol = TOLERANCE.get(x.dtype, LOW_PRECISION_TOLERANCE)
    kind, base, modes = router.kind, router.base, (old.training, new.training)
    old.eval()
    new.eval()
    best = float("inf")
    try:
        with torch.no_grad():
            with _eager_experts(old):
                ref = _output(old, x).float()
            scale = ref.abs().max().clamp_min(1e-12)
            router.kind = probe_kind
            for rule in candidates:
                router.base = view_routing(rule, view)
                diff = (_output(new, x, modality=modality).float() - ref).abs()
                per_token = diff.amax(-1).flatten() / scale
                # A low-precision near-tie may flip one token's choice of expert; a wrong rule
                # changes nearly every token.
                err = float(per_token.quantile(1 - MAY_DIFFER))
                if err <= tol:
                    return rule
                best = min(best, err)
    except ArchError:
        raise
    except (RuntimeError, AttributeError, TypeError, ValueError, IndexError) as e:
        # The base block's own pieces (an activation, a gate) that the generic block borrowed
        # need something it does not have.
        raise ArchError(
            f"the generic block cannot run the MoE block at {where} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    finally:
        router.kind, router.base = kind, base
        old.train(modes[0])
        new.train(modes[1])
    raise ArchError(
        f"no routing rule read from the config reproduces the MoE block at {where} "
        f"(relative error {best:.1e} on 7/8 of the probe tokens): its gate or block computes something the generic "
        "block does not"
    )
