"""RL stages: GRPO through TRL's GRPOTrainer, rewarded by the domain's verifier.

The algorithm, as configured by :class:`pbb.config.RLConfig`: for each prompt (an execution
query of a train behaviour) sample ``num_generations`` completions at ``temperature``; score each
with the reward functions of :mod:`pbb.training.rewards` (correctness from the verifier, plus an optional
weighted format reward); a completion's advantage is its reward minus its group's mean, divided
by the group's std (``scale_rewards``); the policy-gradient loss uses PPO-style clipping
(``epsilon``) and is aggregated over tokens as ``loss_type`` says, with a KL penalty towards the
stage's starting model when ``beta`` > 0. Groups whose completions all get the same reward carry
no signal: the share of those (``frac_reward_zero_std``; on correctness alone, format aside,
``frac_correct_zero_std`` in ``done.json``: :func:`correct_signal`) is the number to watch, not
the loss.

Everything else is as in SFT stages (:mod:`pbb.store`): same stage directory, ``metrics.jsonl``
with one line per step (TRL's ``reward``, ``reward_std``, ``frac_reward_zero_std``,
``completions/mean_length``, ``kl`` when ``beta`` > 0, per-function ``rewards/<name>/mean``),
checkpoints for resume, ``done.json`` last. ``rollouts.jsonl`` keeps every sampled completion
with its reward, so what the policy actually wrote can be read afterwards.

Under ``accelerate launch`` TRL's trainer runs data parallel by itself (each process samples and
scores its own share of ``rl.batch_size``, the batch over all processes:
:func:`per_process_batch`); pbb keeps one writer: the main process prepares the stage
directory, and writes the model, the logs (rollouts gathered from every process) and
``done.json``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

from pbb import clock, dist
from pbb.config import RLConfig, TrainConfig
from pbb.errors import PbbError
from pbb.jsonio import append_jsonl, iter_jsonl
from pbb.store import METRICS, ROLLOUTS, TRAINER, finish_stage, start_stage, step_of
from pbb.training import replay
from pbb.training.hf_trainer import _Clock, _MetricsLog, fit, seconds_before
from pbb.training.load import load_trainable
from pbb.training.precision import use_bf16
from pbb.training.rewards import completion_as_text


def per_process_batch(rl: RLConfig, processes: int) -> int:
    """TRL's ``per_device_train_batch_size``: each process's equal share of ``rl.batch_size``,
    which counts completions over all processes (as ``train.batch_size`` counts rows), so a
    config means the same update however many processes run it."""
    if rl.batch_size % processes:
        raise PbbError(f"rl.batch_size: {rl.batch_size} completions (the batch over all "
                       f"processes) do not split evenly over {processes} processes; use a "
                       f"multiple of {processes}")
    return rl.batch_size // processes


def grpo_args(rl: RLConfig, train: TrainConfig, out: Path, seed: int, progress: bool,
              reward_weights: list[float], **overrides):
    import torch
    from trl import GRPOConfig

    kwargs = dict(
        output_dir=str(out), per_device_train_batch_size=per_process_batch(rl, dist.world()),
        gradient_accumulation_steps=rl.grad_accum, num_generations=rl.num_generations,
        learning_rate=rl.learning_rate, warmup_steps=rl.warmup_ratio, num_train_epochs=rl.epochs,
        max_steps=rl.max_steps, lr_scheduler_type="linear", loss_type=rl.loss_type,
        temperature=rl.temperature, top_p=rl.top_p, max_completion_length=rl.max_completion_length,
        beta=rl.beta, epsilon=rl.epsilon, num_iterations=rl.num_iterations,
        scale_rewards=rl.scale_rewards, mask_truncated_completions=rl.mask_truncated_completions,
        reward_weights=reward_weights, logging_steps=1, save_strategy="steps",
        save_steps=rl.save_steps, save_total_limit=1, bf16=use_bf16(train.precision),
        use_cpu=not torch.cuda.is_available(), gradient_checkpointing=train.gradient_checkpointing,
        disable_dropout=True, report_to=[], seed=seed, data_seed=seed, disable_tqdm=not progress,
        dataloader_num_workers=0, log_completions=False,
    )
    if rl.use_vllm:  # TRL's own vLLM options, passed through
        kwargs.update(use_vllm=True, vllm_mode=rl.vllm_mode,
                      vllm_gpu_memory_utilization=rl.vllm_gpu_memory_utilization,
                      **({"vllm_server_base_url": rl.vllm_server_base_url}
                         if rl.vllm_server_base_url else {}))
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


def _logged(reward: Callable, path: Path, trainer_ref: list) -> Callable:
    """Wrap a reward function so every scored completion lands in ``rollouts.jsonl``."""

    @functools.wraps(reward)  # TRL names the metric after the function
    def wrapper(*, prompts, completions, behaviour_id, input, **kw):
        scores = reward(prompts=prompts, completions=completions, behaviour_id=behaviour_id,
                        input=input, **kw)
        step = trainer_ref[0].state.global_step + 1 if trainer_ref else 0
        index = kw.get("row") or [None] * len(completions)  # the prompt's row: its group's key
        rows = [{"step": step, "row": i, "behaviour_id": b, "input": q,
                 "completion": completion_as_text(c), reward.__name__: s}
                for c, b, q, s, i in zip(completions, behaviour_id, input, scores, index)]
        # under a launcher each process scores its own completions: the main one writes them all
        every = dist.gather(rows)
        if every is not None:
            append_jsonl(path, *(r for part in every for r in part))
        return scores

    return wrapper


def reward_trend(metrics_path: Path) -> dict:
    """Mean reward over the first and last tenth of the logged steps (at least one step each)."""
    lines = [r for r in iter_jsonl(metrics_path) if "reward" in r] if metrics_path.is_file() else []
    if not lines:
        return {}
    w = max(1, len(lines) // 10)

    def mean(key: str, part: list[dict]) -> float:
        vals = [r[key] for r in part if key in r]
        return round(sum(vals) / len(vals), 4) if vals else float("nan")

    return {"reward_first": mean("reward", lines[:w]), "reward_last": mean("reward", lines[-w:]),
            "correct_first": mean("rewards/correct/mean", lines[:w]),
            "correct_last": mean("rewards/correct/mean", lines[-w:]),
            "frac_reward_zero_std": mean("frac_reward_zero_std", lines),
            "completion_length": mean("completions/mean_length", lines), "window_steps": w}


def correct_signal(rollouts_path: Path, reward: str) -> dict:
    """The share of GRPO's groups (one prompt's completions at one step) whose completions all
    got one score from ``reward`` (the verifier's correctness), from ``rollouts.jsonl``: TRL's
    ``frac_reward_zero_std`` counts groups equal on the whole weighted reward, so a format term
    that differs between completions hides the groups that carry no correctness signal, which
    is what GRPO learns the task from. Empty where no rollout has the reward. A group is a step
    and the prompt's row in the stage's data set (TRL's sampler puts each row in a generation
    batch once); rollouts written before the row was logged fall back to the behaviour and
    input, which two rows share where a stage trains more than one mode."""
    groups: dict[tuple, set] = {}
    if Path(rollouts_path).is_file():
        for r in iter_jsonl(rollouts_path):
            if reward in r:
                prompt = r["row"] if r.get("row") is not None else \
                    (r["behaviour_id"], json.dumps(r["input"], sort_keys=True))
                groups.setdefault((r["step"], prompt), set()).add(r[reward])
    if not groups:
        return {}
    same = sum(len(scores) == 1 for scores in groups.values())
    return {"frac_correct_zero_std": round(same / len(groups), 4)}


def train_rl_stage(rows: list[dict], *, init: Path | str, base: Path | str, tokenizer,
                   cfg: TrainConfig, rl: RLConfig, rewards: tuple[list[Callable], list[float]],
                   stage_dir: Path, seed: int, progress: bool = True,
                   system_prompt: str | None = None,
                   on_metrics: Callable[[dict], None] | None = None,
                   model_options=None) -> dict:
    """Train one GRPO stage on the prompts of ``rows``; returns (and stores) what was done.

    Prompts go to TRL already rendered by :func:`pbb.rows.chat.prompt_text` (plain-text prompts, which
    TRL does not template again), so rollouts see exactly the chat text of SFT and evaluation.
    Rows tagged ``replay`` are no prompts: an SFT term beside GRPO's loss trains them
    (:mod:`pbb.training.replay`).
    """
    from datasets import Dataset
    from trl import GRPOTrainer

    from pbb.rows.chat import prompt_text

    stage_dir = Path(stage_dir)
    resume = start_stage(stage_dir, logs=(METRICS, ROLLOUTS))
    t0, before = clock.now(), seconds_before(resume)
    resumed_at = step_of(resume) if resume else 0
    model = load_trainable(init, base, cfg, model_options)
    prompts = [r for r in rows if not r.get("replay")]
    replayed = [r for r in rows if r.get("replay")]
    dataset = Dataset.from_list([{"prompt": prompt_text(tokenizer, r["prompt"][0]["content"],
                                                        system_prompt),
                                  "behaviour_id": r["behaviour_id"],
                                  "input": r["input"], "row": i} for i, r in enumerate(prompts)])
    funcs, weights = rewards
    trainer_ref: list = []
    funcs = [_logged(funcs[0], stage_dir / ROLLOUTS, trainer_ref), *funcs[1:]]
    args = grpo_args(rl, cfg, stage_dir / TRAINER, seed, progress, weights)
    each_step = replay.per_step(len(replayed), len(prompts), rl)
    trainer_cls = GRPOTrainer
    if replayed:
        trainer_cls = replay.with_replay(GRPOTrainer, replay.ReplayTerm(
            replayed, tokenizer, per_step=each_step, max_length=cfg.max_length,
            system_prompt=system_prompt))
    trainer = trainer_cls(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                          processing_class=tokenizer,
                          callbacks=[_MetricsLog(stage_dir / METRICS, on_metrics),
                                     _Clock(before, t0)])
    trainer_ref.append(trainer)
    fit(trainer, stage_dir=stage_dir, tokenizer=tokenizer, resume=resume, progress=progress)
    life = clock.now() - t0  # this life's time; ``before``: the lives before it
    return finish_stage(stage_dir, {
        "rows": len(prompts), "steps": trainer.state.global_step, "algorithm": "grpo",
        **({"replayed_rows": len(replayed), "replayed_per_step": each_step} if replayed else {}),
        "completion_tokens_per_step": rl.completion_tokens_per_step,  # a plan scales by it,
        "completions_per_step": rl.completions_per_step,  # and by the tokens they write
        "loss_type": rl.loss_type, **reward_trend(stage_dir / METRICS),
        **correct_signal(stage_dir / ROLLOUTS, funcs[0].__name__),
        "seconds": round(before + life, 1), "seconds_before": round(before, 1),
        "method": cfg.method, "bf16": bool(args.bf16),
        "resumed": resume is not None, "processes": dist.world(),
        # this life's own steps and time: a resumed stage's rate (rates.record_stage)
        "last_life": {"steps": trainer.state.global_step - resumed_at,
                      "seconds": round(life, 1)}})
