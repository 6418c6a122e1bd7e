"""A multi-scale model decoded through flat ids, as ``transformers``' ``generate`` is called.

:class:`~most.generate.SpeechLM` (and so ``most eval``) decodes every model through
``model.generate(input_ids, attention_mask=..., max_new_tokens=..., eos_token_id=...)`` on flat ids
(``C`` unit ids a frame). :func:`generate_flat` keeps that contract for a
:class:`~most.multiscale.model.MostMultiScale`: each left-padded prompt is read as frames, and

- a prompt that ends in speech (``<|begin_of_audio|>`` or a unit) continues with frames
  (:meth:`~most.multiscale.model.MostMultiScale.generate_speech`): the answer is the frames'
  flat ids, then ``<|end_of_audio|>`` when the model stopped before ``max_new_tokens // C`` frames;
- any other prompt continues with text (:func:`generate_text`): the global head, unit ids masked,
  until a stop id or ``max_new_tokens``.

Classifier-free guidance (``guidance_scale``) and logits processors (the flat model's codebook
constraint) do not apply: a frame's codes are whole by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from most.layout import BEGIN_OF_AUDIO, END_OF_AUDIO
from most.multiscale.frames import from_frames, to_frames

#: ``model`` below is a :class:`~most.multiscale.model.MostMultiScale` (which imports this module).
MultiScale = nn.Module


def frame_prompts(
    model: MultiScale, input_ids: Tensor, attention_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Left-padded flat prompts ``(B, W)`` -> left-padded positions ``(B, S)``, codes
    ``(B, S, C)`` (``-1`` off frames) and attention mask ``(B, S)``."""
    c = model.config.n_codebooks
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    rows = [
        to_frames(ids[m.bool()].cpu(), model.layout, c)[:2]
        for ids, m in zip(input_ids, mask, strict=True)
    ]
    width = max(len(ids) for ids, _ in rows)
    b = len(rows)
    ids = torch.zeros(b, width, dtype=torch.long)
    codes = torch.full((b, width, c), -1, dtype=torch.long)
    out_mask = torch.zeros(b, width, dtype=torch.long)
    for r, (row_ids, row_codes) in enumerate(rows):
        n = len(row_ids)
        ids[r, width - n :], codes[r, width - n :], out_mask[r, width - n :] = row_ids, row_codes, 1
    device = input_ids.device
    return ids.to(device), codes.to(device), out_mask.to(device)


@torch.no_grad()
def generate_text(
    model: MultiScale,
    input_ids: Tensor,
    codes: Tensor,
    attention_mask: Tensor,
    stop_ids: Sequence[int],
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
) -> list[list[int]]:
    """Text after left-padded frame prompts: per row the new ids, its stop id kept when one ended
    it. Unit ids are never written (a text answer holds no frame)."""
    b = input_ids.shape[0]
    start, end = model.layout.unit_range()
    warpers = []
    if do_sample and top_k:
        warpers.append(TopKLogitsWarper(int(top_k)))
    if do_sample and top_p < 1.0:
        warpers.append(TopPLogitsWarper(float(top_p)))
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids, codes, mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    written: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    stops = torch.tensor(list(stop_ids), dtype=torch.long)
    none = torch.full((b, 1, codes.shape[-1]), -1, dtype=torch.long, device=codes.device)
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        logits[:, start:end] = float("-inf")
        if do_sample:
            logits = logits / max(temperature, 1e-5)
            for warp in warpers:
                logits = warp(None, logits)
            pick = torch.multinomial(logits.softmax(-1), 1)[:, 0]
        else:
            pick = logits.argmax(-1)
        for r in range(b):
            if not done[r]:
                written[r].append(int(pick[r]))
        done |= torch.isin(pick.cpu(), stops)
        if bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
        positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
        out = model(
            pick[:, None],
            none,
            mask,
            position_ids=positions[:, -1:],
            cache=out.cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return written


@torch.no_grad()
def generate_flat(
    model: MultiScale,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    max_new_tokens: int = 200,
    do_sample: bool = False,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
) -> Tensor:
    """``(B, W)`` left-padded flat prompts -> ``(B, W + N)``: each prompt and its answer in flat
    ids, right-padded with ``pad_token_id`` (see the module doc)."""
    layout, c = model.layout, model.config.n_codebooks
    stops = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    ids, codes, mask = frame_prompts(model, input_ids, attention_mask)
    boa, eoa = layout.special_id(BEGIN_OF_AUDIO), layout.special_id(END_OF_AUDIO)
    last = ids[:, -1].cpu()
    speech = (last == boa) | layout.is_unit(last)
    answers: list[list[int]] = [[] for _ in range(len(ids))]
    for speaks in (True, False):
        rows = [r for r in range(len(ids)) if bool(speech[r]) == speaks]
        if not rows:
            continue
        sel = torch.tensor(rows, device=ids.device)
        # Dropping other rows can leave a column that is padding in every row kept: harmless.
        r_ids, r_codes, r_mask = ids[sel], codes[sel], mask[sel]
        if speaks:
            max_frames = max_new_tokens // c
            frames = model.generate_speech(
                r_ids,
                max_frames,
                do_sample=do_sample,
                temperature=temperature,
                top_k=top_k or 0,
                attention_mask=r_mask,
                codes=r_codes,
            )
            said = [
                [*from_frames(f, layout).tolist(), *([eoa] if len(f) < max_frames else [])]
                for f in frames
            ]
        else:
            said = generate_text(
                model, r_ids, r_codes, r_mask, stops, max_new_tokens, do_sample, temperature,
                top_k, top_p,
            )  # fmt: skip
        for r, answer in zip(rows, said, strict=True):
            answers[r] = answer
    width = max((len(a) for a in answers), default=0)
    new = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    for r, answer in enumerate(answers):
        new[r, : len(answer)] = torch.tensor(answer, dtype=torch.long)
    return torch.cat([input_ids, new.to(input_ids.device)], dim=1)
