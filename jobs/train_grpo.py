"""GRPO on the TRL export with the project's binary reward — a thin recipe around TRL's ``GRPOTrainer``.

Input: the folder written by the TRL export (``webscale_rl.export.to_trl``):

* ``<data>/train.parquet``       — columns ``prompt`` (list of ``{role, content}`` chat messages),
  ``answer`` (ground truth), ``qa_id`` (and ``split`` when the export had one);
* ``<data>/validation.parquet``  — optional, same columns; used when ``--eval-steps`` > 0.

Reward: :func:`webscale_rl.reward.trl_reward` — 1.0 when the completion's final answer (``\\boxed{}``
first) matches ``answer``, else 0.0. TRL hands every non-``prompt`` column to reward functions as a
keyword argument, which is how ``answer`` reaches it (``remove_unused_columns=False``, TRL's default
for GRPO).

Paper settings (Webscale-RL, arXiv 2510.06499): Qwen2.5-3B (here ``Qwen/Qwen2.5-3B-Instruct``), a
short SFT warm-up (NOT part of this recipe: pass the warmed-up checkpoint as ``--model``), then
GRPO with a binary reward on 150K QA pairs, 16 samples per prompt, learning rate 5e-6, batch 256.

TRL counts batches in *completions*: one optimizer step sees
``per_device_batch_size * gradient_accumulation_steps * num_processes`` completions, i.e. that
number divided by ``num_generations`` prompts. The defaults (16 x 16 on one process) give 256
completions = 16 prompts x 16 samples per step. If "batch 256" is read as 256 *prompts* (verl's
``data.train_batch_size`` convention), use e.g. ``--per-device-batch-size 16
--gradient-accumulation-steps 256`` on one GPU, or scale accumulation down by the process count.

Examples::

    # the paper's setup (needs the model locally or a reachable hub, and a GPU):
    accelerate launch jobs/train_grpo.py --data out/trl --output runs/grpo --max-steps 585

    # CPU smoke run with a tiny random model and a tokenizer built from the data (no download):
    python jobs/train_grpo.py --data out/trl --output /tmp/grpo --tiny-random \\
        --num-generations 2 --per-device-batch-size 2 --gradient-accumulation-steps 1 \\
        --max-steps 2 --max-completion-length 8

Requires ``trl`` (with ``transformers``, ``torch``, ``datasets``, ``accelerate``), which are not
dependencies of the Spark ETL itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python jobs/train_grpo.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webscale_rl import reward as reward_mod  # noqa: E402

logger = logging.getLogger("train_grpo")

PAPER = {
    "model": "Qwen/Qwen2.5-3B-Instruct",
    "num_generations": 16,
    "learning_rate": 5e-6,
    "batch_size": 256,
    "train_pairs": 150_000,
}

# Special tokens of the --tiny-random tokenizer, and a ChatML template like Qwen2.5's.
TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_grpo.py",
        description=(
            "GRPO (TRL GRPOTrainer) on the Webscale-RL TRL export with the binary reward "
            "webscale_rl.reward.trl_reward. Paper setup (arXiv 2510.06499): Qwen2.5-3B after a short SFT "
            "warm-up, GRPO on 150K pairs, 16 samples per prompt, lr 5e-6, batch 256."
        ),
        epilog=(
            "Batch: TRL counts completions; per-device-batch-size x gradient-accumulation-steps x processes "
            "= completions per optimizer step (defaults: 16 x 16 = 256 = 16 prompts x 16 samples). "
            "The SFT warm-up is not part of this script: pass its checkpoint as --model."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, type=Path, help="folder with train.parquet (and optional validation.parquet)")
    p.add_argument("--model", default=PAPER["model"], help="HF model id or local path (paper: Qwen2.5-3B after SFT warm-up)")
    p.add_argument("--output", required=True, type=Path, help="output folder (checkpoints, final model, run_summary.json)")
    p.add_argument("--num-generations", type=int, default=PAPER["num_generations"], help="samples per prompt (paper: 16)")
    p.add_argument("--learning-rate", type=float, default=PAPER["learning_rate"], help="AdamW learning rate (paper: 5e-6)")
    p.add_argument("--per-device-batch-size", type=int, default=16, help="completions per device per micro-batch")
    p.add_argument(
        "--gradient-accumulation-steps",
        type=int,
        default=16,
        help="micro-batches per optimizer step (16 x 16 = the paper's 256 on one process)",
    )
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; -1 = --num-train-epochs over the data")
    p.add_argument("--num-train-epochs", type=float, default=1.0, help="used when --max-steps is -1")
    p.add_argument("--max-completion-length", type=int, default=1024, help="max generated tokens per completion")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for rollouts")
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0 = no reference model; TRL default)")
    p.add_argument("--loss-type", default=None, help="TRL loss_type (grpo, dapo, dr_grpo, ...); default: TRL's")
    p.add_argument("--max-train-samples", type=int, default=None, help="use only the first N training rows")
    p.add_argument("--eval-steps", type=int, default=0, help="evaluate on validation.parquet every N steps (0 = never)")
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--logging-steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--use-vllm", action="store_true", help="generate with vLLM (TRL colocate mode; GPU only)")
    p.add_argument("--report-to", default="none", help="Trainer integrations, e.g. 'mlflow' or 'none'")
    p.add_argument(
        "--tiny-random",
        action="store_true",
        help="smoke mode: a randomly initialised 2-layer Qwen2 (hidden 32) and a byte-level BPE tokenizer "
        "trained on the data's own text; nothing is downloaded and --model is ignored",
    )
    return p


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_split(path: Path, limit: int | None = None):
    """A ``datasets.Dataset`` from one export parquet (read with pyarrow: no HF cache involved)."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    table = pq.read_table(path)
    missing = {"prompt", "answer"} - set(table.column_names)
    if missing:
        raise SystemExit(f"{path}: not a TRL export, missing column(s) {sorted(missing)}")
    if limit is not None:
        table = table.slice(0, limit)
    return Dataset(table)


def _dataset_texts(*datasets) -> list[str]:
    texts: list[str] = []
    for ds in datasets:
        if ds is None:
            continue
        for row in ds:
            texts.extend(str(m.get("content") or "") for m in row["prompt"])
            texts.append(str(row["answer"]))
    return texts


# --------------------------------------------------------------------------------------------
# --tiny-random: model + tokenizer built offline
# --------------------------------------------------------------------------------------------


def build_tiny_tokenizer(texts: Sequence[str], vocab_size: int = 512):
    """Byte-level BPE trained on ``texts`` (any string still encodes), with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=TINY_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) or ["hello world"], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(tokenizer, seed: int = 0):
    """A randomly initialised 2-layer Qwen2 causal LM, hidden size 32."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return model


# --------------------------------------------------------------------------------------------
# Recipe
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        import torch
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(f"train_grpo needs trl/transformers/torch/datasets/accelerate: {exc}") from exc

    train_path = args.data / "train.parquet"
    if not train_path.is_file():
        raise SystemExit(f"{train_path} not found (write it with the TRL export)")
    train_ds = load_split(train_path, args.max_train_samples)
    val_path = args.data / "validation.parquet"
    eval_ds = load_split(val_path) if args.eval_steps > 0 and val_path.is_file() else None
    if len(train_ds) == 0:
        raise SystemExit(f"{train_path} has no rows")

    if args.tiny_random:
        tokenizer = build_tiny_tokenizer(_dataset_texts(train_ds, eval_ds))
        model: Any = build_tiny_model(tokenizer, seed=args.seed)
        model_name = "tiny-random-qwen2"
    else:
        tokenizer = None  # TRL loads the model's own tokenizer
        model = args.model
        model_name = args.model

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    config_kwargs: dict[str, Any] = dict(
        output_dir=str(args.output),
        learning_rate=args.learning_rate,
        num_generations=args.num_generations,
        per_device_train_batch_size=args.per_device_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        beta=args.beta,
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        seed=args.seed,
        report_to=args.report_to,
        bf16=bf16,
        use_cpu=not cuda,
        use_vllm=args.use_vllm,
        remove_unused_columns=False,  # `answer` must reach the reward function
        dataloader_num_workers=0,
    )
    if args.loss_type:
        config_kwargs["loss_type"] = args.loss_type
    if not args.tiny_random:
        config_kwargs["model_init_kwargs"] = {"dtype": "bfloat16" if bf16 else "auto"}
    if eval_ds is not None:
        config_kwargs.update(
            eval_strategy="steps",
            eval_steps=args.eval_steps,
            per_device_eval_batch_size=args.per_device_batch_size,
        )
    grpo_args = GRPOConfig(**config_kwargs)

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_mod.trl_reward],  # looked up now, so a test may wrap it
        args=grpo_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
    )
    result = trainer.train()
    trainer.save_model(str(args.output))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(args.output))

    reward_key = "rewards/trl_reward/mean"
    rewards = [h[reward_key] for h in trainer.state.log_history if reward_key in h]
    summary = {
        "model": model_name,
        "train_rows": len(train_ds),
        "eval_rows": len(eval_ds) if eval_ds is not None else 0,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "reward_means": rewards,
        "completions_per_step": args.per_device_batch_size * args.gradient_accumulation_steps * grpo_args.world_size,
        "num_generations": args.num_generations,
        "learning_rate": args.learning_rate,
        "paper": PAPER,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "run_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    logger.info("done: %d steps, reward means %s -> %s", summary["global_step"], rewards, args.output)
    return summary


if __name__ == "__main__":
    main()
