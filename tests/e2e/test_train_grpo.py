"""Smoke tests of jobs/train_grpo.py: two GRPO steps on CPU with a tiny random model (no download).

The training test needs trl (and torch/transformers/datasets/accelerate); it is skipped where trl is
not importable, since those are not dependencies of the Spark ETL.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support.paths import REPO
from webscale_rl import reward as reward_mod
from webscale_rl.export import INSTRUCTION

JOB = REPO / "jobs" / "train_grpo.py"

ROWS = [
    ("What is 2 + 3?", "5"),
    ("What is the capital of France?", "Paris"),
    ("Is water wet?", "yes"),
    ("How many legs does a spider have?", "8"),
]


def _load_job():
    spec = importlib.util.spec_from_file_location("train_grpo_job", JOB)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _write_trl_export(folder: Path) -> Path:
    """train.parquet in the layout export.to_trl writes: chat `prompt`, `answer`, `qa_id`."""
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(
        {
            "prompt": [[{"role": "user", "content": f"{q}\n\n{INSTRUCTION}"}] for q, _ in ROWS],
            "answer": [a for _, a in ROWS],
            "qa_id": [f"qa-{i}" for i in range(len(ROWS))],
        }
    )
    df.to_parquet(folder / "train.parquet", index=False)
    return folder


def test_help_states_paper_settings(capsys):
    job = _load_job()
    with pytest.raises(SystemExit) as exc:
        job.build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for needle in ("2510.06499", "Qwen2.5-3B", "150K", "16 samples per prompt", "lr 5e-6", "batch 256"):
        assert needle in out
    defaults = job.build_parser().parse_args(["--data", "d", "--output", "o"])
    assert defaults.model == "Qwen/Qwen2.5-3B-Instruct"
    assert defaults.num_generations == 16
    assert defaults.learning_rate == 5e-6
    assert defaults.per_device_batch_size * defaults.gradient_accumulation_steps == 256


def test_tiny_random_grpo_two_steps_on_cpu(tmp_path, monkeypatch):
    pytest.importorskip("trl", reason="trl is not installed (the GRPO recipe is optional: pip install trl)")
    job = _load_job()

    seen: list[tuple[int, list[str]]] = []
    real_reward = reward_mod.trl_reward

    @functools.wraps(real_reward)
    def recording_reward(completions, answer, **kwargs):
        rewards = real_reward(completions, answer, **kwargs)
        seen.append((len(completions), list(answer)))
        assert len(rewards) == len(completions)
        return rewards

    monkeypatch.setattr(reward_mod, "trl_reward", recording_reward)

    data = _write_trl_export(tmp_path / "trl")
    out = tmp_path / "run"
    common = [
        "--data",
        str(data),
        "--num-generations",
        "2",
        "--per-device-batch-size",
        "2",
        "--gradient-accumulation-steps",
        "1",
        "--max-steps",
        "2",
        "--max-completion-length",
        "8",
        "--save-steps",
        "1000",
    ]
    summary = job.main([*common, "--output", str(out), "--tiny-random"])

    # finished both steps; the reward ran on every step with the dataset's answers as a kwarg
    assert summary["global_step"] == 2
    assert len(seen) >= 2
    assert all(n == 2 for n, _ in seen)
    answers = {a for _, batch in seen for a in batch}
    assert answers and answers <= {a for _, a in ROWS}
    assert len(summary["reward_means"]) == 2
    assert all(0.0 <= r <= 1.0 for r in summary["reward_means"])

    # wrote a loadable model, its tokenizer (with chat template) and a summary
    for name in ("config.json", "model.safetensors", "tokenizer.json", "run_summary.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "run_summary.json").read_text())["global_step"] == 2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert tok.decode(tok(r"\boxed{42}")["input_ids"]) == r"\boxed{42}"

    # the non-smoke path (--model NAME_OR_PATH) loads that output offline and trains a step
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen.clear()
    out2 = tmp_path / "run2"
    common[common.index("--max-steps") + 1] = "1"
    summary2 = job.main([*common, "--output", str(out2), "--model", str(out)])
    assert summary2["global_step"] == 1 and seen
    assert (out2 / "model.safetensors").is_file()
