"""Binary reward (webscale_rl.reward): extraction, matching, verl/TRL entry points, pathological
inputs. Pure Python, no Spark."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from webscale_rl import reward as reward_module
from webscale_rl.reward import (
    answers_match,
    compute_score,
    extract_final_answer,
    normalize_text,
    trl_reward,
)

# --------------------------------------------------------------------------------------------
# extract_final_answer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("so the result is \\boxed{\\frac{1}{\\sqrt{2}}} as shown", "\\frac{1}{\\sqrt{2}}"),  # nested braces
        ("first \\boxed{1}, then corrected: \\boxed{2}.", "2"),  # the last box wins
        ("\\fbox{Paris}", "Paris"),
        ("$\\boxed{3.5}$", "3.5"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces don't unbalance
        ("ok \\boxed{5} and then \\boxed{6", "5"),  # truncated last box: previous well-formed one
        ("Reasoning...\nAnswer: Lyon", "Lyon"),
        ("Reasoning...\nanswer: lyon.", "lyon"),
        ("Reasoning...\n**Answer:** Paris", "Paris"),
        ("Reasoning...\nAnswer: **Paris**", "Paris"),
        ("Reasoning...\n**Final Answer**: $42$.", "42"),
        ("Reasoning...\nFinal answer:\n\n  Lyon\n", "Lyon"),  # label alone, answer on next line
        ("Blah blah.\nThe answer is 1889.", "1889"),
        ("Answer: 1\nWait, let me redo it.\nAnswer: 2\nDone, thanks.", "2"),  # last Answer: line
        ("Answer: \\(x^2\\)", "x^2"),
        ("step one\n\nstep two\n\nLetitia James.\n\n", "Letitia James"),  # last non-empty line
    ],
)
def test_extract_final_answer(completion, expected):
    assert extract_final_answer(completion) == expected


@pytest.mark.parametrize("completion", ["", "   \n\t ", None])
def test_extract_nothing(completion):
    assert extract_final_answer(completion) is None


def test_extract_reads_only_the_tail():
    head = "\\boxed{wrong} " + "x" * 10_000
    assert extract_final_answer(head + "\nAnswer: 7") == "7"  # the early box is out of the window


# --------------------------------------------------------------------------------------------
# normalize_text
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The Danube", "danube"),
        ("  Letitia   James. ", "letitia james"),
        ("An Apple a day", "apple day"),
        ("Ｐａｒｉｓ", "paris"),  # NFKC folds full-width letters
        ("«Les Misérables»!", "les misérables"),  # unicode punctuation goes too, accents stay
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


# --------------------------------------------------------------------------------------------
# answers_match
# --------------------------------------------------------------------------------------------

EQUIVALENT = [
    # fractions / decimals (math-verify and the plain numeric path)
    ("0.5", "\\frac{1}{2}"),
    ("1/2", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("\\dfrac{1}{2}", "0.5"),
    ("3.5", "3.50"),
    ("1e3", "1000"),
    ("−3", "-3"),  # unicode minus
    # LaTeX by value
    ("2", "\\sqrt{4}"),
    ("1024", "2^{10}"),
    ("(x+1)^2", "x^2+2x+1"),
    ("a+b", "b+a"),
    ("\\pi", "π"),
    # thousands separators, currency, scale words, units
    ("2850", "2,850"),
    ("1000000", "1,000,000"),
    ("2850", "2850 km"),
    ("2,850 km", "2850"),
    ("2850\\text{ km}", "2850"),
    ("$3.50", "3.5"),
    ("€12", "12"),
    ("5 million", "5,000,000"),
    ("12 °C", "12"),
    ("10 km/h", "10"),
    ("approximately 12", "12"),
    ("300", "300 BC"),  # one side without a unit: the number decides
    # percent: % is a unit (50% == 50); percent vs fraction is math-verify's call (it says yes)
    ("50", "50%"),
    ("50 percent", "50%"),
    ("0.5", "50%"),
    # text: case, articles, punctuation, unicode
    ("danube", "The Danube"),
    ("letitia james", "Letitia James."),
    ("**Paris**", "paris"),
    ("U.S.", "US"),
    ("Ｐａｒｉｓ", "Paris"),
    # booleans
    ("true", "Yes"),
    ("Yes.", "yes"),
    ("No", "false"),
    ("FALSE", "no"),
    # wrappers are stripped from both sides
    ("$\\frac{1}{2}$", "0.5"),
    ("\\boxed{42}", "42"),
]

NOT_EQUIVALENT = [
    ("1890", "1889"),
    ("Lyon", "Paris"),
    ("0.25", "0.5"),
    ("1.5", "15"),  # text normalization would strip the dot: a numeric verdict must be final
    ("-1", "1"),
    ("2", "\\sqrt{5}"),
    ("(x+1)^3", "x^2+2x+1"),
    ("5 kg", "5 km"),  # both sides have units and they differ
    ("300 AD", "300 BC"),
    ("0.25", "50%"),
    ("5", "5 May"),  # a date, not a number with a unit
    ("June 5, 1889", "May 5, 1889"),  # math-verify alone would pull 1889 from both
    ("World War 1", "World War 2"),
    ("no", "yes"),
    ("true", "no"),
    ("Paris", "yes"),
    ("yes", "Paris"),
    ("3", "3 apples and 2 pears"),
    ("UK", "US"),
    ("Danube River", "Danube"),
    ("", "0"),
    ("0", ""),
    ("", ""),
]


@pytest.mark.parametrize("pred, gold", EQUIVALENT)
def test_equivalent_answers_match(pred, gold):
    assert answers_match(pred, gold) is True
    assert compute_score("webscale_rl", f"Some reasoning.\n\\boxed{{{pred}}}", gold) == 1.0


@pytest.mark.parametrize("pred, gold", NOT_EQUIVALENT)
def test_different_answers_do_not_match(pred, gold):
    assert answers_match(pred, gold) is False
    assert compute_score("webscale_rl", f"Some reasoning.\n\\boxed{{{pred}}}", gold) == 0.0


def test_percent_versus_fraction_is_math_verifys_call():
    """Decision: "50%" vs "0.5" is equal iff math-verify says so. With math-verify 0.9.0 it does;
    if a future version changes its mind this test tells us (the plain path still gives 50% == 50)."""
    from math_verify import parse, verify

    mv_says = verify(parse("50%"), parse("0.5"))
    assert answers_match("0.5", "50%") is bool(mv_says) is True
    assert answers_match("50", "50%") is True


def test_answer_type_text_disables_math():
    assert answers_match("1/2", "0.5", "numeric") is True
    assert answers_match("1/2", "0.5", "text") is False
    assert answers_match("the Danube", "Danube", "text") is True
    assert answers_match("yes", "true", "boolean") is True
    assert answers_match("maybe", "true", "boolean") is False
    assert answers_match("2850 km", "2850", "weird-unknown-type") is True  # unknown hint: auto


@pytest.mark.parametrize("value, matches_12", [(None, False), (12, True), (12.0, True), (3.5, False), (["x"], False), ({"a": 1}, False)])
def test_non_string_answers_are_compared_by_their_text(value, matches_12):
    """None matches nothing; any other value is compared as its str(), on either side, as a bool."""
    assert answers_match(value, "12") is matches_12
    assert answers_match("12", value) is matches_12


@pytest.mark.parametrize("pred, gold", [("\\frac{", "\\sqrt{"), ("}}}{{{\\\\", "$$$")])
def test_malformed_latex_is_no_match(pred, gold):
    assert answers_match(pred, gold) is False


def test_an_error_inside_the_comparison_falls_back_to_text(monkeypatch):
    """Never raises: when the math/text comparison itself fails (SymPy can), the verdict is plain
    text equality."""

    def fails(*args):
        raise RecursionError("maximum recursion depth exceeded in SymPy")

    monkeypatch.setattr(reward_module, "_answers_match", fails)
    assert answers_match("The Danube", "danube") is True
    assert answers_match("\\frac{1}{2}", "0.5") is False  # equal by value, but only text is compared now


# --------------------------------------------------------------------------------------------
# compute_score (verl)
# --------------------------------------------------------------------------------------------


def test_compute_score_is_exactly_one_or_zero():
    out = compute_score("webscale_rl", "The river is long.\nAnswer: The Danube", "Danube")
    assert out == 1.0 and type(out) is float
    out = compute_score("webscale_rl", "Answer: Rhine", "Danube")
    assert out == 0.0 and type(out) is float


def test_compute_score_extra_info_and_list_ground_truth():
    assert compute_score("webscale_rl", "\\boxed{1/2}", "0.5", {"answer_type": "text"}) == 0.0
    assert compute_score("webscale_rl", "\\boxed{1/2}", "0.5", {"answer_type": "numeric"}) == 1.0
    assert compute_score("webscale_rl", "\\boxed{1/2}", "0.5", {"split": "train"}) == 1.0
    assert compute_score("webscale_rl", "\\boxed{NYC}", ["New York City", "NYC"]) == 1.0
    assert compute_score("webscale_rl", "\\boxed{LA}", ["New York City", "NYC"]) == 0.0
    assert compute_score("webscale_rl", "\\boxed{1889}", 1889) == 1.0  # non-string ground truth


@pytest.mark.parametrize("solution", ["", "   ", None, "\\boxed{}"])
def test_compute_score_empty_completion(solution):
    assert compute_score("webscale_rl", solution, "42") == 0.0


@pytest.mark.parametrize("gold", ["", None, []])
def test_compute_score_empty_ground_truth(gold):
    assert compute_score("webscale_rl", "\\boxed{42}", gold) == 0.0


# --------------------------------------------------------------------------------------------
# trl_reward (TRL GRPOTrainer)
# --------------------------------------------------------------------------------------------


def test_trl_reward_plain_strings():
    completions = ["... \\boxed{2,850 km}", "Answer: Lyon", ""]
    assert trl_reward(completions, answer=["2850", "Paris", "x"]) == [1.0, 0.0, 0.0]


def test_trl_reward_chat_messages():
    completions = [
        [{"role": "assistant", "content": "Reasoning.\n\\boxed{\\frac{1}{2}}"}],
        [{"role": "assistant", "content": "Answer: Paris"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "The answer is yes."}]}],
        [{"role": "assistant", "content": ""}],
        [],
    ]
    out = trl_reward(completions, answer=["0.5", "Lyon", "true", "1", "1"], prompts=[None] * 5)
    assert out == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert all(type(x) is float for x in out)


def test_trl_reward_answer_type_column():
    out = trl_reward(["\\boxed{1/2}", "\\boxed{1/2}"], answer=["0.5", "0.5"], answer_type=["text", "numeric"])
    assert out == [0.0, 1.0]


# --------------------------------------------------------------------------------------------
# Pathological inputs: bounded time
# --------------------------------------------------------------------------------------------


def test_huge_completion_returns_quickly():
    completion = ("Let me think about this. " * 4_000)[:100_000] + "\n\\boxed{2850}"
    assert len(completion) > 100_000
    t = time.monotonic()
    assert compute_score("webscale_rl", completion, "2,850") == 1.0
    assert compute_score("webscale_rl", "{" * 100_000, "2850") == 0.0
    assert compute_score("webscale_rl", "*" * 100_000, "2850") == 0.0
    assert compute_score("webscale_rl", "\\boxed{" * 20_000, "2850") == 0.0
    assert time.monotonic() - t < 2.0


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("9^{9^{9}}", "3"),
        ("10^10^10", "7"),
        ("2^{99999999}", "1"),
        ("(x+1)^{200}", "(x+2)^{200}"),
        ("\\frac{1}{2}" * 40, "1"),
    ],
)
def test_math_verify_is_time_bounded(pred, gold):
    answers_match("1/2", "0.5")  # import math-verify/SymPy outside the timed part
    t = time.monotonic()
    assert compute_score("webscale_rl", f"\\boxed{{{pred}}}", gold) == 0.0
    assert time.monotonic() - t < 1.5


def test_outer_sigalrm_timer_is_restored():
    """Our per-call timer must not cancel an outer one (e.g. pytest-timeout's signal method)."""
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        assert answers_match("\\sqrt{4}", "2") is True
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 3.0 < remaining <= 5.0
        assert signal.getsignal(signal.SIGALRM) is not None and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_works_off_the_main_thread():
    """No signals off the main thread: math still compares, risky expressions are skipped."""
    results = {}

    def run():
        results["frac"] = answers_match("\\frac{1}{2}", "0.5")
        results["sqrt"] = answers_match("\\sqrt{4}", "2")
        t = time.monotonic()
        results["risky"] = answers_match("9^{9^{9}}", "3")
        results["risky_s"] = time.monotonic() - t

    th = threading.Thread(target=run)
    th.start()
    th.join(timeout=10)
    assert not th.is_alive()
    assert results["frac"] is True and results["sqrt"] is True
    assert results["risky"] is False and results["risky_s"] < 1.0
