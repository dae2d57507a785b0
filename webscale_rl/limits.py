"""Size and token limits for untrusted documents (`limits.*`): the one place that turns the
model's context into a per-call document budget.

Tokens are estimated without a tokenizer: UTF-8 bytes / `limits.bytes_per_token`. A byte-level
BPE token (Qwen, GPT, Llama 3) holds at least one byte, so 1.0 is a strict upper bound; the
default 2.0 still over-counts English (~4 bytes/token) and CJK (~3 bytes/token).
"""

from __future__ import annotations

import dataclasses
import math

from .config import LLM_STAGES, Config, ConfigError

ON_TOO_LARGE = ("reject", "truncate")
LONG_DOCUMENT = ("truncate", "chunk")
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


def _prompt_overhead_tokens(cfg: Config, stage: str) -> int:
    from .prompts import load_prompt

    prompt = load_prompt(stage)
    template = prompt.system + prompt.user
    return estimate_tokens(template, cfg.limits.bytes_per_token) + math.ceil(FILLED_FIELDS_BYTES / cfg.limits.bytes_per_token) + CHAT_TEMPLATE_TOKENS


def document_budget_bytes(cfg: Config) -> int | None:
    """UTF-8 bytes of document text that fit in every LLM stage's call, or None when unbounded."""
    budget = input_token_budget(cfg)
    if budget is None:
        return None
    room = min(budget - _prompt_overhead_tokens(cfg, s) - cfg.llm.max_tokens.get(s, 0) for s in LLM_STAGES)
    return int(room * cfg.limits.bytes_per_token)


def document_chars_per_call(cfg: Config) -> int:
    """The document text one call carries: `llm.max_doc_chars`, lowered to the token budget.
    `prompts.defuse_document` bounds both the characters and the UTF-8 bytes by this number."""
    budget = document_budget_bytes(cfg)
    return cfg.llm.max_doc_chars if budget is None else max(1, min(cfg.llm.max_doc_chars, budget))


def with_call_limits(cfg: Config) -> Config:
    """The config a run uses: `llm.max_doc_chars` fitted to the per-call token budget."""
    fitted = document_chars_per_call(cfg)
    if fitted == cfg.llm.max_doc_chars:
        return cfg
    return dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, max_doc_chars=fitted))


def validate_limits(cfg: Config) -> None:
    from .pii import PII_KINDS

    lim = cfg.limits
    if lim.on_too_large not in ON_TOO_LARGE:
        raise ConfigError(f"limits.on_too_large must be one of {ON_TOO_LARGE}, got {lim.on_too_large!r}")
    if lim.long_document not in LONG_DOCUMENT:
        raise ConfigError(f"limits.long_document must be one of {LONG_DOCUMENT}, got {lim.long_document!r}")
    if lim.max_doc_chars < 1:
        raise ConfigError(f"limits.max_doc_chars must be >= 1, got {lim.max_doc_chars}")
    if lim.bytes_per_token <= 0:
        raise ConfigError(f"limits.bytes_per_token must be > 0, got {lim.bytes_per_token}")
    if lim.max_input_tokens is not None and lim.max_input_tokens < 1:
        raise ConfigError(f"limits.max_input_tokens must be >= 1, got {lim.max_input_tokens}")
    if cfg.llm.max_doc_chars < 1:
        raise ConfigError(f"llm.max_doc_chars must be >= 1, got {cfg.llm.max_doc_chars}")
    for stage, n in cfg.llm.max_tokens.items():
        if n < 1:
            raise ConfigError(f"llm.max_tokens.{stage} must be >= 1, got {n}")
    unknown = sorted(set(cfg.pii.kinds) - set(PII_KINDS))
    if unknown:
        raise ConfigError(f"pii.kinds: unknown kind(s) {unknown}; known: {list(PII_KINDS)}")
    budget = document_budget_bytes(cfg)
    if budget is not None and budget < MIN_DOCUMENT_BYTES:
        raise ConfigError(
            f"limits.max_input_tokens={input_token_budget(cfg)} leaves {max(budget, 0)} bytes of document per call "
            f"after the prompt and llm.max_tokens (need >= {MIN_DOCUMENT_BYTES}); raise the context "
            "(limits.max_input_tokens, local_llm.ctx_size) or lower llm.max_tokens"
        )
