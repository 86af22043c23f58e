"""Precision and memory for training: bf16 autocast where the hardware has it, fp32 master
weights, heap trims between phases, and SDPA attention kept in fp32 on a CPU."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from pbb.errors import PbbError


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

    Called between phases and every few optimizer steps: without it a long stage's resident
    memory kept growing by heap fragmentation alone (not live tensors), and the freed pages cost
    little to fault in again (the measurements: docs/benchmarks.md, "Heap trimming").
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

    Why: PyTorch's CPU flash-attention kernel is slower in bf16 than in fp32, and it is a large
    share of a training step (``benchmarks/bench_attention.py`` prints the comparison; the
    figures are in docs/benchmarks.md). Only models on SDPA are switched (otherwise, and when not
    ``enabled``, the undo does nothing); call the undo before saving, so that saved configs and
    evaluation see the usual implementation.
    """
    config = getattr(model, "config", None)
    if not enabled or getattr(config, "_attn_implementation", None) != "sdpa":
        return lambda: None
    _register_fp32_attention()
    model.set_attn_implementation(FP32_ATTENTION)
    return lambda: model.set_attn_implementation("sdpa")
