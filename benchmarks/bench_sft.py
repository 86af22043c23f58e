"""SFT throughput in rows of a curriculum per second: pbb's loop vs TRL's SFTTrainer defaults.

Both train the same rows (stage 1 of a quickstart-like arithmetic data set: declarative, direct
and CoT rows) on the same model for one epoch at the same batch size, each templating the rows
as it does by default: TRL applies the chat template as is (SmolLM2's injects its default system
prompt), pbb renders them without a system block (``chat.system_prompt`` unset). rows/s counts
only the training itself (TRL: its ``train_runtime``; pbb: forward, backward and optimizer
steps), not model loading. The ``ratio:`` line is pbb rows/s over TRL rows/s, pbb at its
defaults (``train.packing: auto``).

The ``packed vs padded:`` line trains the same rows twice more, ``train.packing: on`` and
``off`` (issue 24): tokens/s of each (the rows' real tokens, no padding counted) and their ratio.

Usage: python benchmarks/bench_sft.py [--model smollm2-135m-instruct] [--rows 160] [--batch 8]
       [--skip-trl] [--skip-packing]
Goals: ratio >= 2.5 (issue 11, kept by issue 24).
"""

import argparse
import os
import resource
import tempfile

from pbb import data
from pbb.config import CurriculumConfig, TrainConfig
from pbb.dist import device
from pbb.models import load_model, load_tokenizer, resolve_model_path
from pbb.rows.curricula import build
from pbb.training.sft import packing_wanted, train_sft


def rows_for(n: int) -> list[dict]:
    ds = data.generate("arithmetic", behaviours=60, demos=6, test_inputs=3, eval_fraction=0.5,
                       seed=0, progress=False, options={"max_args": 2, "max_statements": 2,
                                                         "min_statements": 1, "loop_prob": 0.0,
                                                         "branch_prob": 0.15})
    return build("stage1_only", ds, CurriculumConfig(declarative_repeats=3))[0].rows[:n]


def trl_rows_per_second(path, tok, rows, batch: int, tmp: str) -> tuple[float, float]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=f"{tmp}/trl", use_cpu=True, num_train_epochs=1,
                     per_device_train_batch_size=batch, save_strategy="no", report_to=[],
                     disable_tqdm=True)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    trainer = SFTTrainer(model=load_model(path), args=args, train_dataset=ds, processing_class=tok)
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    result = trainer.train()
    return len(rows) / result.metrics["train_runtime"], tokens / len(rows)


def pbb_run(path, tok, rows, batch: int, max_batch_tokens, packing: str, out: str) -> dict:
    cfg = TrainConfig(epochs=1, batch_size=batch, save_steps=10**9,
                      max_batch_tokens=max_batch_tokens, packing=packing)
    return train_sft(rows, init=path, base=path, tokenizer=tok, cfg=cfg, stage_dir=out, seed=0,
                     progress=False)


def tokens_per_second(info: dict) -> float:
    return info["rows_per_second"] * info["tokens_per_row"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--rows", type=int, default=160)
    p.add_argument("--batch", type=int, default=8, help="both paths (8 = TRL's default)")
    p.add_argument("--skip-trl", action="store_true", help="measure pbb's loop only")
    p.add_argument("--skip-packing", action="store_true",
                   help="no packed vs padded comparison (pbb at its defaults only)")
    p.add_argument("--max-batch-tokens", default=TrainConfig().max_batch_tokens,
                   type=lambda v: v if v == "auto" else int(v),
                   help="pbb's memory bound per forward pass (auto: pbb's default)")
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = resolve_model_path(a.model)
    tok = load_tokenizer(path)
    rows = rows_for(a.rows)
    with tempfile.TemporaryDirectory() as tmp:
        both = {}
        if not a.skip_packing:  # the default's own run is one of the two
            for mode in ("off", "on"):
                both[mode] = pbb_run(path, tok, rows, a.batch, a.max_batch_tokens, mode,
                                     f"{tmp}/pbb-{mode}")
            info = both["on" if packing_wanted("auto", device()) else "off"]
        else:
            info = pbb_run(path, tok, rows, a.batch, a.max_batch_tokens, "auto", f"{tmp}/pbb")
        ours = info["rows_per_second"]
        split = info["time_split"]
        total = sum(split.values())
        print(f"model {a.model}, {len(rows)} rows, batch {a.batch}, 1 epoch, bf16 {info['bf16']}, "
              f"max_batch_tokens {a.max_batch_tokens} ({info['max_batch_tokens']}), "
              f"packing auto ({'on' if info['packed'] else 'off'})")
        print(f"pbb loop: {ours:.2f} rows/s, {info['tokens_per_row']:.1f} tokens/row "
              f"({info['prompt_tokens_per_row']:.1f} prompt + "
              f"{info['completion_tokens_per_row']:.1f} completion), "
              f"{ours * info['tokens_per_row']:.0f} tokens/s")
        print("pbb time went to: " + ", ".join(f"{k} {v:.1f} s ({100 * v / max(total, 1e-9):.0f}%)"
                                               for k, v in split.items() if v))
        if both:
            on, off = tokens_per_second(both["on"]), tokens_per_second(both["off"])
            print(f"packed vs padded: {on:.0f} vs {off:.0f} tokens/s ({on / off:.2f}x; "
                  f"{both['on']['rows_per_second']:.2f} vs {both['off']['rows_per_second']:.2f} "
                  f"rows/s; packed sequences of {both['on'].get('packed_sequence_tokens')} tokens)")
        if not a.skip_trl:  # pbb's figures are printed first: the TRL run is the long one
            trl, trl_tokens = trl_rows_per_second(path, tok, rows, a.batch, tmp)
            print(f"TRL SFTTrainer defaults: {trl:.2f} rows/s, {trl_tokens:.1f} tokens/row, "
                  f"{trl * trl_tokens:.0f} tokens/s")
            print(f"ratio: {ours / trl:.2f}x")
    print(f"peak RSS of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
