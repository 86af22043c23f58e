"""Glue for stages trained by a transformers ``Trainer`` (GRPO through TRL): log lines into
``metrics.jsonl``, a quiet progress bar, a stop that checkpoints the step under way, and the
final weights saved atomically."""

from __future__ import annotations

import os
from pathlib import Path

from pbb import clock, dist, interrupts
from pbb.jsonio import append_jsonl, atomic_write_json, read_json
from pbb.store import CHECKPOINT_CLOCK, checkpoint_name
from pbb.training.stages import save_model_atomic


class _MetricsLog:
    """A TrainerCallback that appends every log line to ``metrics.jsonl`` (flushed at once), and
    hands it to ``on_metrics`` (trackers) when given."""

    def __new__(cls, path: Path, on_metrics=None):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                # under a launcher every process logs the same (gathered) values: one writes
                if logs and state.is_world_process_zero:
                    record = {"step": state.global_step, **{
                        k: (round(v, 6) if isinstance(v, float) else v) for k, v in logs.items()}}
                    append_jsonl(path, record)
                    if on_metrics is not None:
                        on_metrics(record)

        return Callback()


def seconds_before(resume: Path | None) -> float:
    """Training time of the lives before this one, as their last checkpoint recorded it."""
    saved = Path(resume) / CHECKPOINT_CLOCK if resume else None
    return float(read_json(saved)["seconds"]) if saved is not None and saved.is_file() else 0.0


class _Clock:
    """A TrainerCallback that writes the training time so far, earlier lives' included, into
    each checkpoint the Trainer saves (``CHECKPOINT_CLOCK``), so a resumed stage's
    ``done.json`` counts them."""

    def __new__(cls, before: float, t0: float):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_save(self, args, state, control, **kw):
                where = Path(args.output_dir) / checkpoint_name(state.global_step)
                if state.is_world_process_zero and where.is_dir():
                    atomic_write_json(where / CHECKPOINT_CLOCK,
                                      {"seconds": before + clock.now() - t0})

        return Callback()


class _FollowShare:
    """A TrainerCallback that takes, before each step, the share of the cores a sweep gives its
    job now (:func:`pbb.dist.follow_share`)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                dist.follow_share()

        return Callback()


class _StopAtStepEnd:
    """A TrainerCallback that ends training at the end of the step a stop came in (held back by
    :func:`pbb.interrupts.deferred` around the training): the step is logged and checkpointed
    (after the other callbacks' ``on_save``, the clock's among them), then the stop is raised,
    so a stop loses no step (up to ``rl.save_steps`` of them before)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            stopping = False

            def on_step_end(self, args, state, control, **kw):
                if interrupts.take_pending():
                    self.stopping = control.should_save = True

            def on_save(self, args, state, control, **kw):
                if self.stopping:
                    raise KeyboardInterrupt

        return Callback()


def _quiet_logs(trainer, progress: bool) -> None:
    """Keep the progress bar but not the Trainer's print of every log dict (metrics.jsonl has them)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        class QuietProgress(ProgressCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                pass

        trainer.add_callback(QuietProgress())


def fit(trainer, *, stage_dir: Path, tokenizer, resume: Path | None, progress: bool):
    """Train (from checkpoint ``resume`` if given), then save the model atomically.

    Shared by SFT and RL stages. Returns the Trainer's result; the caller writes ``done.json``
    with :func:`finish` once it has what it wants to record.
    """
    _quiet_logs(trainer, progress)
    trainer.add_callback(_FollowShare())
    trainer.add_callback(_StopAtStepEnd())  # last: its on_save raises after the others ran
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # a stop waits for the step's end, in one process (with several, each would stop at its
    # own step and the checkpoint's collectives hang)
    with interrupts.deferred(dist.world() == 1):
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if interrupts.take_pending():  # came after the last step's end: its checkpoint is older
        raise KeyboardInterrupt
    deepspeed = getattr(trainer, "is_deepspeed_enabled", False)
    weights = None
    if deepspeed or getattr(trainer, "is_fsdp_enabled", False):
        # sharded (FSDP, ZeRO): every process takes part in gathering the full weights
        weights = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if trainer.is_world_process_zero():  # one writer under a launcher
        save_model_atomic(trainer.accelerator.unwrap_model(trainer.model), tokenizer, stage_dir,
                          weights)
    if deepspeed:
        forget_deepspeed_config()
    return result


def forget_deepspeed_config() -> None:
    """Clear the DeepSpeed config accelerate hands transformers when it prepares an engine.

    Under ZeRO-3 every later ``from_pretrained`` / ``from_config`` in the process (a recall
    copy, the next stage, evaluation) would otherwise build a partitioned model that only an
    engine can run. pbb loads whole models and lets the engine partition them.
    """
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
