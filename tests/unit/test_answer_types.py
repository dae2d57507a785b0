"""The answer-type rule and the fact key (webscale_rl/rules/answer_types.py), with exact details."""

from __future__ import annotations

import pytest

from webscale_rl.reward import answers_match
from webscale_rl.rules.answer_types import check_answer_type, fact_key, value_kind

OPTIONS_Q = "Which admission test, choices A to D: A) SAT, B) GRE, C) GMAT, D) LSAT, is required by law schools?"


@pytest.mark.parametrize(
    ("answer", "declared", "question", "expected"),
    [
        # the declared type holds
        ("1648", "numeric", "In which year did the war end?", "numeric"),
        ("2,850 km", "numeric", "How long is the river?", "numeric"),
        ("approximately 42 km", "numeric", "How far is it?", "numeric"),
        ("25%", "numeric", "What is the markup?", "numeric"),
        ("\\frac{1}{2}", "numeric", "What is the probability?", "numeric"),  # math-verify: a number
        ("no", "boolean", "Is it faster?", "boolean"),
        ("True", "boolean", "Is it faster?", "boolean"),
        ("3x^2 + 2", "expression", "What is the derivative?", "expression"),
        ("John Maynard Keynes", "entity", "Who wrote it?", "entity"),
        ("git commit", "short_text", "Which command records changes?", "short_text"),
        ("D", "choice", OPTIONS_Q, "choice"),
        ("(b)", "choice", "Which one: (a) red, (b) blue, (c) green?", "choice"),
        ("Jupiter", "choice", "Which is larger, Jupiter or Saturn?", "choice"),
        # the value clearly is another type: retyped
        ("January 2006", "numeric", "When was it founded?", "short_text"),
        ("May 5, 1889", "entity", "When did it open?", "short_text"),
        ("the 1990s", "numeric", "When was it popular?", "short_text"),
        ("300 BC", "numeric", "When was it built?", "short_text"),
        ("42 km", "short_text", "How far is it?", "numeric"),
        ("yes", "entity", "Is it open on Sundays?", "boolean"),
        ("x^2 + 1", "numeric", "Which polynomial is it?", "expression"),
        ("10", "expression", "How many sides?", "numeric"),
        ("12", "choice", "How many months are in a year?", "numeric"),  # no options: a number
    ],
)
def test_type_holds_or_is_retyped(answer, declared, question, expected):
    assert check_answer_type(answer, declared, question) == (expected, None)


@pytest.mark.parametrize(
    ("answer", "declared", "question", "detail"),
    [
        (
            "that Trump should be removed as a witness",
            "boolean",
            "What did the lawyers argue?",
            "answer_type boolean, but 'that Trump should be removed as a witness' is not yes/no/true/false",
        ),
        ("Yes, it does", "boolean", "Does it float?", "answer_type boolean, but 'Yes, it does' is not yes/no/true/false"),
        ("Lake-effect snowfall", "expression", "What falls there?", "answer_type expression, but 'Lake-effect snowfall' is not a math expression"),
        ("several hundred", "numeric", "How many?", "answer_type numeric, but 'several hundred' is not a number with at most a unit"),
        ("5 May 1889 and 6 May 1890", "numeric", "When?", "answer_type numeric, but '5 May 1889 and 6 May 1890' is not a number with at most a unit"),
        ("E", "choice", OPTIONS_Q, "answer_type choice, but 'E' is not one of the options in the question"),
        ("Neptune", "choice", "Which is larger, Jupiter or Saturn?", "answer_type choice, but 'Neptune' is not one of the options in the question"),
        ("Kyoto", "choice", "Which city was the imperial capital?", "answer_type choice, but the question lists no options (answer 'Kyoto')"),
        ("a b c d e f g h i j k l m", "short_text", "Which letters?", "answer_type short_text, but 'a b c d e f g h i j k l m' has 13 words, max 12"),
        ("Paris", "date", "Which city?", "answer_type 'date' is not one of numeric, expression, entity, short_text, boolean, choice"),
        ("Paris", None, "Which city?", "answer_type None is not one of numeric, expression, entity, short_text, boolean, choice"),
    ],
)
def test_mismatch_names_type_and_value(answer, declared, question, detail):
    assert check_answer_type(answer, declared, question) == (None, detail)


def test_word_limit_is_a_parameter():
    assert check_answer_type("one two three", "entity", "Who?", max_words=2) == (None, "answer_type entity, but 'one two three' has 3 words, max 2")
    assert check_answer_type("one two", "entity", "Who?", max_words=2) == ("entity", None)


def test_long_answers_are_cut_in_the_detail():
    _, detail = check_answer_type("word " * 40, "numeric", "How many?")
    assert detail == "answer_type numeric, but '" + ("word " * 16)[:79] + "…' is not a number with at most a unit"


def test_text_is_never_sent_to_math_verify_as_a_formula():
    # math-verify alone reads "January 2006" as a product of letters; the rule must not.
    assert value_kind("January 2006") == "date"
    assert value_kind("Lake-effect snowfall") is None
    assert value_kind("sqrt(2)") == "numeric"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("January 2006", "short_text"), ("january 2006.", "short_text")),
        (("The Danube", "entity"), ("danube", "short_text")),
        (("2,850 km", "numeric"), ("2850 km", "numeric")),
        (("$3.50", "numeric"), ("3.5", "numeric")),
        (("3x^2 + 2", "expression"), ("3x^2+2", "expression")),
    ],
)
def test_same_fact_is_the_reward_match(a, b):
    assert fact_key(*a) == fact_key(*b) is not None
    assert answers_match(a[0], b[0], b[1])  # equal keys: the reward gives one answer to both


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("10 km", "numeric"), ("10 years", "numeric")),
        (("1.5", "numeric"), ("15", "numeric")),
        (("Vienna", "entity"), ("Budapest", "entity")),
    ],
)
def test_different_answers_are_different_facts(a, b):
    assert fact_key(*a) != fact_key(*b)


@pytest.mark.parametrize(("answer", "answer_type"), [("yes", "boolean"), ("No", "entity"), ("B", "choice"), ("?!", "entity"), ("", "short_text")])
def test_closed_set_and_empty_answers_are_never_collapsed(answer, answer_type):
    assert fact_key(answer, answer_type) is None
