"""What every training stage shares: models to start from, precision, the stage directory.

SFT stages train in :mod:`pbb.sft` (a plain loop), RL stages in :mod:`pbb.rl` (TRL's
GRPOTrainer). bf16 autocast is used wherever the hardware supports it (CUDA with bf16, or a CPU
with AVX512-BF16 / AMX), with fp32 master weights.

A stage directory holds ``trainer/`` (checkpoints, deleted when the stage is done), ``model/``
(full weights, or the LoRA adapter), ``metrics.jsonl`` (one line per logged step) and
``done.json`` (written last: its presence means the stage is finished). An interrupted stage
resumes from its last checkpoint.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from pbb import dist
from pbb.config import TrainConfig
from pbb.errors import PbbError
from pbb.jsonio import (
    append_jsonl,
    atomic_write_json,
    iter_jsonl,
    read_json,
    repair_jsonl,
    torn_tail_note,
    write_jsonl,
)

DONE = "done.json"
MODEL = "model"
METRICS = "metrics.jsonl"
console = Console(stderr=True)


@functools.cache
def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matmuls (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, key: str = "train.precision") -> bool:
    """Resolve a ``precision`` setting (auto|bf16|fp32); ``key`` names it in the error."""
    import torch

    if precision == "fp32":
        return False
    supported = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_bf16()
    if precision == "bf16" and not supported:
        raise PbbError(f"{key}: bf16 is not supported on this hardware; use auto or fp32")
    return supported


def release_memory() -> None:
    """Give freed memory back to the OS between stages and evaluations.

    Training allocates tensors of many shapes (every batch has its own width); glibc keeps the
    freed blocks in its arenas, so without a trim a run's resident memory keeps the high-water
    mark of every phase before it.
    """
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim_heap()


def trim_heap() -> None:
    """``malloc_trim(0)``: return the free pages of glibc's heaps to the OS.

    Called between phases and every few optimizer steps. Sampled every 10 s on a 2-core CPU: a
    198-step stage 1 drifted from 5 to 9 GiB resident without it (fragmentation, not live
    tensors); the quickstart's stage 1 with a trim every 10 steps stayed between 4.0 and 7.4
    GiB. The freed pages are faulted in again by the next steps; in 240-row runs of the loop at
    batch 16 that cost did not show above the run-to-run variation.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc():
    """glibc, loaded once; ``None`` where there is no glibc (nothing to trim)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / DONE).is_file()


def _is_adapter(model_dir: Path) -> bool:
    """A LoRA stage saves only its adapter; the base weights are loaded separately."""
    return (model_dir / "adapter_config.json").is_file()


FP32_ATTENTION = "pbb_sdpa_fp32"


def _sdpa_in_fp32(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, computed in fp32 whatever autocast asks for."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    with torch.autocast(device_type=query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                              attention_mask, **kwargs)
    return out.to(query.dtype), weights


@functools.cache
def _register_fp32_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FP32_ATTENTION, _sdpa_in_fp32)
    AttentionMaskInterface.register(FP32_ATTENTION, sdpa_mask)


def fp32_attention_on_cpu(model, enabled: bool) -> Callable[[], None]:
    """Run SDPA attention in fp32 while training on a CPU under bf16 autocast; returns the undo.

    Why: PyTorch's CPU flash-attention kernel is 1.6-2x slower in bf16 than in fp32 (forward +
    backward of one SmolLM2 layer at 16 x 183 tokens, best of 12: 108 vs 55 ms and 65 vs 40 ms
    in two runs of ``benchmarks/bench_attention.py``), and in a profiled training step that
    kernel was ~20% of the time. Only models on SDPA are switched (otherwise, and when not
    ``enabled``, the undo does nothing); call the undo before saving, so that saved configs and
    evaluation see the usual implementation.
    """
    config = getattr(model, "config", None)
    if not enabled or getattr(config, "_attn_implementation", None) != "sdpa":
        return lambda: None
    _register_fp32_attention()
    model.set_attn_implementation(FP32_ATTENTION)
    return lambda: model.set_attn_implementation("sdpa")


def load_trainable(init: Path | str, base: Path | str, cfg: TrainConfig, options=None):
    """The model a stage starts from: the base model, or the previous stage's result."""
    from pbb.models import ModelOptions, load_model

    options = options or ModelOptions()
    init = Path(init)
    if _is_adapter(init):
        from peft import PeftModel

        return PeftModel.from_pretrained(load_model(base, options=options), init, is_trainable=True)
    if cfg.method == "qlora":
        return _qlora(init, cfg, options)
    model = load_model(init, options=options)
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=cfg.lora_targets, task_type="CAUSAL_LM")
        return get_peft_model(model, lora)
    return model


def check_method(method: str) -> None:
    """QLoRA needs CUDA and bitsandbytes: one error before any work where they are missing."""
    if method != "qlora":
        return
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise PbbError("train.method: qlora needs a CUDA GPU (4-bit weights through "
                       "bitsandbytes); there is none here (train.method: lora trains adapters on "
                       "the CPU)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PbbError("train.method: qlora needs the bitsandbytes package (pip install "
                       "'pbb[qlora]')")


def _qlora(init: Path, cfg: TrainConfig, options):
    """LoRA adapters on the base loaded in 4 bits (NF4, bf16 compute), the QLoRA recipe."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(init, quantization_config=quant,
                                                 trust_remote_code=options.trust_remote_code)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=cfg.lora_targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def load_for_eval(model_dir: Path | str, base: Path | str, options=None):
    """A stage's final model ready for generation (LoRA adapters merged into the weights)."""
    from pbb.models import ModelOptions, load_model

    options = options or ModelOptions()
    model_dir = Path(model_dir)
    if _is_adapter(model_dir):
        from peft import PeftModel

        return PeftModel.from_pretrained(load_model(base, options=options),
                                         model_dir).merge_and_unload()
    return load_model(model_dir, options=options)


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


def checkpoint_step(stage_dir: Path) -> int | None:
    """The step of the latest resumable checkpoint of a stage, or None."""
    trainer_dir = Path(stage_dir) / "trainer"
    if not trainer_dir.is_dir():
        return None
    steps = [int(p.name.split("-", 1)[1]) for p in trainer_dir.iterdir()
             if p.name.startswith("checkpoint-") and p.name.split("-", 1)[1].isdigit()
             and ((p / "trainer_state.json").is_file() or (p / "state.json").is_file())]
    return max(steps, default=None)


def keep_logs_until(path: Path, step: int) -> None:
    """Drop log lines of steps after ``step``: they are trained again on resume.

    A torn last line (a kill in the middle of a write) is cut first, and logged; any other bad
    line is an error naming ``path:line`` (not a kill's doing, and skipping it would drop every
    line after it).
    """
    path = Path(path)
    if not path.is_file():
        return
    dropped = repair_jsonl(path)
    if dropped:
        console.print(torn_tail_note(path, dropped), markup=False,
                      highlight=False, soft_wrap=True)
    kept = [rec for rec in iter_jsonl(path) if rec.get("step", 0) <= step]
    write_jsonl(path, kept)  # records come back byte for byte: pbb wrote them with dumps


def fit(trainer, *, stage_dir: Path, tokenizer, resume: Path | None, progress: bool):
    """Train (from checkpoint ``resume`` if given), then save the model atomically.

    Shared by SFT and RL stages. Returns the Trainer's result; the caller writes ``done.json``
    with :func:`finish` once it has what it wants to record.
    """
    _quiet_logs(trainer, progress)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
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


def save_model_atomic(model, tokenizer, stage_dir: Path, state_dict=None) -> Path:
    """Write ``stage_dir/model`` (full weights or a LoRA adapter) through a temporary sibling;
    ``state_dict``: the weights gathered from sharded processes, when the model holds a shard."""
    model_dir = Path(stage_dir) / MODEL
    tmp = Path(stage_dir) / f".{MODEL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)
    return model_dir


def finish_stage(stage_dir: Path, info: dict) -> dict:
    """Mark a stage done (``done.json``, written last) and drop its resume checkpoints.

    Under a launcher the main process writes, and no process goes on before it has.
    """
    if dist.is_main():
        atomic_write_json(Path(stage_dir) / DONE, info)
        shutil.rmtree(Path(stage_dir) / "trainer", ignore_errors=True)
    dist.barrier()
    return info


def start_stage(stage_dir: Path, logs: tuple[str, ...] = (METRICS,)) -> Path | None:
    """Create the stage directory; return the checkpoint an interrupted run left, if any.

    Only complete checkpoints count (one cut short by a kill has no ``trainer_state.json``).
    The stage's per-step ``logs`` are cut back to the checkpoint (a torn last line first, see
    :func:`keep_logs_until`), or removed on a fresh start, so a resumed stage logs every step
    exactly once. Under a launcher the main process prepares the directory and every process
    gets the same checkpoint.
    """
    stage_dir = Path(stage_dir)
    step = None
    if dist.is_main():
        stage_dir.mkdir(parents=True, exist_ok=True)
        step = checkpoint_step(stage_dir)
        for name in logs:
            if step is None:
                (stage_dir / name).unlink(missing_ok=True)
            else:
                keep_logs_until(stage_dir / name, step)
    step = dist.broadcast(step)
    return None if step is None else stage_dir / "trainer" / f"checkpoint-{step}"


def stage_info(stage_dir: Path) -> dict:
    return read_json(Path(stage_dir) / DONE)
