"""Attention forward + backward on the CPU: PyTorch's flash kernel in bf16 vs fp32, and the math path.

Why it exists: training on a CPU under bf16 autocast runs SDPA in bf16, and the CPU flash
kernel is slower in bf16 than in fp32; ``pbb.training.precision.fp32_attention_on_cpu`` switches attention to
fp32 while the rest of the step stays bf16. Shape: one SmolLM2-135M layer (9 heads of 64) at a
stage-1 batch of 16 CoT rows (183 tokens). Prints best and median of ``--repeats`` timings.

Usage: python benchmarks/bench_attention.py [--batch 16] [--tokens 183] [--repeats 12]
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timings(backend, dtype, batch: int, tokens: int, repeats: int) -> list[float]:
    q, k, v = (torch.randn(batch, 9, tokens, 64, dtype=dtype, requires_grad=True) for _ in range(3))
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        with sdpa_kernel([backend]):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o.sum().backward()
        out.append(time.perf_counter() - t)
    return sorted(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tokens", type=int, default=183)
    p.add_argument("--repeats", type=int, default=12)
    a = p.parse_args()
    torch.manual_seed(0)
    for dtype in (torch.bfloat16, torch.float32):
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.MATH):
            t = timings(backend, dtype, a.batch, a.tokens, a.repeats)
            print(f"{str(dtype):15} {backend.name:16} best {1000 * t[0]:6.1f} ms  "
                  f"median {1000 * t[len(t) // 2]:6.1f} ms")


if __name__ == "__main__":
    main()
