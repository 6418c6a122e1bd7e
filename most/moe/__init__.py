"""Modality-aware Mixture-of-Experts (MoST's MAMoE, generalised).

One MoE block (:mod:`most.moe.block`) is assembled by injection from a router
(:mod:`most.moe.router`), grouped experts (:mod:`most.moe.experts`) and the base model's own shared
experts; :mod:`most.moe.arch` finds where those live in a transformers architecture (by structure),
:mod:`most.moe.rules` reads the routing rule from its config, :mod:`most.moe.probe` checks that rule
against the base block, and :mod:`most.moe.surgery` swaps the blocks in.
"""
