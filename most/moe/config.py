"""Settings of the modality-aware MoE: the ``experts`` section of the ``adapt`` recipe.

The same dataclass is stored (as a dict) in the adapted model's config, so a reloaded model routes
exactly as the one that was saved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from most.moe.groups import GroupSpec, check_spec

Init = Literal["split", "upcycle"]
RouterKind = Literal["topk", "modality", "top_p", "most_compat"]
NULL_ALPHA = 0.01
"""Default weight of the Top-P null-aware balance (``benchmarks/dynamic_capacity.py``: top-k's
quality at two thirds of its expert FLOPs)."""
ENTROPY_ALPHA = 0.01
"""Default weight of the Top-P routing entropy (same benchmark)."""


@dataclass
class ExpertsConfig:
    """How each MoE layer's routed experts are grouped by modality and routed."""

    init: Init = "split"
    """``split`` (MoST): the pretrained experts and router rows stay where they are, copied 1:1, and
    ``groups`` assigns them to modalities. ``upcycle``: every group starts as a copy of all E
    pretrained experts and router rows, so text logits equal the base model's at step 0."""
    groups: GroupSpec | None = None
    """``split`` only: each modality's experts, as sizes (``{text: 4, speech: 2, music: 2}``,
    contiguous ranges in the layout's modality order) or expert index lists (``{text: [0, 2, 4, 6],
    speech: [1, 3, 5, 7]}``); every expert in exactly one group (:mod:`most.moe.groups`). None: G
    equal contiguous ranges, group g owning ``[g*E/G, (g+1)*E/G)``."""
    router: RouterKind = "modality"
    """``topk``: the base architecture's own routing over all experts (modality-blind baseline).
    ``modality``: the base routing restricted to the token's group (scores outside are masked before
    selection). ``top_p``: UniMoE-Audio dynamic routing with null experts. ``most_compat``: MoST
    exactly (fp32 softmax over all experts, zero outside the group, greedy top-k, no renorm, times
    the base's routed_scaling_factor)."""
    top_p: float = 0.7
    """``top_p`` router: experts are taken in probability order until their cumulative probability
    reaches this value."""
    n_null: int = 1
    """``top_p`` router: number of null experts (a router row each, no weights, no compute)."""
    max_k: int = 0
    """``top_p`` router: most experts (real or null) per token; 0 means twice the base top-k. Fixed so
    that shapes stay static (no host sync)."""
    null_alpha: float | None = None
    """``top_p`` router: weight of the null-aware load balance (UniMoE-Audio, after AdaMoE): each
    modality's balance counts the null experts as members, so it asks for ``n_null / (Eg + n_null)``
    of the group's picks to be null experts (skipped compute) while the language-model loss picks
    which tokens skip. None: :data:`NULL_ALPHA`; 0 disables it (nothing then rewards a null pick:
    the nulls fall out of use). None rather than the number keeps runs adapted before this key
    existed up to date."""
    entropy_alpha: float | None = None
    """``top_p`` router: weight of the routing-entropy loss over the group and null experts (Huang
    et al. 2024's dynamic loss): a sharper distribution reaches ``top_p`` with fewer experts, so
    this is the price of compute; the language-model loss keeps more experts where mixing pays.
    None: :data:`ENTROPY_ALPHA`; 0 disables it (the balance alone flattens routing, and experts
    per token grow)."""
    shared_experts: bool = True
    """Keep the base model's shared experts (they see every token). False drops them, and any
    ``add_shared`` one."""
    add_shared: bool = False
    """Bases without shared experts (Qwen3-MoE, OLMoE, Mixtral): add one per MoE layer, as wide as a
    routed expert. Gate/up start as the mean of the layer's pretrained experts and the down
    projection at zero, so the model's outputs at step 0 are unchanged. Refused for bases that have
    their own."""
    aux_alpha: float = 0.001
    """Weight of the per-modality sequence-level load-balance loss (MoST: 0.001). 0 disables it."""
    z_loss: float = 0.0
    """Weight of the router z-loss (mean squared log-sum-exp of router logits). 0 disables it."""

    def __post_init__(self) -> None:
        if self.init not in ("split", "upcycle"):
            raise ValueError(f"experts.init must be split or upcycle, got {self.init!r}")
        if self.router not in ("topk", "modality", "top_p", "most_compat"):
            raise ValueError(
                f"experts.router must be topk, modality, top_p or most_compat, got {self.router!r}"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"experts.top_p must be in (0, 1], got {self.top_p}")
        if self.n_null < 0 or self.max_k < 0:
            raise ValueError("experts.n_null and experts.max_k must be >= 0")
        weights = (self.aux_alpha, self.z_loss, self.null_weight, self.entropy_weight)
        if min(weights) < 0:
            raise ValueError("experts.aux_alpha, z_loss, null_alpha and entropy_alpha must be >= 0")
        if self.groups is not None:
            check_spec(self.groups)
            if self.init == "upcycle":
                raise ValueError(
                    "experts.groups: upcycle gives every group a copy of all experts; "
                    "set groups with init: split"
                )

    @property
    def null_weight(self) -> float:
        """``null_alpha`` with None resolved."""
        return NULL_ALPHA if self.null_alpha is None else self.null_alpha

    @property
    def entropy_weight(self) -> float:
        """``entropy_alpha`` with None resolved."""
        return ENTROPY_ALPHA if self.entropy_alpha is None else self.entropy_alpha

    def to_dict(self) -> dict:
        return asdict(self)
