from __future__ import annotations

import datasets
import torch

from most.train import sources as S


def rows(n: int, tag: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "id": [f"{tag}{i}" for i in range(n)],
            "units": [[i, i + 1] for i in range(n)],
            "text": [f"{tag} {i}" for i in range(n)],
            "voice": ["v"] * n,
        }
    )


def test_only_the_speech_lm_reads_short_utterances() -> None:
    speech = datasets.DatasetDict(train=rows(5, "world"), dev=rows(2, "dev"))
    assert list(S.speech_lm_train(speech)["text"]) == list(speech["train"]["text"])
    speech["train_short"] = rows(2, "short")
    both = S.speech_lm_train(speech)
    assert list(both["text"]) == [*speech["train"]["text"], *speech["train_short"]["text"]]
    assert both.column_names == ["units", "text"]


class Chars:
    """A character-level stand-in tokenizer: one id per character."""

    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


def test_text_answers_are_sentences_where_the_data_has_them() -> None:
    from most.data.prompts import IGNORE, Prompts
    from most.layout import TokenLayout

    layout = TokenLayout(text_vocab_size=256, n_units=8, unit_tokenizer_hash="h")
    p = Prompts(layout, Chars())
    qa = datasets.Dataset.from_dict(
        {
            "units": [[1, 2, 3]],
            "text": ["What is the capital of Velmora?"],
            "answer": ["Tarsk"],
            "answer_sentence": ["The capital of Velmora is Tarsk."],
            "answer_units": [[4, 5]],
        }
    )

    def answer_text(example) -> str:
        ids = [i for i, lab in zip(example.input_ids, example.labels, strict=True) if lab != IGNORE]
        return "".join(chr(i) for i in ids if i < 256)

    for sentences, said in ((True, "The capital of Velmora is Tarsk."), (False, "Tarsk")):
        s2t = S.s2t(p, qa, sentences)
        assert answer_text(s2t.build(s2t.dataset[0])) == said
        text_qa = S.text_qa(p, qa, sentences)
        assert answer_text(text_qa.build(text_qa.dataset[0])) == said
        s2s = S.s2s(p, qa, "text_then_units", sentences)
        ex = s2s.build(s2s.dataset[0])
        assert answer_text(ex) == said  # the text part; the units are answer_units
        assert layout.units_to_ids(torch.tensor([4, 5])).tolist() == ex.input_ids[-3:-1]
    short = qa.remove_columns("answer_sentence")
    assert S.answer_column(short) == "answer"
