"""The text tokenizer of the embedded default's base LM: byte-level BPE trained on the text world.

A real pretrained MoE brings its own tokenizer; the tiny base LM needs one fitted to its corpus. Byte
level means every string is encodable (no unknown token), and the result is saved as a standard
``transformers`` fast tokenizer, so ``most adapt`` loads it with ``AutoTokenizer`` like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


@dataclass
class TokenizerConfig:
    """Byte-level BPE fitted on the training text."""

    vocab_size: int = 2048
    """Total ids including the 256 byte symbols and EOS."""
    min_frequency: int = 2
    """Merges seen fewer times than this are not learned."""

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ValueError(
                f"tokenizer.vocab_size must be >= 300 (bytes + merges): {self.vocab_size}"
            )


def train_text_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Fit BPE on ``texts``; EOS doubles as BOS and padding (the base LM separates documents by it)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=None
    )
