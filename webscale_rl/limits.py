"""Size and token limits for untrusted documents (`limits.*`): the one place that turns the
model's context into a per-call document budget.

Tokens are estimated without a tokenizer: UTF-8 bytes / `limits.bytes_per_token`. A byte-level
BPE token (Qwen, GPT, Llama 3) holds at least one byte, so 1.0 is a strict upper bound; the
default 2.0 still over-counts English (~4 bytes/token) and CJK (~3 bytes/token).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from .config import Config, ConfigError
from .prompts import stage_prompt

# Room for what a prompt adds around its template: persona, domain, few-shot examples, question
# and answer (check.max_question_words words and the answer), and the chat template's own tokens.
FILLED_FIELDS_BYTES = 1200
CHAT_TEMPLATE_TOKENS = 64
# A budget that leaves a document fewer bytes than this is a configuration mistake, not a limit.
MIN_DOCUMENT_BYTES = 500


def input_token_budget(cfg: Config) -> int | None:
    """Tokens one call may hold (prompt + document + reply), or None when nothing bounds it."""
    if cfg.limits.max_input_tokens is not None:
        return cfg.limits.max_input_tokens
    if cfg.llm.provider == "local":
        # llama-server splits its context evenly across the slots.
        return cfg.local_llm.ctx_size // max(cfg.local_llm.parallel, 1)
    return None


def estimate_tokens(text: str, bytes_per_token: float) -> int:
    return math.ceil(len(text.encode("utf-8")) / bytes_per_token)


def prompt_overhead_tokens(cfg: Config, stage: str) -> int:
    prompt = stage_prompt(cfg, stage)
    template = prompt.system + prompt.user
    return estimate_tokens(template, cfg.limits.bytes_per_token) + math.ceil(FILLED_FIELDS_BYTES / cfg.limits.bytes_per_token) + CHAT_TEMPLATE_TOKENS


def document_budget_bytes(cfg: Config, llm_stages: Iterable[str]) -> int | None:
    """UTF-8 bytes of document text that fit in every LLM stage's call, or None when unbounded
    (no token budget, or no LLM stage).
    `llm_stages`: the names of the stages that call the model (their prompts and max_tokens count)."""
    budget = input_token_budget(cfg)
    rooms = [budget - prompt_overhead_tokens(cfg, s) - cfg.llm.max_tokens.get(s, 0) for s in llm_stages] if budget is not None else []
    return int(min(rooms) * cfg.limits.bytes_per_token) if rooms else None


def document_chars_per_call(cfg: Config, llm_stages: Iterable[str]) -> int:
    """The document text one call carries: `llm.max_doc_chars`, lowered to the token budget.
    `prompts.defuse_document` bounds both the characters and the UTF-8 bytes by this number."""
    budget = document_budget_bytes(cfg, llm_stages)
    return cfg.llm.max_doc_chars if budget is None else max(1, min(cfg.llm.max_doc_chars, budget))


def with_call_limits(cfg: Config, llm_stages: Iterable[str]) -> Config:
    """The config a run uses: `llm.max_doc_chars` fitted to the per-call token budget of the LLM
    stages that run. A budget that leaves too little room for a document is a ConfigError."""
    llm_stages = tuple(llm_stages)
    check_call_budget(cfg, llm_stages)
    fitted = document_chars_per_call(cfg, llm_stages)
    if fitted == cfg.llm.max_doc_chars:
        return cfg
    return dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, max_doc_chars=fitted))


def check_call_budget(cfg: Config, llm_stages: Iterable[str]) -> None:
    """The limits check that needs the prompts (the rest of limits.* is checked by load_config)."""
    budget = document_budget_bytes(cfg, llm_stages)
    if budget is not None and budget < MIN_DOCUMENT_BYTES:
        raise ConfigError(
            f"limits.max_input_tokens={input_token_budget(cfg)} leaves {max(budget, 0)} bytes of document per call "
            f"after the prompt and llm.max_tokens (need >= {MIN_DOCUMENT_BYTES}); raise the context "
            "(limits.max_input_tokens, local_llm.ctx_size) or lower llm.max_tokens"
        )
