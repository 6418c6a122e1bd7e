"""``most.train.stage``: the init model loads in its checkpoint's dtype (or on the meta device), and
:class:`TrainDtype` widens narrow weights to the precision's fp32 before training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from transformers import AutoModelForCausalLM

from most.train.stage import TrainDtype, load_model


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 1).to(torch.bfloat16)
        self.seen: list[torch.dtype] = []

    def training_step(self, batch, _):
        self.seen.append(self.lin.weight.dtype)
        return self.lin(batch[0].to(self.lin.weight.dtype)).float().pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.ones(2, 4))
        return torch.utils.data.DataLoader(data, batch_size=2)


@pytest.mark.parametrize(
    ("precision", "want"), [("32-true", torch.float32), ("bf16-true", torch.bfloat16)]
)
def test_train_dtype_follows_the_precision(precision: str, want: torch.dtype) -> None:
    module = Tiny()
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", devices=1, precision=precision, callbacks=[TrainDtype()],
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module)
    assert module.seen == [want]


def test_load_model_keeps_dtype_or_builds_empty(base_dirs, tmp_path: Path) -> None:
    from most.testing import run_adapt

    src = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(
        base_dirs["mixtral"], dtype=torch.bfloat16
    ).save_pretrained(src)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (src / f).write_bytes((base_dirs["mixtral"] / f).read_bytes())
    out = run_adapt(tmp_path, src)
    model, tok, layout = load_model(out)
    assert model.dtype == torch.bfloat16 and len(tok) == layout.vocab_size
    empty, _, _ = load_model(out, empty=True)
    assert {p.device.type for p in empty.parameters()} == {"meta"}
    assert sum(p.numel() for p in empty.parameters()) == sum(p.numel() for p in model.parameters())
