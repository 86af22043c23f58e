"""SFT throughput: pbb's training path vs a plain TRL SFTTrainer script with default settings.

Both train on the same rows (stage 1 of a quickstart-like data set) with the same model for one
epoch at TRL's default batch size; tokens/s counts the real (non-padding) tokens of the rows
divided by the trainer's own train_runtime. TRL's defaults on CPU: gradient checkpointing on,
random batches (more padding), bf16 autocast (``use_cpu=True`` is required to run at all).

Usage: python benchmarks/bench_sft.py [--model smollm2-135m-instruct] [--rows 160]
Goal (issue 3): ratio >= 1.5.
"""

import argparse
import tempfile
import time

from pbb import data
from pbb.config import CurriculumConfig, TrainConfig
from pbb.curricula import build
from pbb.models import load_model, load_tokenizer, resolve_model_path
from pbb.train import sft_args


def rows_for(n: int) -> list[dict]:
    ds = data.generate("arithmetic", behaviours=60, demos=6, test_inputs=3, eval_fraction=0.5,
                       seed=0, progress=False, options={"max_args": 2, "max_statements": 2,
                                                         "min_statements": 1})
    return build("stage1_only", ds, CurriculumConfig(declarative_repeats=8))[0].rows[:n]


def train_once(path, tok, rows, args) -> float:
    from datasets import Dataset
    from trl import SFTTrainer

    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    trainer = SFTTrainer(model=load_model(path), args=args, train_dataset=ds, processing_class=tok)
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    result = trainer.train()
    return tokens / result.metrics["train_runtime"]


def main() -> None:
    from trl import SFTConfig

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--rows", type=int, default=160)
    a = p.parse_args()
    path = resolve_model_path(a.model)
    tok = load_tokenizer(path)
    rows = rows_for(a.rows)
    with tempfile.TemporaryDirectory() as tmp:
        plain = SFTConfig(output_dir=f"{tmp}/plain", use_cpu=True, num_train_epochs=1,
                          save_strategy="no", report_to=[], disable_tqdm=True)
        t = time.time()
        base = train_once(path, tok, rows, plain)
        t_plain = time.time() - t
        ours = sft_args(TrainConfig(epochs=1, batch_size=plain.per_device_train_batch_size),
                        f"{tmp}/pbb", 0, False, save_strategy="no")
        t = time.time()
        fast = train_once(path, tok, rows, ours)
        t_ours = time.time() - t
    print(f"model {a.model}, {len(rows)} rows, batch {plain.per_device_train_batch_size}, 1 epoch")
    print(f"plain TRL SFTTrainer defaults: {base:.0f} tokens/s ({t_plain:.0f} s incl. setup)")
    print(f"pbb path (bf16={ours.bf16}, group_by_length, no grad checkpointing): {fast:.0f} tokens/s "
          f"({t_ours:.0f} s incl. setup)")
    print(f"ratio: {fast / base:.2f}x")


if __name__ == "__main__":
    main()
