"""Text aimed at a language model rather than at a human reader: one place for the patterns.

`PROMPT_INJECTION` finds it in a document (the filter rejects such documents before any call);
`ABOUT_INSTRUCTIONS` finds a QA pair that is about the pipeline's own instructions, prompts or
secrets instead of the document's subject (the check stage rejects it). Both are Java-regex
compatible (Spark's `rlike`/`regexp_extract`) and Python-`re` compatible (`find_injection`), so
the driver-side helper and the vectorised Spark rule agree.
"""

from __future__ import annotations

import re

from pyspark.sql import Column
from pyspark.sql import functions as F

_AI = r"(ai|a\.i\.|llm|gpt|chatgpt|claude|gemini|language\s+model|assistant|chatbot|bot)"

PROMPT_INJECTION = (
    r"(?i)("
    # "ignore all previous instructions", "disregard the above rules", "do not follow your instructions"
    r"\b(ignore|disregard|forget|override|bypass)\s+(all\s+|any\s+|the\s+|your\s+|these\s+|of\s+)*"
    r"(previous\s+|prior\s+|above\s+|earlier\s+|system\s+|original\s+)*(instructions|prompts?|rules|directions|guidelines)\b"
    r"|\b(do\s+not|don't|stop)\s+follow(ing)?\s+(the\s+|your\s+|any\s+)(previous\s+|original\s+|system\s+)?(instructions|rules|prompt)\b"
    # Fake system or assistant turns and chat-template tokens.
    r"|(^|\n|\.\s)\s*(system|assistant|developer)\s*(prompt|message)?\s*:"
    r"|<\|?\s*(im_start|im_end|system|endoftext|eot_id|start_header_id|end_header_id)\s*\|?>"
    r"|\[/?(system|inst)\]|<<\s*/?\s*sys\s*>>|<start_of_turn>|<end_of_turn>"
    r"|\b(begin|start|end)\s+(of\s+)?(the\s+)?system\s+(prompt|message)\b"
    # Requests to reveal the prompt, keys or secrets.
    r"|\b(reveal|print|output|show|repeat|leak|disclose|share|tell\s+me|give\s+me|include)\s+(me\s+)?(your|the)\s+"
    r"(system\s+prompt|instructions|api[\s_-]*keys?|secrets?|passwords?|credentials|environment\s+variables|access\s+tokens?)"
    r"|\b(you\s+are\s+now|act\s+as|pretend\s+to\s+be)\s+(an?\s+)?(ai|assistant|language\s+model|chatbot|dan|unrestricted)\b"
    # Fake structured replies in our reply schemas' keys (double or single quotes).
    r"|\{\s*[\"'](question|answer|answer_type|informative|self_contained|domain|personas|supported|correct|leaks_answer)[\"']\s*:"
    # Text that speaks to an AI reader: "note for any AI model reading this", "if you are an LLM".
    r"|\b(note|message|instructions?)\s+(for|to)\s+(any\s+|all\s+|the\s+)?" + _AI + r"s?"
    r"(\s+(models?|systems?|agents?))?\s*(reading|processing|parsing|[:,])"
    r"|\bif\s+you\s+are\s+(an?\s+)?(ai|llm|language\s+model|assistant|chatbot|bot)\b"
    r"|\b(ai|llm|gpt|language\s+model|assistant|chatbot)s?\s+(models?\s+)?(reading|processing|parsing|summari[sz]ing|crawling|scraping)\s+this\b"
    r"|\b(the\s+)?only\s+(correct|right|valid)\s+(question|answer)\b"
    # Our own delimiters and other closing tags of a data block, chat-template headers.
    r"|</?\s*(document|data|context|untrusted[\s_-]?\w*)\s*>"
    r"|(^|\n)\s*[-=#*]*\s*end\s+of\s+(the\s+)?(document|data|input|context)\s*[-=#*]*\s*(\n|$)"
    r"|(^|\n)\s*#{2,}\s*(instruction|response|system|input)s?\b"
    # Notes to whoever writes the questions.
    r"|\b(new|updated|additional|real)\s+(task|instructions?)\s+(from|for)\b"
    r"|\b(dear|attention|note\s+to|hey)\s+(the\s+|any\s+)?(question|quiz|dataset|data)\s+(writers?|generators?|annotators?|creators?)\b"
    r")"
)

# A QA pair about the pipeline itself: injected text made the model write about its instructions,
# its prompt, keys or passwords, or copy an injected instruction into the pair.
ABOUT_INSTRUCTIONS = (
    r"(?i)(ignore (all |any |the |your )?(previous|prior|above)? ?instructions|system prompt|api[ _-]?key"
    r"|your (instructions|prompt|rules|guidelines)|as an ai\b|language model|jailbreak|prompt injection"
    r"|\b(admin|root|administrator|secret|master)\s+(password|passcode|passphrase|key|token)\b"
    r"|\bthe secret (word|code|phrase)\b|\bhidden (instruction|message|prompt)s?\b"
    r"|\b(quiz|question) writers?\b)"
)

_PYTHON_PROMPT_INJECTION = re.compile(PROMPT_INJECTION)


def find_injection(text: str | None) -> str | None:
    """The first passage of `text` addressed to a model (whitespace collapsed), or None."""
    if not text:
        return None
    m = _PYTHON_PROMPT_INJECTION.search(text)
    return " ".join(m.group(0).split()) if m else None


def injection_detail(match: Column) -> Column:
    """The rejection detail the filter's `prompt_injection` rule records."""
    return F.concat(F.lit("text addressed to an LLM: "), F.substring(F.regexp_replace(match, r"\s+", " "), 1, 120))


def about_instructions(question: Column, answer: Column) -> Column:
    """True when a QA pair is about instructions/secrets, or carries an injected instruction."""
    return (
        question.rlike(ABOUT_INSTRUCTIONS)
        | answer.rlike(ABOUT_INSTRUCTIONS)
        | (F.regexp_extract(question, PROMPT_INJECTION, 0) != "")
        | (F.regexp_extract(answer, PROMPT_INJECTION, 0) != "")
    )
