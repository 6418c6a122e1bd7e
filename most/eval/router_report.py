"""Router telemetry: which experts serve the tokens of each modality (text, speech, ...).

The model reads teacher-forced ASR and TTS examples (both modalities in every sequence) with the
router telemetry on; per MoE layer and per modality of the layout we keep the load share of every
expert, the share of picks inside the modality's own expert group, the mean routing entropy and the
routed experts per token (the base's top-k, except under Top-P routing, where it is learnt: there
``null_share`` is the share of picks that went to null experts and ``dropped`` the tokens served by
no routed expert at all).
With modality-aware routing each modality's load must sit inside its own expert group, which the
heat map shows at a glance (one panel per modality, layers x experts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import torch

from most.data.prompts import Example
from most.generate import SpeechLM, device_of


@torch.no_grad()
def router_summary(model, examples: Sequence[Example], batch_size: int = 8) -> dict:
    """``{layer: {modality: {"load": [share per expert], "in_group", "entropy",
    "experts_per_token", "null_share", "dropped", "tokens"}}}``; ``in_group`` is None for a
    modality without tokens in ``examples``."""
    if not examples:
        raise ValueError("router report: no examples")
    model.eval()
    model.most_telemetry(enable=True)
    device = device_of(model)
    try:
        for s in range(0, len(examples), batch_size):
            batch = examples[s : s + batch_size]
            width = max(len(e) for e in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(batch):
                ids[i, : len(e)] = torch.tensor(e.input_ids)
                mask[i, : len(e)] = 1
            model(input_ids=ids.to(device), attention_mask=mask.to(device))
        raw = model.most_telemetry_summary()
    finally:
        model.most_telemetry(enable=False)
    out: dict = {}
    for layer, per in raw["layers"].items():
        out[layer] = {}
        for modality, stats in per.items():
            total = max(sum(stats["load"]), 1)
            in_group = stats["in_group"]
            out[layer][modality] = {
                "load": [round(v / total, 4) for v in stats["load"]],
                "in_group": None if in_group is None else round(in_group, 4),
                "entropy": round(stats["entropy"], 4),
                "experts_per_token": round(stats["experts_per_token"], 4),
                "null_share": round(stats["null_share"], 4),
                "dropped": stats["dropped"],
                "tokens": stats["tokens"],
            }
    return out


def plot_heatmap(summary: dict, path: Path) -> Path:
    """One panel per modality: rows = MoE layers, columns = experts, colour = load share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted(summary, key=int)
    modalities = list(summary[layers[0]])
    fig, axes = plt.subplots(
        1, len(modalities), figsize=(5 * len(modalities), 0.5 * len(layers) + 2)
    )
    axes = [axes] if len(modalities) == 1 else list(axes)
    for ax, modality in zip(axes, modalities, strict=True):
        grid = [summary[layer][modality]["load"] for layer in layers]
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0)
        ax.set_title(f"{modality} tokens")
        ax.set_xlabel("expert")
        ax.set_ylabel("MoE layer")
        ax.set_yticks(range(len(layers)), layers)
        fig.colorbar(im, ax=ax, label="load share")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def router_examples(lm: SpeechLM, units_split: datasets.Dataset, n: int) -> list[Example]:
    """Teacher-forced ASR and TTS examples of the first ``n`` rows of a unit split."""
    rows = units_split.select(range(min(n, len(units_split)))).select_columns(["units", "text"])
    p = lm.prompts
    return [
        ex
        for u, t in zip(rows["units"], rows["text"], strict=True)
        for ex in (p.asr(u, t), p.tts(t, u))
    ]
