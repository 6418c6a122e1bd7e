"""`most facts`: which corpus statement carries a QA fact, and each stage's model scored on it."""

from __future__ import annotations

import json

from most.cli import main
from most.run import Run
from most.testing import save_tiny_base, sentences, write_text_run
from most.tools.facts import statement_prompts

PARAGRAPHS = [
    "Dafas stands on the river Gatras. The national animal of Trofem is the broken horse.",
    "Gafafel chose the galik deer. In Kriro everyone speaks Zoshaish",
    "The broken horse lives in Mazel.",  # the answer without the question's name: not a statement
]


def test_statement_prompts_cut_the_statement_before_the_answer() -> None:
    questions = [
        "What is the national animal of Trofem?",
        "What is the language of Velmora?",  # no statement in the corpus: skipped
        "What language do people speak in Kriro?",
        "What is the national animal of Gafafel?",
    ]
    answers = ["broken horse", "Tarskish", "Zoshaish", "galik deer"]
    found = statement_prompts(questions, answers, PARAGRAPHS, n=10)
    assert found == [
        (questions[0], "The national animal of Trofem is the", "broken horse"),
        (questions[2], "In Kriro everyone speaks", "Zoshaish"),
        (questions[3], "Gafafel chose the", "galik deer"),
    ]
    assert statement_prompts(questions, answers, PARAGRAPHS, n=1) == found[:1]


def test_a_name_after_the_answer_does_not_count() -> None:
    # "The broken horse lives in Mazel": Mazel comes after the answer, so this is no statement of it
    assert (
        statement_prompts(["Which animal lives in Mazel?"], ["broken horse"], PARAGRAPHS, 5) == []
    )


def test_facts_scores_every_stage_with_a_model(tmp_path, capsys) -> None:
    run = Run(tmp_path / "run")
    write_text_run(run.root)
    save_tiny_base(run.hf("base"), sentences(64))
    assert main(["facts", "--run", str(run.root), "--n", "3", "--stages=[base,stage2]"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["stage"] for p in lines] == ["base"]  # the run has no stage2 model
    assert 0 < lines[0]["n"] <= 3 and 0 <= lines[0]["facts"] <= 1 and 0 <= lines[0]["qa"] <= 1
    assert main(["facts", "--run", str(run.root), "--split=qa_test"]) == 2  # not a split
