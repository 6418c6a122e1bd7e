"""Modality-aware Mixture-of-Experts (MoST's MAMoE, generalised).

One MoE block (:mod:`most.moe.block`) is assembled by injection from a router
(:mod:`most.moe.router`), grouped experts (:mod:`most.moe.experts`) and the base model's own shared
experts; :mod:`most.moe.arch` says where those live in each supported transformers architecture and
:mod:`most.moe.surgery` swaps the blocks in.
"""
