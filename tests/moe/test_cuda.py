"""CUDA: grouped dispatch and the adapted model agree with the CPU (``make test-gpu``).

Deselected by default (marker ``gpu``); on a machine without CUDA these fail rather than skip.
"""

from __future__ import annotations

import pytest
import torch

from most.moe.experts import GroupedExperts
from most.testing import against_loop, load_adapted, mixed_batch, skip_case

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def on_cuda(m: GroupedExperts, x: torch.Tensor, dtype: torch.dtype):
    m = m.to(CUDA, dtype)
    return m, x.detach().to(CUDA, dtype).requires_grad_()


@pytest.mark.parametrize(
    ("dtype", "atol", "rtol"), [(torch.float32, 1e-4, 1e-4), (torch.bfloat16, 5e-2, 5e-2)]
)
def test_grouped_matches_loop_on_cuda(dtype, atol, rtol):
    m, x, index = skip_case()
    m, x = on_cuda(m, x, dtype)
    index, weight = index.to(CUDA), torch.rand(20, 3, device=CUDA, dtype=dtype)
    ours, ref, grads, ref_grads = against_loop(
        m, x, index, weight, [x, m.gate_up_proj, m.down_proj]
    )
    assert ours.dtype == dtype and ours.device.type == "cuda"
    assert torch.equal(ours[0], torch.zeros_like(ours[0]))  # token 0: only skip ids
    torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol)
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=atol * 10, rtol=rtol * 10)


def test_grouped_under_bf16_autocast_matches_fp32():
    """fp32 master weights under ``torch.autocast`` (Lightning's bf16-mixed) run and stay close."""
    m, x, index = skip_case()
    m, x = on_cuda(m, x, torch.float32)
    index, weight = index.to(CUDA), torch.rand(20, 3, device=CUDA)
    ref = m(x, index, weight)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = m(x, index, weight)
    out.float().square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(m.gate_up_proj.grad).all()
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("router", ["modality", "top_p"])
def test_adapted_model_cuda_matches_cpu(router, base_dirs, tmp_path):
    """Same weights, same batch: CUDA fp32 logits and loss equal the CPU's; bf16 autocast is
    close; the backward pass reaches the experts on CUDA."""
    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe", router=router)
    ids = mixed_batch(layout, batch=3)
    with torch.no_grad():
        cpu = model(ids, labels=ids)
    model.to(CUDA).train()
    out = model(ids.to(CUDA), labels=ids.to(CUDA))
    torch.testing.assert_close(out.logits.cpu(), cpu.logits, atol=1e-4, rtol=1e-4)
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "experts" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        half = model(ids.to(CUDA), labels=ids.to(CUDA))
    assert abs(half.loss.item() - cpu.loss.item()) < 0.05 * cpu.loss.item()


def test_greedy_generation_cuda_equals_cpu(base_dirs, tmp_path):
    """KV-cached greedy decoding gives the same tokens on CUDA (fp32) as on the CPU."""
    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe")
    ids = mixed_batch(layout, batch=2)
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=1)
    cpu = model.generate(ids, **kwargs)
    gpu = model.to(CUDA).generate(ids.to(CUDA), **kwargs)
    assert torch.equal(gpu.cpu(), cpu)


def test_minimal_pair_scores_cuda_equal_cpu(base_dirs, tmp_path):
    """The audio-LM scorer moves its batches to the model's device: same log-probs on CUDA."""
    from most.eval.audio_lm import sequence_logprobs

    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe")
    seqs = [[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11, 12]]
    cpu = sequence_logprobs(model, layout, seqs)
    gpu = sequence_logprobs(model.to(CUDA), layout, seqs)
    torch.testing.assert_close(torch.tensor(gpu), torch.tensor(cpu), atol=1e-3, rtol=1e-4)
