"""Binary, verifiable reward for the exported QA pairs (GRPO-style RL).

Used by the RL trainers, never by the Spark ETL itself:

* verl:  ``custom_reward_function.path=<this file>``, ``custom_reward_function.name=compute_score``
  (``compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float``).
* TRL:   ``GRPOTrainer(reward_funcs=[trl_reward], ...)`` — the ``answer`` column of the TRL export
  is passed as the ``answer`` keyword.

The policy is told to put its final answer in ``\\boxed{}`` (see ``export.INSTRUCTION``);
:func:`extract_final_answer` reads that, with fallbacks for models that ignore the instruction.

Matching rules (:func:`answers_match`), in order:

1. Both sides empty after cleaning -> no match.
2. Booleans: ``yes/true/correct`` and ``no/false/incorrect`` are two classes; when the ground
   truth is one of them the prediction must be in the same class.
3. Plain numbers (``2,850``, ``$3.50``, ``2850 km``, ``1e3``, ``2.5 million``, ``50%``, ``1/2``):
   compared by value (relative tolerance 1e-6). Thousands separators and currency symbols are
   dropped; a trailing unit is dropped, but if BOTH sides carry a unit and the units differ the
   answer is wrong (``5 kg`` != ``5 km``). ``%`` counts as a unit, so ``50%`` == ``50``.
   Percent versus fraction (``50%`` vs ``0.5``) is delegated to math-verify: equal only if
   math-verify says so (it does, with math-verify 0.9.0). A numeric verdict is final: it never
   falls through to text equality (which would make ``1.5`` equal ``15`` once punctuation is
   stripped).
4. Math expressions (LaTeX or plain: ``\\frac{1}{2}``, ``\\sqrt{4}``, ``(x+1)^2``): math-verify
   ``verify(parse(gold), parse(pred))``. Only strings that look like math are sent there — a
   string with words of 3+ letters (``May 5, 1889``) is not, because math-verify would pull
   the year out of both and call different dates equal. If both sides parse to SymPy objects,
   math-verify's verdict is final.
5. Otherwise normalized text equality (SQuAD-style :func:`normalize_text`).

Any exception anywhere means "compare as text"; the public functions never raise.

Time: extraction reads only the last ``MAX_TAIL_CHARS`` characters of a completion; math-verify
runs under one wall-clock budget per comparison (``MATH_BUDGET_S``) enforced with
``signal.setitimer`` — math-verify's own timeouts use whole-second ``signal.alarm`` and would
cancel our timer, so they are switched off. Off the main thread no signal can be used: there
math-verify is skipped for long strings and for huge powers/factorials (which is where SymPy
hangs), and runs without a timer otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import signal
import string
import threading
import time
import unicodedata
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

MAX_TAIL_CHARS = 4_000  # extraction only looks at the end of a completion
MAX_MATH_CHARS = 300  # longer answers are never sent to math-verify
MATH_BUDGET_S = 0.8  # wall-clock budget for math-verify per answers_match call
REL_TOL = 1e-6

# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_ANSWER_LINE_RE = re.compile(
    r"^[\s#>*_\-]*(?:final\s+answer|answer)[\s*_]*[:：][\s*_]*(?P<ans>.*)$",
    re.IGNORECASE,
)
_ANSWER_IS_RE = re.compile(r"\bthe\s+(?:final\s+|correct\s+)?answer\s+is\s*[:：]?\s*(?P<ans>.+)$", re.IGNORECASE)


def _boxed_contents(text: str) -> str | None:
    """Content of the last well-formed ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``)."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    for start in reversed(starts):
        i = start
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text):
            continue
        if text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                c = text[j]
                if c == "\\":  # skip the escaped char: \{ and \} are literal braces
                    j += 2
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j]
                j += 1
            continue  # unbalanced (e.g. truncated): try the previous box
        if i > start:  # "\boxed 5" form: up to whitespace or "$"
            m = re.match(r"[^\s$]+", text[i:])
            if m:
                return m.group(0)
    return None


_WRAPPERS = [
    (r"^\$\$(.*)\$\$$", re.S),
    (r"^\$(.*)\$$", re.S),
    (r"^\\\((.*)\\\)$", re.S),
    (r"^\\\[(.*)\\\]$", re.S),
    (r"^\*\*(.*)\*\*$", re.S),
    (r"^__(.*)__$", re.S),
    (r"^\*(.*)\*$", re.S),
    (r"^`(.*)`$", re.S),
]
_WRAPPER_RES = [re.compile(p, f) for p, f in _WRAPPERS]


def _clean_answer(s: str) -> str:
    """Strip whitespace, surrounding $…$, \\( \\), \\[ \\], markdown bold/italic/code, a trailing period."""
    prev = None
    s = s.strip()
    while s != prev:
        prev = s
        for rx in _WRAPPER_RES:
            m = rx.match(s)
            if m and m.group(1).strip():
                s = m.group(1).strip()
        if s.endswith(".") and not s.endswith("..."):
            s = s[:-1].rstrip()
        # a bold marker left over from an "**Answer:** x" / "Answer: **x**" label
        if s.count("**") % 2 == 1:
            s = (s[2:] if s.startswith("**") else s[:-2] if s.endswith("**") else s).strip()
    box = _boxed_contents(s) if "\\boxed" in s or "\\fbox" in s else None
    if box is not None and box.strip() and box.strip() != s:
        return _clean_answer(box)
    return s


def extract_final_answer(solution_str: str) -> str | None:
    """The model's final answer: last ``\\boxed{}``/``\\fbox{}``, else the last "Answer:" /
    "Final answer:" / "**Answer:**" / "The answer is X" line, else the last non-empty line.
    Only the last ``MAX_TAIL_CHARS`` characters are read. ``None`` when there is nothing."""
    try:
        if not isinstance(solution_str, str):
            solution_str = "" if solution_str is None else str(solution_str)
        text = solution_str[-MAX_TAIL_CHARS:]
        if not text.strip():
            return None
        box = _boxed_contents(text)
        if box is not None:
            ans = _clean_answer(box)
            return ans or None
        lines = text.splitlines()
        for idx in range(len(lines) - 1, -1, -1):
            line = lines[idx]
            m = _ANSWER_LINE_RE.match(line) or _ANSWER_IS_RE.search(line)
            if not m:
                continue
            ans = _clean_answer(m.group("ans"))
            if not ans:  # "Answer:" alone on its line: the answer is on the next non-empty line
                ans = next((_clean_answer(n) for n in lines[idx + 1 :] if n.strip()), "")
            if ans:
                return ans
        for line in reversed(lines):
            if line.strip():
                ans = _clean_answer(line)
                return ans or None
        return None
    except Exception:  # never raise out of the reward path
        logger.debug("extract_final_answer failed", exc_info=True)
        return None


# --------------------------------------------------------------------------------------------
# Text normalization
# --------------------------------------------------------------------------------------------

_PUNCT = set(string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_text(s: str) -> str:
    """SQuAD-style: NFKC, lower-case, drop punctuation, drop articles (a/an/the), squeeze spaces."""
    if not isinstance(s, str):
        s = "" if s is None else str(s)
    s = unicodedata.normalize("NFKC", s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT and not unicodedata.category(ch).startswith("P"))
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


# --------------------------------------------------------------------------------------------
# Booleans
# --------------------------------------------------------------------------------------------

_TRUE_WORDS = {"yes", "true", "correct", "right", "y", "t"}
_FALSE_WORDS = {"no", "false", "incorrect", "wrong", "n", "f"}


def _as_bool(s: str) -> bool | None:
    n = normalize_text(s)
    if n in _TRUE_WORDS:
        return True
    if n in _FALSE_WORDS:
        return False
    return None


# --------------------------------------------------------------------------------------------
# Plain numbers
# --------------------------------------------------------------------------------------------

_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_CURRENCY = "$€£¥₹₩₽₪₫฿₺₴₦"
_LATEX_TEXT_RE = re.compile(r"\\(?:text|mathrm|textrm|textbf|mathbf|operatorname|mbox)\s*\{([^{}]*)\}")
_NUM_RE = re.compile(
    r"""^(?P<sign>[-+−]?)\s*
        (?P<num>
            \d{1,3}(?:,\d{3})+(?:\.\d+)?      # 2,850 / 1,000,000.5
          | \d+(?:\.\d*)?(?:[eE][-+]?\d+)?    # 2850 / 3.50 / 1e3
          | \.\d+(?:[eE][-+]?\d+)?            # .5
        )
        (?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?    # 1/2
        \s*(?P<rest>.*)$""",
    re.VERBOSE | re.S,
)
_UNIT_RE = re.compile(r"^(?:[^\W\d_]+(?:[/·.\-]?[^\W\d_]+)*[²³]?\.?|°[CFK]?|[%‰])$", re.UNICODE)
_NOT_UNITS = {  # "5 May" is a date, "3 and" / "4 or" are phrases: not numbers with units
    "jan",
    "january",
    "feb",
    "february",
    "mar",
    "march",
    "apr",
    "april",
    "may",
    "jun",
    "june",
    "jul",
    "july",
    "aug",
    "august",
    "sep",
    "sept",
    "september",
    "oct",
    "october",
    "nov",
    "november",
    "dec",
    "december",
    "and",
    "or",
    "to",
    "of",
}
_LEADING_QUALIFIERS = re.compile(r"^(?:approximately|approx\.?|about|around|roughly|~|≈)\s*", re.IGNORECASE)


def _latex_lite(s: str) -> str:
    """Undo the LaTeX that commonly wraps plain numbers: \\text{km}, \\%, \\$, \\,, {,}."""
    s = _LATEX_TEXT_RE.sub(r" \1 ", s)
    s = s.replace("{,}", ",").replace("\\%", "%").replace("\\$", "$").replace("\\,", "").replace("\\!", "")
    s = s.replace("\\ ", " ").replace("~", " ").replace("\\;", " ").replace("\\quad", " ")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "°", s)
    s = s.replace("\\times 10^", "e")  # 3 \times 10^{5}
    s = re.sub(r"e\{(-?\d+)\}", r"e\1", s)
    return s.strip()


def _parse_number(s: str) -> tuple[float, str, bool] | None:
    """``(value, unit, is_percent)`` for a plain number with optional currency, unit, scale word;
    ``None`` if ``s`` is not one. ``unit`` is normalized ('' when absent, '%' for percent)."""
    s = unicodedata.normalize("NFKC", s)
    s = _latex_lite(s)
    s = _LEADING_QUALIFIERS.sub("", s).strip()
    s = s.strip(_CURRENCY + " ")
    # currency codes / symbols after the sign: "-$5", "USD 5"
    s = re.sub(r"^([-+−]?)\s*[" + re.escape(_CURRENCY) + r"]\s*", r"\1", s)
    s = re.sub(r"^(?:usd|eur|gbp|us\$)\s*", "", s, flags=re.IGNORECASE)
    m = _NUM_RE.match(s)
    if not m:
        return None
    num = m.group("num").replace(",", "")
    try:
        value = float(num)
        if m.group("den"):
            den = float(m.group("den"))
            if den == 0:
                return None
            value = float(Fraction(num) / Fraction(m.group("den")))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if m.group("sign") in ("-", "−"):
        value = -value
    rest = m.group("rest").strip().rstrip(".").strip()
    rest = rest.strip(_CURRENCY).strip()
    words = rest.split()
    if words and words[0].lower() in _SCALES:
        value *= _SCALES[words[0].lower()]
        words = words[1:]
    unit = " ".join(words)
    if not unit:
        return (value, "", False)
    if unit in ("%", "percent", "per cent", "pct"):
        return (value, "%", True)
    if len(words) > 2 or len(unit) > 20:
        return None  # "5 May 1889", "3 of the 7 ..." is not a number with a unit
    if not all(_UNIT_RE.match(w) for w in words) or any(w.lower().rstrip(".") in _NOT_UNITS for w in words):
        return None
    return (value, unit.lower().rstrip("."), False)


def _numbers_equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def unit_canon(unit: str) -> str:
    """A unit as compared: normalised, spaces dropped, a plural "s" dropped ("km", "metres" -> "metre")."""
    return re.sub(r"(?<=[a-z]{3})s$", "", normalize_text(unit).replace(" ", ""))


def _units_conflict(u1: str, u2: str) -> bool:
    if not u1 or not u2:
        return False
    return unit_canon(u1) != unit_canon(u2)


# --------------------------------------------------------------------------------------------
# math-verify, under a wall-clock budget
# --------------------------------------------------------------------------------------------

_MATH_WORDS = {
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "log",
    "ln",
    "exp",
    "sqrt",
    "frac",
    "dfrac",
    "tfrac",
    "pi",
    "infty",
    "inf",
    "cdot",
    "times",
    "div",
    "pm",
    "mp",
    "left",
    "right",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "max",
    "min",
    "gcd",
    "lcm",
    "mod",
    "det",
    "lim",
    "sum",
    "int",
    "alpha",
    "beta",
    "gamma",
    "delta",
    "theta",
    "lambda",
    "sigma",
    "omega",
    "phi",
    "mu",
    "epsilon",
    "circ",
    "degree",
    "le",
    "ge",
    "leq",
    "geq",
    "neq",
    "approx",
    "cup",
    "cap",
    "emptyset",
    "binom",
    "mathbb",
    "text",
    "mathrm",
    "boxed",
    "begin",
    "end",
    "pmatrix",
    "bmatrix",
    "matrix",
    "cdots",
    "ldots",
    "dots",
    "over",
    "choose",
    "operatorname",
    "displaystyle",
}
_RISKY_RE = re.compile(r"(?:\^|\*\*)\s*\{?\s*\(?\s*\d{4,}|(?:\^|\*\*)[^^*]*(?:\^|\*\*)|\d{4,}\s*!|!!")


class _Budget(BaseException):
    """Raised by our SIGALRM handler; a BaseException so math-verify's ``except Exception`` can't
    swallow it."""


_mv: Any = None  # (parse, verify) once imported; False if math-verify is not installed


def _math_verify():
    global _mv
    if _mv is None:
        try:
            from math_verify import parse, verify

            class _DropTimeoutDisabledWarning(logging.Filter):
                def filter(self, record: logging.LogRecord) -> bool:
                    return "Timeout is disabled" not in str(record.msg)

            for name in ("math_verify.parser", "math_verify.grader"):
                logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
            # One comparison outside any budget: the first one loads the LaTeX grammar and SymPy's
            # caches, which on a busy machine alone can exceed MATH_BUDGET_S and score a right answer 0.
            verify(_mv_parse(parse, "(x+1)^2"), _mv_parse(parse, "x^2+2x+1"))
            _mv = (parse, verify)
        except Exception:  # pragma: no cover - math-verify is a declared dependency
            logger.warning("math-verify is not importable; math answers are compared as numbers/text")
            _mv = False
    return _mv


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise ``_Budget`` after ``seconds`` of wall time (main thread only; else a no-op).
    Restores any SIGALRM handler/timer that was there before (e.g. pytest-timeout's)."""
    if not _in_main_thread() or seconds <= 0:
        yield
        return

    armed = [True]

    def _handler(signum, frame):
        if armed[0]:  # disarmed at the top of `finally`, so the restore below can't be cut short
            raise _Budget()

    try:
        old_handler = signal.signal(signal.SIGALRM, _handler)
    except (ValueError, OSError):  # e.g. a sub-interpreter: run without a timer
        yield
        return
    if old_handler is None:  # installed outside Python: the best we can restore is the default
        old_handler = signal.SIG_DFL
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    if old_delay and old_delay < seconds:  # an outer timer is due first: respect it
        signal.setitimer(signal.ITIMER_REAL, old_delay)
    started = time.monotonic()
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:
            remaining = max(old_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, old_interval)


def _looks_mathy(s: str) -> bool:
    """True if ``s`` reads as a number/formula: no word of 3+ letters other than math words."""
    if not s or len(s) > MAX_MATH_CHARS:
        return False
    if not re.search(r"[\d\\^=+*/πe√∞]|[a-zA-Z]", s):
        return False
    for word in re.findall(r"[^\W\d_]{3,}", s.replace("\\", " ")):
        if word.lower() not in _MATH_WORDS:
            return False
    # pure words ("US", "x") are text: compared case-insensitively, not as SymPy symbols
    return bool(re.search(r"[\d\\^π√∞]|[a-zA-Z]\s*[-+*/^=<>]|[-+*/^=<>]\s*[a-zA-Z]", s))


def _mv_parse(parse, s: str):
    s = s.strip()
    if re.search(r"[\\^_{}]", s):
        candidates = [f"${s}$", s]
    else:
        candidates = [s, f"${s}$"]
    for cand in candidates:
        res = parse(cand, parsing_timeout=None)
        if res:
            return res
    return []


def _is_sympy(parsed) -> bool:
    return bool(parsed) and not isinstance(parsed[0], str)


def _math_verify_equal(gold: str, pred: str) -> tuple[bool, bool]:
    """``(equal, decided)``: decided is True when both sides parsed to SymPy objects."""
    mv = _math_verify()
    if not mv:
        return (False, False)
    if not _in_main_thread() and (_RISKY_RE.search(gold) or _RISKY_RE.search(pred)):
        return (False, False)  # no timer available off the main thread: don't risk a hang
    parse, verify = mv
    try:
        with _time_limit(MATH_BUDGET_S):
            g = _mv_parse(parse, gold)
            p = _mv_parse(parse, pred)
            if not g or not p:
                return (False, False)
            ok = bool(verify(g, p, timeout_seconds=None))
            return (ok, _is_sympy(g) and _is_sympy(p))
    except _Budget:
        logger.debug("math-verify budget exceeded for %.80r vs %.80r", gold, pred)
        return (False, False)
    except Exception:
        logger.debug("math-verify failed", exc_info=True)
        return (False, False)


def parse_math(s: str) -> list:
    """math-verify's ``parse`` of ``s`` under the same budget and guards as a comparison: ``[]``
    when it does not parse, runs out of time, is too long, or is risky off the main thread."""
    mv = _math_verify()
    if not mv or not s or len(s) > MAX_MATH_CHARS or (not _in_main_thread() and _RISKY_RE.search(s)):
        return []
    try:
        with _time_limit(MATH_BUDGET_S):
            return _mv_parse(mv[0], s)
    except _Budget:
        return []
    except Exception:
        logger.debug("math-verify parse failed", exc_info=True)
        return []


# The check stage types answers and collapses repeated facts with the reward's own parsing, so a
# pair is typed and compared the way it will be scored (webscale_rl/rules/answer_types.py).
parse_number = _parse_number
looks_mathy = _looks_mathy


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------

_TYPE_ALIASES = {
    "bool": "boolean",
    "boolean": "boolean",
    "yes_no": "boolean",
    "yesno": "boolean",
    "binary": "boolean",
    "number": "numeric",
    "numeric": "numeric",
    "numerical": "numeric",
    "integer": "numeric",
    "float": "numeric",
    "quantity": "numeric",
    "math": "math",
    "expression": "math",
    "formula": "math",
    "latex": "math",
    "text": "text",
    "string": "text",
    "entity": "text",
    "name": "text",
    "short_text": "text",
    "date": "text",
}


def _text_equal(pred: str, gold: str) -> bool:
    np_, ng = normalize_text(pred), normalize_text(gold)
    if ng:
        return np_ == ng
    # gold is all punctuation/articles: compare casefolded raw strings instead
    return pred.strip().casefold() == gold.strip().casefold() != ""


def _answers_match(predicted: str, ground_truth: str, answer_type: str | None) -> bool:
    pred = _clean_answer(predicted)
    gold = _clean_answer(ground_truth)
    if not pred or not gold:
        return False
    kind = _TYPE_ALIASES.get(str(answer_type).strip().lower()) if answer_type else None

    if kind == "text":
        return _text_equal(pred, gold)

    gb, pb = _as_bool(gold), _as_bool(pred)
    if gb is not None:  # yes/true vs no/false
        return pb is not None and pb == gb
    if kind == "boolean":  # hinted boolean but gold isn't a yes/no word: compare as text
        return _text_equal(pred, gold)

    gn, pn = _parse_number(gold), _parse_number(pred)
    if gn is not None and pn is not None:
        (gv, gu, gpct), (pv, pu, ppct) = gn, pn
        if _units_conflict(gu, pu):
            return False
        if _numbers_equal(gv, pv):
            return True
        if gpct or ppct:  # percent vs fraction: math-verify decides
            return _math_verify_equal(gold, pred)[0]
        return False  # a numeric verdict is final

    if _looks_mathy(gold) and _looks_mathy(pred):
        ok, decided = _math_verify_equal(gold, pred)
        if ok:
            return True
        if decided:
            return False
    elif kind in ("numeric", "math") and len(gold) <= MAX_MATH_CHARS and len(pred) <= MAX_MATH_CHARS:
        ok, decided = _math_verify_equal(gold, pred)
        if ok:
            return True

    return _text_equal(pred, gold)


def answers_match(predicted: str, ground_truth: str, answer_type: str | None = None) -> bool:
    """True if ``predicted`` (an already extracted answer) matches ``ground_truth``.
    ``answer_type`` (optional): "text" forces text comparison, "boolean"/"numeric"/"math" are
    hints; ``None`` detects the kind. Never raises."""
    try:
        if predicted is None or ground_truth is None:
            return False
        return _answers_match(str(predicted), str(ground_truth), answer_type)
    except Exception:
        logger.debug("answers_match failed; comparing as text", exc_info=True)
        try:
            return _text_equal(str(predicted), str(ground_truth))
        except Exception:
            return False


# --------------------------------------------------------------------------------------------
# Trainer entry points
# --------------------------------------------------------------------------------------------


def _ground_truths(ground_truth: Any) -> list[str]:
    if ground_truth is None:
        return []
    if isinstance(ground_truth, (list, tuple, set)):
        return [str(g) for g in ground_truth if g is not None and str(g).strip()]
    if hasattr(ground_truth, "tolist"):  # numpy array from a parquet list column
        return _ground_truths(ground_truth.tolist())
    return [str(ground_truth)]


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    """verl custom reward: 1.0 if the completion's final answer matches ``ground_truth`` (a string,
    or a list of acceptable strings), else 0.0. ``extra_info`` may carry ``{"answer_type": ...}``."""
    try:
        answer_type = extra_info.get("answer_type") if isinstance(extra_info, dict) else None
        golds = _ground_truths(ground_truth)
        if not golds:
            return 0.0
        pred = extract_final_answer(solution_str if isinstance(solution_str, str) else str(solution_str or ""))
        if not pred:
            return 0.0
        return 1.0 if any(answers_match(pred, g, answer_type) for g in golds) else 0.0
    except Exception:
        logger.debug("compute_score failed", exc_info=True)
        return 0.0


def _completion_text(completion: Any) -> str:
    """A plain string, or the last assistant message of a chat list (content str or parts)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Iterable):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        chosen = assistant[-1] if assistant else (messages[-1] if messages else None)
        return _content_text(chosen.get("content")) if chosen else ""
    return str(completion)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content if p is not None)
    return str(content)


def trl_reward(completions, answer, **kwargs) -> list[float]:
    """TRL ``GRPOTrainer`` reward function: one float (1.0/0.0) per completion.
    ``answer`` is the dataset column (one ground truth per completion); an ``answer_type`` column,
    if the dataset has one, arrives in ``kwargs`` and is used as a hint."""
    try:
        n = len(completions)
    except Exception:
        return []
    types = kwargs.get("answer_type")
    if isinstance(answer, str) or not isinstance(answer, Iterable):
        answer = [answer] * n
    answer = list(answer)
    types = list(types) if isinstance(types, (list, tuple)) else [types] * n
    rewards: list[float] = []
    for i, completion in enumerate(completions):
        try:
            gt = answer[i] if i < len(answer) else None
            at = types[i] if i < len(types) else None
            extra = {"answer_type": at} if at else None
            rewards.append(compute_score("webscale_rl", _completion_text(completion), gt, extra))
        except Exception:
            rewards.append(0.0)
    return rewards
