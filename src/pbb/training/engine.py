"""How an SFT stage's model trains: in one process, or under the launcher's setup.

:mod:`pbb.training.sft` runs the same loop everywhere; what differs is how a micro-batch's backward, an
optimizer step, a checkpoint and the saved weights are done. Two engines give it those:

* :class:`Single` (a plain ``pbb run``): the model and optimizer as they are, checkpoints as
  ``model/`` + ``optimizer.pt``.
* :class:`Launched` (``accelerate launch [--config_file F] -m pbb run ...``): accelerate's
  ``Accelerator`` prepares model and optimizer for whatever the launcher's config asks: DDP
  (``configs/accelerate/ddp_gpus.yaml``, and CPU processes over gloo), FSDP
  (``fsdp_gpus.yaml``), DeepSpeed ZeRO-2 or ZeRO-3 (``deepspeed_zero2.yaml``,
  ``deepspeed_zero3.yaml``). Checkpoints are accelerate's ``save_state`` (every process writes
  its shards of weights and optimizer), the stage's model is the gathered full state dict.

The loop keeps its own semantics under every setup: each process takes the rows ``rank::world``
of a batch, the loss is weighted so that the update is the one-process update (DDP, FSDP and
ZeRO all average gradients over processes), gradients are synchronised once, in the last
backward of an optimizer step (``no_sync`` before it; DeepSpeed's accumulation boundary), and
``train.max_grad_norm`` is the clipping threshold (written into DeepSpeed's config, where the
engine clips). fp32 master weights with bf16 autocast stay pbb's (the accelerate configs here
leave ``mixed_precision: 'no'``; DeepSpeed is told to keep the autocast in its forward, which it
otherwise turns off).

accelerate runs FSDP and DeepSpeed on GPUs only; on a CPU the launcher's processes are DDP over
gloo (what the test suite launches). Where parameters are sharded (FSDP, ZeRO-3) no single
process holds the model, so the recall check gathers the full weights into a plain copy on the
main process; LoRA is refused there (its adapters would need the same for a PEFT wrapper).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from pbb import dist
from pbb.errors import PbbError
from pbb.jsonio import atomic_write_json
from pbb.store import CHECKPOINT, MODEL, checkpoint_name
from pbb.store import CHECKPOINT_STATE as STATE
from pbb.training.hf_trainer import forget_deepspeed_config

OPTIMIZER = "optimizer.pt"


def written_by_one_process(checkpoint: Path) -> bool:
    """A :class:`Single` checkpoint (weights in ``model/``, optimizer in ``optimizer.pt``), not
    accelerate's ``save_state`` of a launch."""
    return (Path(checkpoint) / OPTIMIZER).is_file()


def launcher_setup() -> str:
    """What the launcher asked for: ``deepspeed``, ``fsdp``, ``ddp`` or ``single``."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    return "ddp" if dist.launched() else "single"


def check_setup(method: str) -> None:
    """One error before any work for what the launcher's setup cannot train."""
    import torch

    setup = launcher_setup()
    if setup in ("fsdp", "deepspeed") and not torch.cuda.is_available():
        raise PbbError(f"accelerate launch with {setup}: accelerate runs {setup} on GPUs only; "
                       "on CPUs launch data parallel (accelerate launch --multi_gpu "
                       "--num_processes N, gloo)")
    if setup == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise PbbError("accelerate launch with deepspeed: the deepspeed package is not "
                           "installed (pip install 'pbb[deepspeed]')")
    if method != "full" and _sharded_params(setup):
        raise PbbError(f"train.method: {method} under {_setup_name(setup)} (sharded parameters) "
                       "is not supported; use train.method: full, or DDP / ZeRO-2 for adapters")


def _zero_stage() -> int:
    try:
        return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"))
    except ValueError:
        return 2


def _sharded_params(setup: str) -> bool:
    return setup == "fsdp" or (setup == "deepspeed" and _zero_stage() == 3)


def _setup_name(setup: str) -> str:
    return f"DeepSpeed ZeRO-{_zero_stage()}" if setup == "deepspeed" else setup.upper()


def make_engine(model, optimizer, scheduler, *, max_grad_norm: float, batch_size: int,
                bf16: bool):
    """The engine for this process: :class:`Single` in a plain run, else :class:`Launched`."""
    if launcher_setup() == "single":
        return Single(model, optimizer, scheduler)
    return Launched(model, optimizer, scheduler, max_grad_norm=max_grad_norm,
                    batch_size=batch_size, bf16=bf16)


class Single:
    """One process: the model and optimizer as they are."""

    setup = "single"

    def __init__(self, model, optimizer, scheduler):
        self.model = self.inner = model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.params = [p for p in model.parameters() if p.requires_grad]  # what is clipped

    def quiet(self, last: bool):
        """The context of a micro-batch's forward and backward (nothing to skip in one process)."""
        return contextlib.nullcontext()

    def backward(self, loss, last: bool) -> None:
        loss.backward()

    def step(self, max_grad_norm: float):
        """Clip, step, zero the gradients; returns the gradient norm before clipping, as a tensor
        where there is one (left on the device: read it when the metrics are written)."""
        import torch

        norm = torch.nn.utils.clip_grad_norm_(self.params, max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach()

    def save_checkpoint(self, target: Path) -> None:
        """Model and optimizer into ``target`` (a fresh directory); the caller adds state.json."""
        import torch

        self.inner.save_pretrained(str(target / MODEL), safe_serialization=True)
        torch.save({"optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict()}, target / OPTIMIZER)

    def load_checkpoint(self, source: Path) -> None:
        """The optimizer and scheduler of a checkpoint (its weights were loaded with the model)."""
        import torch

        if not written_by_one_process(source):
            raise PbbError(f"{source}: written under accelerate launch; resume it under the "
                           "same launch (or delete its trainer/ folder to restart the stage)")
        opt = torch.load(source / OPTIMIZER, weights_only=False)
        self.optimizer.load_state_dict(opt["optimizer"])
        self.scheduler.load_state_dict(opt["scheduler"])

    @contextlib.contextmanager
    def for_generation(self):
        yield self.inner

    def save_model(self, save) -> None:
        """``save(model, state_dict)`` with the trained model (state_dict None: the model's own)."""
        save(self.inner, None)


class Launched(Single):
    """Under ``accelerate launch``: model and optimizer prepared by accelerate's Accelerator."""

    def __init__(self, model, optimizer, scheduler, *, max_grad_norm: float, batch_size: int,
                 bf16: bool):
        import torch
        from accelerate import Accelerator

        self.setup = launcher_setup()
        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        if self.setup == "deepspeed":
            # pbb's own batches and clipping: the engine is told what they are
            ds = self.acc.state.deepspeed_plugin.deepspeed_config
            ds["train_micro_batch_size_per_gpu"] = batch_size
            ds["gradient_accumulation_steps"] = 1
            ds["gradient_clipping"] = max_grad_norm
            ds.pop("train_batch_size", None)
            # the engine runs its forward outside the caller's autocast unless told to keep it;
            # gradients stay fp32 in the reduction (no module is marked lower-precision safe)
            ds["torch_autocast"] = {"enabled": bf16, "dtype": "bfloat16",
                                    "lower_precision_safe_modules": []}
        self.inner = model
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        if self.setup == "deepspeed":
            forget_deepspeed_config()  # later loads build whole models (zero3_init_flag off)
        self.scheduler = scheduler  # steps the raw optimizer's param groups, shared by the wrappers
        self.acc.register_for_checkpointing(scheduler)
        self.sharded = _sharded_params(self.setup)
        # the prepared model's parameters (FSDP swaps in sharded ones; clipped as one norm)
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def quiet(self, last: bool):
        """Skip the gradient all-reduce in every micro-batch of a step but the last (DDP reads
        the flag in the forward, so forward and backward both run inside)."""
        if last or self.setup == "deepspeed":
            return contextlib.nullcontext()
        return self.acc.no_sync(self.model)

    def backward(self, loss, last: bool) -> None:
        if self.setup == "deepspeed":
            # the engine reduces at its accumulation boundary (the last part of the step)
            self.model.set_gradient_accumulation_boundary(last)
            self.model.backward(loss)
        else:
            loss.backward()

    def step(self, max_grad_norm: float) -> float:
        if self.setup == "deepspeed":
            self.model.step()  # clips (gradient_clipping), steps, zeroes the gradients
            norm = self.model.get_global_grad_norm()
        else:
            norm = self.acc.clip_grad_norm_(self.params, max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
            norm = norm.full_tensor()
        if norm is None:
            return float("nan")
        return norm.detach() if hasattr(norm, "detach") else float(norm)

    def save_checkpoint(self, target: Path) -> None:
        """Every process writes its part (weights, optimizer shards, RNG, scheduler)."""
        self.acc.save_state(str(target))

    def load_checkpoint(self, source: Path) -> None:
        if written_by_one_process(source):
            raise PbbError(f"{source}: written by a one-process run; resume it with a plain "
                           "`pbb run` (or delete its trainer/ folder to restart the stage)")
        self.acc.load_state(str(source))

    @contextlib.contextmanager
    def for_generation(self):
        """The model the main process asks to recall (None on the others). Where no process
        holds the whole model, the weights are gathered (all processes) into a plain copy."""
        if not self.sharded:
            yield self.inner if dist.is_main() else None
            return
        state = self.acc.get_state_dict(self.model)
        copy = None
        if dist.is_main():
            from transformers import AutoModelForCausalLM

            copy = AutoModelForCausalLM.from_config(self.acc.unwrap_model(self.model).config)
            load_whole(copy, state)
            copy.to(dist.device())
        try:
            yield copy
        finally:
            del copy, state

    def save_model(self, save) -> None:
        """Gather the full weights (every process takes part), the main process saves them."""
        state = self.acc.get_state_dict(self.model)
        if dist.is_main():
            save(self.acc.unwrap_model(self.model), state)


def load_whole(model, state: dict) -> None:
    """Load gathered weights into a plain model; every parameter must come from them (a tied
    one through the weight it shares), else one error rather than a recall check on random
    weights."""
    result = model.load_state_dict(state, strict=False)
    model.tie_weights()
    own = model.state_dict()
    loaded = {own[k].data_ptr() for k in own if k in state}
    left = [k for k in result.missing_keys if own[k].data_ptr() not in loaded]
    if left or result.unexpected_keys:
        raise PbbError(f"the gathered weights do not fit the model: missing {left[:3]}, "
                       f"unexpected {list(result.unexpected_keys)[:3]}")


def write_checkpoint(engine, trainer_dir: Path, step: int, state: dict) -> None:
    """``trainer/checkpoint-STEP`` through a temporary sibling; ``state.json`` written last (a
    checkpoint without it is torn and never resumed from); older checkpoints removed. Every
    process calls this (accelerate's save_state writes each process's shards).

    A second checkpoint at a step that has one (an epoch's end right after the step's own
    checkpoint, or right after resuming from it) replaces only ``state.json``, atomically: no
    optimizer step came between, so the weights and optimizer on disk are the current ones.
    Deleting and rewriting the whole folder instead left a window where a kill removed the
    weights but not ``state.json``, and the next life resumed from a checkpoint without weights.
    """
    target = trainer_dir / checkpoint_name(step)
    tmp = trainer_dir / f".{checkpoint_name(step)}.tmp"
    if dist.broadcast((target / STATE).is_file() if dist.is_main() else None):
        if dist.is_main():
            atomic_write_json(target / STATE, state)
        dist.barrier()
        return
    if dist.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    engine.save_checkpoint(tmp)
    dist.barrier()
    if dist.is_main():
        atomic_write_json(tmp / STATE, state)
        shutil.rmtree(target, ignore_errors=True)  # a torn one (no state.json) only
        os.replace(tmp, target)
        for old in trainer_dir.glob(f"{CHECKPOINT}*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
