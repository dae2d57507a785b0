"""`webscale-rl explain`: where a document or a QA pair went, read back from the warehouse.

For each stage in order: its verdict on the item (kept in the stage's table, or rejected with the
reason and detail it landed in `rejections`), the run that decided it, the table version that run
wrote the row at and the version of the upstream table it read (from `_lineage`), and for LLM stages
the prompt version and model. A document's path runs through the document stages and then splits
into its QA pairs (generate, check, decontaminate); asked about one pair, only that pair is shown.
Nothing here writes: it reads the stage tables filtered by the id, `rejections` and `_lineage`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import functions as F

from . import lineage
from .config import ConfigError
from .stages.base import Stage
from .stages.order import PIPELINE
from .warehouse import REJECTION_SCHEMA, REJECTIONS, Warehouse

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
KEPT, REJECTED, NOT_RUN = "kept", "rejected", "not run yet"
# What a stage adds that is worth showing (never the text), and the column of its rows that holds its
# prompt version (the `_lineage` row of the run has it too, also for rejected items).
STAGE_FIELDS = {"ingest": ("source",), "filter": ("language",), "profile": ("domain", "personas"), "generate": ("persona", "question", "answer", "answer_type")}
PROMPT_COLUMN = {
    "llm_filter": "llm_filter_version", "profile": "profile_version", "generate": "prompt_version", "check": "check_version", "verify": "verify_version",
}  # fmt: skip


class NotFound(ConfigError):
    """The id is in no table of the warehouse (a usage error: exit code 2)."""


@dataclass
class Step:
    """One stage's verdict on the item, and where it is recorded."""

    stage: str
    verdict: str  # kept | rejected | not run yet
    run_id: str | None = None
    table: str | None = None  # where the row landed: the stage's table, or rejections
    version: int | None = None  # the version of `table` the run wrote it at (None: no lineage record)
    reason: str | None = None
    detail: str | None = None
    duplicate_of: str | None = None
    prompt_version: str | None = None
    model: str | None = None
    read: dict[str, int | None] = field(default_factory=dict)  # what the stage read in that run
    fields: dict[str, Any] = field(default_factory=dict)  # a few columns of the kept row


@dataclass
class PairPath:
    qa_id: str
    steps: list[Step]

    @property
    def outcome(self) -> str:
        return _outcome(self.steps, "in 'qa'")


@dataclass
class Explanation:
    warehouse: str
    doc_id: str
    steps: list[Step]  # the document stages
    pairs: list[PairPath]
    qa_id: str | None = None  # set when a pair was asked about

    @property
    def outcome(self) -> str:
        doc = _outcome(self.steps, "")
        if doc:
            return doc
        if self.qa_id is not None and self.pairs:
            return self.pairs[0].outcome
        if not self.pairs:
            return "no QA pair yet"
        in_qa = sum(1 for p in self.pairs if p.steps[-1].stage == PIPELINE[-1].name and p.steps[-1].verdict == KEPT)
        return f"{in_qa} of {len(self.pairs)} QA pair(s) in 'qa'"

    def to_json(self) -> dict:
        return {**asdict(self), "outcome": self.outcome, "pairs": [{**asdict(p), "outcome": p.outcome} for p in self.pairs]}


def _outcome(steps: list[Step], kept_to_the_end: str) -> str:
    last = steps[-1]
    if last.verdict == REJECTED and not any(s.stage == last.stage and s.verdict == KEPT for s in steps):
        return f"dropped at {last.stage}: {last.reason}"
    if last.verdict == NOT_RUN:
        return f"waiting: stage {last.stage} has not run on it yet"
    return kept_to_the_end


def explain(wh: Warehouse, doc_id: str | None = None, qa_id: str | None = None) -> Explanation:
    """The path of document `doc_id`, or of pair `qa_id` (with its document's path). A stage's
    table is read only when the path reaches it."""
    if (doc_id is None) == (qa_id is None):
        raise ConfigError("explain needs exactly one of --doc-id and --qa-id")
    if not wh.exists(PIPELINE[0].table):
        raise NotFound(f"warehouse {wh.root} has no table '{PIPELINE[0].table}': no run has ingested anything there")
    if qa_id is not None:
        doc_id = _document_of(wh, qa_id)
    rows = _Rows(wh, doc_id)
    if not rows.kept(PIPELINE[0]) and not rows.rejected(PIPELINE[0]):
        raise NotFound(f"no document with doc_id {doc_id!r} in warehouse {wh.root}: it is neither in '{PIPELINE[0].table}' nor rejected at {PIPELINE[0].name}")
    doc_stages = [s for s in PIPELINE if s.input_key == ("doc_id",)]
    pair_stages = [s for s in PIPELINE if s.input_key == ("qa_id",)]
    steps = _path(doc_stages, rows, lambda row: True)
    pairs: list[PairPath] = []
    if steps[-1].verdict == KEPT and pair_stages:
        first = pair_stages[0]  # every pair starts there: kept or rejected
        qa_ids = {r["qa_id"] for r in rows.kept(first) + rows.rejected(first) if r["qa_id"] is not None}
        for q in sorted(qa_ids & {qa_id} if qa_id is not None else qa_ids):
            pairs.append(PairPath(q, _path(pair_stages, rows, lambda row, q=q: row.get("qa_id") == q)))
        if not qa_ids:
            steps.append(Step(first.name, NOT_RUN))
    every = steps + [s for p in pairs for s in p.steps]
    provenance = _provenance(lineage.records(wh, sorted({s.run_id for s in every if s.run_id})))
    for step in every:
        _add_provenance(step, provenance)
    return Explanation(wh.root, doc_id, steps, pairs, qa_id)


def _document_of(wh: Warehouse, qa_id: str) -> str:
    for table in [s.table for s in PIPELINE if "qa_id" in s.writes] + [REJECTIONS]:
        if wh.exists(table):
            row = wh.read(table).filter(F.col("qa_id") == qa_id).select("doc_id").limit(1).collect()
            if row:
                return row[0]["doc_id"]
    raise NotFound(f"no QA pair with qa_id {qa_id!r} in warehouse {wh.root}: it is in no pair table nor in rejections")


class _Rows:
    """The rows of one document, each table read once and only when asked for."""

    def __init__(self, wh: Warehouse, doc_id: str):
        self.wh, self.doc_id = wh, doc_id
        self._kept: dict[str, list[dict]] = {}
        self._rejected: list[dict] | None = None

    def kept(self, stage: Stage) -> list[dict]:
        if stage.name not in self._kept:
            self._kept[stage.name] = self._read(stage.table, ("doc_id", "qa_id", "run_id", *STAGE_FIELDS.get(stage.name, ()), *PROMPT_COLUMN.values()))
        return self._kept[stage.name]

    def rejected(self, stage: Stage) -> list[dict]:
        if self._rejected is None:
            self._rejected = self._read(REJECTIONS, tuple(f.name for f in REJECTION_SCHEMA))
        return [r for r in self._rejected if r["stage"] == stage.name]

    def _read(self, table: str, columns: tuple[str, ...]) -> list[dict]:
        if not self.wh.exists(table):
            return []
        df = self.wh.read(table)
        cols = [c for c in dict.fromkeys(columns) if c in df.columns]
        return [r.asDict() for r in df.filter(F.col("doc_id") == self.doc_id).select(*cols).collect()]


def _provenance(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(run, stage) → what it read, the versions it wrote, its prompt version and model."""
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        entry = out.setdefault((r["run_id"], r["stage"]), {"read": {}, "wrote": {}, "prompt_version": None, "model": None})
        entry["read" if r["role"] in (lineage.READ, lineage.INPUT) else "wrote"][r["table"]] = r["version"]
        entry["prompt_version"] = entry["prompt_version"] or r["prompt_version"]
        entry["model"] = entry["model"] or r["model"]
    return out


def _path(stages: list[Stage], rows: _Rows, mine) -> list[Step]:
    """The steps of one item through `stages`, until it is rejected or reaches a stage not run yet."""
    steps: list[Step] = []
    for stage in stages:
        here = [_kept_step(stage, row) for row in rows.kept(stage) if mine(row)]
        here += [_rejected_step(stage, row) for row in rows.rejected(stage) if mine(row)]
        if not here:
            steps.append(Step(stage.name, NOT_RUN))
            break
        steps.extend(here)
        if not any(s.verdict == KEPT for s in here):
            break
    return steps


def _kept_step(stage: Stage, row: dict) -> Step:
    fields = {c: row[c] for c in STAGE_FIELDS.get(stage.name, ()) if row.get(c) is not None}
    prompt = row.get(PROMPT_COLUMN.get(stage.name, ""))
    return Step(stage.name, KEPT, row["run_id"], stage.table, prompt_version=prompt, fields=fields)


def _rejected_step(stage: Stage, row: dict) -> Step:
    return Step(stage.name, REJECTED, row["run_id"], REJECTIONS, reason=row["reason"], detail=row.get("detail"), duplicate_of=row.get("duplicate_of"))


def _add_provenance(step: Step, provenance: dict) -> None:
    entry = provenance.get((step.run_id, step.stage))
    if entry:
        step.read = dict(entry["read"])
        step.version = entry["wrote"].get(step.table)
        step.prompt_version = step.prompt_version or entry["prompt_version"]
        step.model = entry["model"]


# --- text ----------------------------------------------------------------------------------------


def format_text(e: Explanation) -> str:
    what = f"QA pair {e.qa_id!r} of document {e.doc_id!r}" if e.qa_id else f"document {e.doc_id!r}"
    lines = [f"{what} in warehouse {e.warehouse}: {e.outcome}"]
    lines += [line for s in e.steps for line in _step_lines(s, "  ")]
    for pair in e.pairs:
        first = next((s for s in pair.steps if s.fields.get("question")), None)
        lines.append(f"  pair {pair.qa_id}: {pair.outcome or 'kept'}")
        if first is not None:
            lines.append(f"      Q: {first.fields['question']}")
            lines.append(f"      A: {first.fields.get('answer')}  ({first.fields.get('answer_type')}; persona: {first.fields.get('persona')})")
        lines += [line for s in pair.steps for line in _step_lines(s, "    ")]
    return _CONTROL.sub("?", "\n".join(lines))  # text from documents and the model: no terminal escapes


def _step_lines(s: Step, indent: str) -> list[str]:
    if s.verdict == NOT_RUN:
        return [f"{indent}{s.stage:<14}not run yet"]
    if s.verdict == REJECTED:
        head = f"{indent}{s.stage:<14}REJECTED {s.reason}" + (f": {s.detail}" if s.detail else "")
    else:
        extra = {k: v for k, v in s.fields.items() if k not in ("question", "answer", "answer_type", "persona")}  # those head the pair
        head = f"{indent}{s.stage:<14}kept" + (" (" + "; ".join(f"{k} {_short(v)}" for k, v in extra.items()) + ")" if extra else "")
    where = f"{s.table} v{s.version}" if s.version is not None else f"{s.table} (version not recorded)"
    prov = [f"→ {where}, run {s.run_id}"]
    if s.read:
        prov.append("read " + ", ".join(f"{t} v{v}" if v is not None else f"input {t}" for t, v in s.read.items()))
    if s.prompt_version or s.model:
        prov.append(f"prompt {s.prompt_version or '?'}" + (f", model {s.model}" if s.model else ""))
    return [head, f"{indent}{'':<14}" + "; ".join(prov)]


def _short(value: Any, limit: int = 80) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
