"""most.tools.facts: which corpus statement carries a QA fact."""

from __future__ import annotations

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
