"""Typed configuration: built-in defaults, then a YAML file, then --set overrides.

Unknown keys and wrong types are errors that name the key, so a typo never silently falls back
to a default. A leaf module: it imports only the standard library and yaml (pydantic only to
print the JSON Schema), so loading a config never pulls in Spark. Checks that need the pipeline (stage names, expectation names, the prompts'
token budget) are made where the pipeline is assembled.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# The YAML configs shipped inside the package (webscale_rl/conf/<name>.yaml): `--config openai`.
PACKAGED_CONFIGS = importlib.resources.files(__package__) / "conf"
DEFAULT_CONFIG = "local"
# Keys with a fixed set of values are typed with Literal: a value outside it is an error naming
# the key and the allowed values, and the JSON Schema lists them for editors.
Provider = Literal["local", "openai", "azure", "databricks"]
Severity = Literal["critical", "warning", "off"]
PIIKind = Literal["email", "ip", "phone"]  # in the order pii.py applies them
SEVERITY_LEVELS: tuple[str, ...] = typing.get_args(Severity)
PII_KINDS: tuple[str, ...] = typing.get_args(PIIKind)


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key or file."""


@dataclass
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "webscale-rl"
    shuffle_partitions: int = 8
    # Extra Spark settings passed to the builder as they are (only when we build the session).
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class WarehouseConfig:
    # With both set, tables are <catalog>.<schema>.<table> in the metastore (Unity Catalog on
    # Databricks) instead of folders under --warehouse; --warehouse still holds what is not a
    # table (staged batches, validation results, the MLflow store).
    catalog: str | None = None
    schema: str | None = None


@dataclass
class LLMConfig:
    # "local": start the embedded llama.cpp server; "openai": any OpenAI-compatible endpoint;
    # "azure": Azure OpenAI (deployments); "databricks": model serving (base_url + token).
    provider: Provider = "local"
    base_url: str | None = None
    # Name of the environment variable holding the key; the key itself never enters the config.
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 4
    timeout_s: float = 180.0
    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    temperature: float = 0.0
    # Judging stages stay deterministic; generation gets some spread so personas of one document
    # do not all receive the same question.
    stage_temperature: dict[str, float] = field(default_factory=lambda: {"generate": 0.7})
    seed: int | None = 1234
    # Structured output: "json_schema" (OpenAI, vLLM, llama-server) or "json_object" for servers
    # that only accept the looser form.
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    # Prompt layout for the endpoint's prompt cache (webscale_rl/prompts): "instructions_first" (a
    # stage's calls share its instructions; best when a run has more documents than the server's
    # cache holds) or "document_first" (every stage's calls about one document share it; best when
    # all of a run's documents stay in the cache, e.g. the demo). Measured in docs/performance.md.
    prompt_layout: Literal["instructions_first", "document_first"] = "instructions_first"
    # Model per LLM stage (the pipeline checks that every LLM stage has one).
    models: dict[str, str] = field(default_factory=lambda: {"llm_filter": "local", "profile": "local", "generate": "local", "check": "local"})
    max_tokens: dict[str, int] = field(default_factory=lambda: {"llm_filter": 48, "profile": 120, "generate": 160, "check": 48})
    # Document text sent to a model is cut to this many characters (context budget).
    max_doc_chars: int = 4000
    # An LLM stage uses at most ceil(rows / rows_per_partition) partitions (and at most the tasks the
    # cluster is guessed to run at once, and max_concurrency); the limits are split among them.
    rows_per_partition: int = 16
    # An LLM stage stages its output this many rows at a time (a Delta commit each): a killed run
    # keeps, and never pays again for, every slice that committed; progress is reported per slice.
    slice_rows: int = 2000
    # Job-wide provider limits (None: none); divided across the Spark tasks that run at once.
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    # Response cache (Delta table <warehouse>/llm_cache): false = neither read nor write it.
    cache: bool = True
    # "online" (chat completions, async) or "batch" (the provider's Batch API, from the driver).
    mode: Literal["online", "batch"] = "online"
    batch_poll_s: float = 30.0
    batch_max_requests: int = 50_000  # lines per uploaded file (OpenAI allows 50,000)
    batch_max_rounds: int = 2  # new batches for lines that expired or failed transiently
    batch_completion_window: str = "24h"
    # provider "azure": https://<resource>.openai.azure.com and its api-version; models = deployments.
    azure_endpoint: str | None = None
    api_version: str | None = None
    # "scope/key" of a Databricks secret holding the key, used when $api_key_env is unset (read
    # with dbutils on Databricks only, by llm/secrets.find_api_key).
    api_key_secret: str | None = None
    # USD per million tokens, per model name; models missing here are reported with no cost.
    # Optional `cached_input_per_1m`: the price of prompt tokens the endpoint read from its prompt
    # cache (without it they cost input_per_1m).
    prices: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            "local": {"input_per_1m": 0.0, "output_per_1m": 0.0},
            "gpt-4.1": {"input_per_1m": 2.0, "cached_input_per_1m": 0.5, "output_per_1m": 8.0},
            "gpt-4.1-mini": {"input_per_1m": 0.4, "cached_input_per_1m": 0.1, "output_per_1m": 1.6},
            "gpt-4.1-nano": {"input_per_1m": 0.1, "output_per_1m": 0.4},
            "gpt-4o": {"input_per_1m": 2.5, "output_per_1m": 10.0},
            "gpt-4o-mini": {"input_per_1m": 0.15, "output_per_1m": 0.6},
        }
    )
    # Budget of one run in USD (None: none): the LLM stages stop before a slice whose worst-case
    # cost (limits.bytes_per_token, llm.max_tokens) would pass it; what is done lands, the rest is
    # the next run's work (exit code 3). Needs a price for every LLM stage's model.
    max_cost_usd: float | None = None


@dataclass
class LocalLLMConfig:
    # 1.5B: the 0.5B model judges every document alike (measured on the demo sample).
    model: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    # llama-server slots (continuous batching); 0 = one per CPU core, at most 4.
    parallel: int = 0
    ctx_size: int = 8192
    threads: int = 2
    startup_timeout_s: float = 300.0
    host: str = "127.0.0.1"


@dataclass
class LanguageConfig:
    """Language identification with py3langid (the langid.py model ships inside the PyPI wheel)."""

    enabled: bool = True
    # ISO 639-1 codes a document may be in; empty: any language (only the score threshold applies).
    languages: list[str] = field(default_factory=lambda: ["en"])
    # Minimum probability of the detected language (DataTrove's LanguageFilter uses 0.65).
    min_score: float = 0.65
    # Characters classified per document: the start of a page decides its language.
    max_chars: int = 20_000


FILTER_PRESETS = ("default", "datatrove")


@dataclass
class FilterConfig:
    """Thresholds of the heuristic rules; `null` switches a rule off. Defaults follow DataTrove's
    Gopher / C4 / FineWeb filters unless the comment says why not."""

    # "default": the rules and thresholds below. "datatrove": DataTrove's Gopher repetition, Gopher
    # quality, C4 and FineWeb filters with their default parameters, order and (spaCy) words; the
    # thresholds below are not read then (only `language` is). See docs/stages.md.
    preset: Literal["default", "datatrove"] = "default"
    # The paper's cheap heuristic: drop documents under ~50 tokens (words here).
    min_words: int | None = 50
    max_words: int | None = 100_000
    # Gopher quality.
    min_mean_word_length: float | None = 3.0
    max_mean_word_length: float | None = 10.0
    # Gopher: 0.8; 0.7 keeps news articles dense with figures and dates.
    min_alpha_word_ratio: float | None = 0.7
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_line_ratio: float | None = 0.9
    max_ellipsis_line_ratio: float | None = 0.3
    min_stop_words: int | None = 2
    # Gopher repetition (fractions of lines/paragraphs, or of the document's characters).
    max_duplicate_line_ratio: float | None = 0.3
    max_duplicate_paragraph_ratio: float | None = 0.3
    max_duplicate_paragraph_char_ratio: float | None = 0.2
    # Gopher: 0.2 of characters in repeated lines; FineWeb: 0.01 (counted without newlines). Both
    # measure the same thing, so one rule; FineWeb's threshold lets a page repeat a short line or two.
    max_duplicate_line_char_ratio: float | None = 0.01
    max_top_2gram_char_ratio: float | None = 0.2
    max_top_3gram_char_ratio: float | None = 0.18
    max_top_4gram_char_ratio: float | None = 0.16
    max_duplicate_5gram_char_ratio: float | None = 0.15
    max_duplicate_6gram_char_ratio: float | None = 0.14
    max_duplicate_7gram_char_ratio: float | None = 0.13
    max_duplicate_8gram_char_ratio: float | None = 0.12
    max_duplicate_9gram_char_ratio: float | None = 0.11
    max_duplicate_10gram_char_ratio: float | None = 0.10
    # C4: a page with "lorem ipsum" or a curly bracket (code, templates) goes; C4 drops single lines
    # mentioning javascript or a policy, a document-level filter drops pages made of such lines.
    max_lorem_ipsum: int | None = 0
    max_curly_brackets: int | None = 0
    max_javascript_line_ratio: float | None = 0.2
    max_policy_line_ratio: float | None = 0.2
    # FineWeb (its line-punctuation threshold is 0.12).
    min_lines_ending_punct_ratio: float | None = 0.12
    max_short_line_ratio: float | None = 0.67
    max_newline_word_ratio: float | None = 0.3
    # Navigation bars and link lists ("Home | News | Sport").
    max_separator_word_ratio: float | None = 0.1
    language: LanguageConfig = field(default_factory=LanguageConfig)


@dataclass
class FuzzyDedupConfig:
    """MinHash LSH over word n-gram shingles of the normalised text, candidates verified."""

    enabled: bool = True
    ngram: int = 5
    # bands x rows permutations; 14 x 8 (DataTrove's default) finds a pair of Jaccard 0.8 with
    # probability 0.92 in one band; verification then removes pairs below `threshold`.
    bands: int = 14
    rows: int = 8
    seed: int = 1
    # "jaccard": exact shingle Jaccard of candidate pairs (precise); "signature": the share of
    # equal MinHash values (no shingles shipped); "none": every LSH candidate is a duplicate.
    verify: Literal["jaccard", "signature", "none"] = "jaccard"
    threshold: float = 0.8
    # Label propagation stops when no label changes; this bounds it (chains longer than this fail).
    max_iterations: int = 50


@dataclass
class DedupConfig:
    lowercase: bool = True
    strip_punctuation: bool = True
    strip_digits: bool = False
    fuzzy: FuzzyDedupConfig = field(default_factory=FuzzyDedupConfig)


@dataclass
class ProfileConfig:
    max_personas: int = 3


# The generate stage's prompt files (webscale_rl/prompts/<name>.txt).
GENERATE_PROMPTS = ("generate", "generate_answer_first")


@dataclass
class GenerateConfig:
    # Few-shot library (YAML: version + examples per domain); None → the packaged one.
    fewshot_file: str | None = None
    fewshot_per_prompt: int = 2
    # The prompt file: `generate` (question first) or `generate_answer_first` (pick a span of the
    # document, then ask for it; the reply's JSON puts the answer first so the model writes it first).
    prompt: str = "generate"


@dataclass
class VerifyConfig:
    # Answer each checked question from the document, without the reference; keep the pair only
    # if the reward scores that answer 1 (stages/verify.py). Off: pairs pass unverified, no calls.
    enabled: bool = True
    # A second call answers the question alone: `closed_book_correct`, a difficulty signal.
    closed_book: bool = True


@dataclass
class CheckConfig:
    max_answer_words: int = 12
    max_question_words: int = 120
    min_question_words: int = 4
    # The answer's numbers, and most of its other words, must appear in the document. Answers that
    # need arithmetic on the document's numbers fail this; switch it off for such data sets.
    require_answer_in_document: bool = True
    # Two questions of one document whose word sets overlap this much (Jaccard) are one question.
    near_duplicate_question_jaccard: float = 0.8


@dataclass
class DecontamConfig:
    # Evaluation sets to decontaminate against: paths (JSONL/Parquet/CSV) or name=path; the CLI's
    # --eval-set adds to this list.
    eval_sets: list[str] = field(default_factory=list)
    # Tokens per n-gram (13 as in GPT-3 and the Webscale-RL paper).
    ngram: int = 13
    question_column: str = "question"
    # May be missing from an eval set: then only its questions are used.
    answer_column: str = "answer"
    # QA columns checked, in the order hits are reported.
    fields: tuple[str, ...] = ("pretrain_text", "question", "answer")
    # Eval texts with fewer than `ngram` tokens are matched whole if they have at least this many
    # tokens, and ignored below it. >= ngram: no whole-text matching.
    min_tokens: int = 8
    # True: broadcast the eval n-gram table; None/False: let Spark (AQE) choose the join.
    broadcast: bool | None = None


@dataclass
class QualityConfig:
    enabled: bool = True
    max_answer_chars: int = 200
    # "fail": a failed expectation fails the run (non-zero exit); "warn": report only.
    on_failure: Literal["fail", "warn"] = "fail"
    # Landing gates (quality/gates.py): validate every stage's batch before it lands; a failed
    # critical expectation quarantines the batch and fails the run.
    gates: bool = True
    # Severity overrides by "<table>:<expectation>" or "<expectation>" (quality/suites.py), e.g.
    # {"max_share(domain)": "critical", "qa:in_set(answer_type)": "off"}: critical | warning | off.
    severity: dict[str, Severity] = field(default_factory=dict)
    max_value_share: float = 0.9  # one domain / one answer on more than this share of rows: a broken model
    max_llm_error_share: float = 0.5  # more of a stage's input rejected with llm_error:*: a broken endpoint
    distribution_min_rows: int = 20  # share checks apply to batches of at least this many rows


@dataclass
class MLflowConfig:
    enabled: bool = True
    # None: $MLFLOW_TRACKING_URI if set, else a SQLite store inside the warehouse.
    tracking_uri: str | None = None
    experiment: str = "webscale-rl"
    sample_qa_rows: int = 50  # QA rows logged as an MLflow table


@dataclass
class LimitsConfig:
    # Hostile inputs: a document longer than this (characters) is rejected (`too_large`) or cut.
    # (One size bound for the whole pipeline: the filter has no second one.)
    max_doc_chars: int = 1_000_000
    on_too_large: Literal["reject", "truncate"] = "reject"
    # A bad input record (a JSONL line that is not a JSON object with a string "text", or too large
    # to parse): "reject" lands it in `rejections` (bad_record / too_large, naming file and line)
    # and the run goes on; "fail" stops the run with an error naming file and line.
    on_bad_record: Literal["reject", "fail"] = "reject"
    # Tokens one call may carry (prompt + document + reply). None: the local server's slot
    # (local_llm.ctx_size / parallel) for provider local, no token bound for openai.
    max_input_tokens: int | None = None
    # Token estimate = UTF-8 bytes / this. A byte-level BPE token holds at least one byte, so
    # 1.0 is a strict bound; 2.0 still over-counts English (~4 bytes/token) and CJK (~3).
    bytes_per_token: float = 2.0
    # A document over the per-call budget: "truncate" (the LLM stages send its start) or "chunk"
    # (split at ingest into `<doc_id>#<n>` documents that each fit one call).
    long_document: Literal["truncate", "chunk"] = "truncate"


@dataclass
class PIIConfig:
    # Replace e-mail addresses, phone numbers and IP addresses at ingest (before any table or call).
    enabled: bool = False
    kinds: list[PIIKind] = field(default_factory=lambda: ["email", "phone", "ip"])


@dataclass
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    warehouse: WarehouseConfig = field(default_factory=WarehouseConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    local_llm: LocalLLMConfig = field(default_factory=LocalLLMConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys → values, e.g. for MLflow params. Holds no secrets by construction."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = value

        walk("", self.to_dict())
        return out


def _coerce(path: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {type(value).__name__}")
        return _build(tp, value, path)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X] and X | None
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(path, inner[0], value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{path}' must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' must be a list, got {value!r}")
        item_type = args[0] if args else str
        items = [_coerce(f"{path}[{i}]", item_type, v) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        return {str(k): _coerce(f"{path}.{k}", args[1], v) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{path}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}' must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"'{prefix}'" if prefix else "the top level"
        raise ConfigError(f"unknown config key(s) {unknown} in {where}; known: {sorted(known)}")
    base = cls()
    kwargs = {}
    for name in known:
        path = f"{prefix}.{name}" if prefix else name
        if name in data:
            value = data[name]
            current = getattr(base, name)
            # Mappings of models/max_tokens are merged so a file can set one stage only.
            if isinstance(current, dict) and isinstance(value, dict) and not dataclasses.is_dataclass(current):
                value = {**current, **value}
            kwargs[name] = _coerce(path, hints[name], value)
        else:
            kwargs[name] = getattr(base, name)
    return cls(**kwargs)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` → (['a','b','c'], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    return key.split("."), value


def packaged_config_names() -> list[str]:
    """The configs shipped in the package, by the name `--config` takes (`openai`, `local`, ...)."""
    return sorted(r.name.removesuffix(".yaml") for r in PACKAGED_CONFIGS.iterdir() if r.name.endswith(".yaml"))


def _is_bare_name(ref: str) -> bool:
    return "/" not in ref and os.sep not in ref and not ref.endswith((".yaml", ".yml"))


def read_config_text(ref: str | Path) -> tuple[str, str]:
    """(YAML text, where it came from) for a packaged name (`openai`) or a file path. A bare name
    means the packaged config when one has that name, so it works from an installed wheel."""
    ref = str(ref)
    packaged = PACKAGED_CONFIGS / f"{ref}.yaml"
    if _is_bare_name(ref) and packaged.is_file():
        return packaged.read_text(encoding="utf-8"), f"packaged config {ref!r}"
    if Path(ref).is_file():
        return Path(ref).read_text(encoding="utf-8"), f"config file {ref}"
    raise ConfigError(f"config {ref!r} is neither a file nor a packaged config; packaged configs: {', '.join(packaged_config_names())}")


def load_yaml(ref: str | Path) -> dict[str, Any]:
    text, origin = read_config_text(ref)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must hold a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults ← YAML (a packaged name or a file; the packaged `local` when none) ← --set overrides."""
    data = load_yaml(DEFAULT_CONFIG if path is None else path)
    for item in overrides or []:
        keys, value = parse_override(item)
        node: dict[str, Any] = {}
        cur = node
        for k in keys[:-1]:
            cur[k] = {}
            cur = cur[k]
        cur[keys[-1]] = value
        data = _deep_merge(data, node)
    cfg = _build(Config, data)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    _validate_llm(cfg)
    if bool(cfg.warehouse.catalog) != bool(cfg.warehouse.schema):
        raise ConfigError("warehouse.catalog and warehouse.schema go together: set both or neither")
    for key in ("catalog", "schema"):
        value = getattr(cfg.warehouse, key)
        if value and not value.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"warehouse.{key} must be a plain identifier (letters, digits, _ or -), got {value!r}")
    if cfg.generate.prompt not in GENERATE_PROMPTS:
        raise ConfigError(f"generate.prompt must be one of {', '.join(GENERATE_PROMPTS)}; got {cfg.generate.prompt!r}")
    if not 1 <= cfg.profile.max_personas <= 3:
        raise ConfigError("profile.max_personas must be between 1 and 3 (the paper's limit)")
    _validate_filter_dedup(cfg)
    _validate_limits(cfg)


PRICE_KEYS = ("input_per_1m", "output_per_1m")
OPTIONAL_PRICE_KEYS = ("cached_input_per_1m",)


def _validate_price(model: str, price: Any) -> None:
    """`llm.prices.<model>`: input_per_1m and output_per_1m, optionally cached_input_per_1m; each a
    number >= 0. An unknown key is refused by name (a typo would silently price at full rate)."""
    if not isinstance(price, dict):
        raise ConfigError(f"llm.prices.{model} must be a mapping like {{input_per_1m: 2.0, output_per_1m: 8.0}}, got {price!r}")
    unknown = sorted(set(price) - set(PRICE_KEYS) - set(OPTIONAL_PRICE_KEYS))
    if unknown:
        raise ConfigError(f"llm.prices.{model} has unknown key(s) {unknown}; allowed: {list(PRICE_KEYS + OPTIONAL_PRICE_KEYS)}")
    missing = [k for k in PRICE_KEYS if k not in price]
    if missing:
        raise ConfigError(f"llm.prices.{model} lacks {missing} (it needs input_per_1m and output_per_1m; cached_input_per_1m is optional)")
    for key, value in price.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"llm.prices.{model}.{key} must be a number >= 0 (USD per 1M tokens), got {value!r}")
    if price.get("cached_input_per_1m", 0) > price["input_per_1m"]:
        raise ConfigError(
            f"llm.prices.{model}.cached_input_per_1m ({price['cached_input_per_1m']}) is more than its input_per_1m ({price['input_per_1m']}); "
            "a cached prompt token never costs more (drop the key to price cached tokens in full)"
        )


def default_verify_to_check(llm: LLMConfig) -> None:
    """verify answers questions, as check judges them: a config written before verify existed (a
    file, or a Config built in Python) uses check's model and token limit for it."""
    if "check" in llm.models:
        llm.models.setdefault("verify", llm.models["check"])
    if "check" in llm.max_tokens:
        llm.max_tokens.setdefault("verify", llm.max_tokens["check"])


def _validate_llm(cfg: Config) -> None:
    llm = cfg.llm
    default_verify_to_check(llm)
    if llm.provider == "azure" and not (llm.azure_endpoint and llm.api_version):
        raise ConfigError("llm.provider 'azure' needs llm.azure_endpoint and llm.api_version")
    for name, limit in (("requests_per_minute", llm.requests_per_minute), ("tokens_per_minute", llm.tokens_per_minute)):
        if limit is not None and limit <= 0:
            raise ConfigError(f"llm.{name} must be > 0 or null, got {limit}")
    for model, price in llm.prices.items():
        _validate_price(model, price)
    if llm.max_cost_usd is not None:
        if llm.max_cost_usd <= 0:
            raise ConfigError(f"llm.max_cost_usd must be > 0 or null, got {llm.max_cost_usd}")
    if llm.mode == "batch" and llm.provider == "local":
        raise ConfigError("llm.mode 'batch' needs a provider with a Batch API (openai, azure), not the embedded 'local' server")
    if llm.api_key_secret is not None and llm.api_key_secret.count("/") != 1:
        raise ConfigError(f"llm.api_key_secret must be 'scope/key', got {llm.api_key_secret!r}")
    if llm.max_concurrency < 1:
        raise ConfigError("llm.max_concurrency must be >= 1")
    for name in ("max_doc_chars", "rows_per_partition", "slice_rows"):
        if getattr(llm, name) < 1:
            raise ConfigError(f"llm.{name} must be >= 1, got {getattr(llm, name)}")
    for stage, n in llm.max_tokens.items():
        if n < 1:
            raise ConfigError(f"llm.max_tokens.{stage} must be >= 1, got {n}")


def _validate_filter_dedup(cfg: Config) -> None:
    if cfg.filter.preset not in FILTER_PRESETS:
        raise ConfigError(f"filter.preset must be one of {list(FILTER_PRESETS)}, got {cfg.filter.preset!r}")
    for key, value in dataclasses.asdict(cfg.filter).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"filter.{key} must be >= 0 or null, got {value}")
    lang = cfg.filter.language
    if not 0.0 <= lang.min_score <= 1.0:
        raise ConfigError(f"filter.language.min_score must be between 0 and 1, got {lang.min_score}")
    if lang.max_chars < 1:
        raise ConfigError("filter.language.max_chars must be >= 1")
    fz = cfg.dedup.fuzzy
    if fz.ngram < 1 or fz.bands < 1 or fz.rows < 1 or fz.max_iterations < 1:
        raise ConfigError("dedup.fuzzy.ngram, bands, rows and max_iterations must be >= 1")
    if not 0.0 < fz.threshold <= 1.0:
        raise ConfigError(f"dedup.fuzzy.threshold must be in (0, 1], got {fz.threshold}")


def _validate_limits(cfg: Config) -> None:
    """The limits.* checks that need only the config; the per-call token budget needs the prompts
    and is checked by `limits.with_call_limits` when a run starts."""
    lim = cfg.limits
    if lim.max_doc_chars < 1:
        raise ConfigError(f"limits.max_doc_chars must be >= 1, got {lim.max_doc_chars}")
    if lim.bytes_per_token <= 0:
        raise ConfigError(f"limits.bytes_per_token must be > 0, got {lim.bytes_per_token}")
    if lim.max_input_tokens is not None and lim.max_input_tokens < 1:
        raise ConfigError(f"limits.max_input_tokens must be >= 1, got {lim.max_input_tokens}")


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the YAML config, for editors (`webscale-rl config-schema > config.schema.json`).
    Unknown keys are errors in load_config, so every object says additionalProperties: false."""
    # Imported here: pydantic only derives the schema from the dataclasses; loading a config
    # does not need it.
    from pydantic import TypeAdapter

    schema = TypeAdapter(Config).json_schema()
    for obj in [schema, *schema.get("$defs", {}).values()]:
        if "properties" in obj:
            obj["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "webscale-rl config"
    return schema


def cache_dir() -> Path:
    """User-level cache for heavy downloads and builds (jars, weights, the compiled LLM server)."""
    root = os.environ.get("WEBSCALE_RL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "webscale-rl")
    return Path(root)
