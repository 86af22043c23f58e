"""benchmarks/bench_gpu.py on a CPU (its tiny mode): every figure it prints parses, is positive
and agrees with the others (MFU recomputed from params and tokens/s, rates from counts and
seconds, the JSON file the same numbers); the shipped shape configs are the published sizes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path("benchmarks/bench_gpu.py")
SHAPES = {  # parameters (tied embeddings once) and without the embeddings, as published
    "qwen3-0.6b": (596_049_920, 440_467_456),  # model card: 0.6B, 0.44B non-embedding
    "llama-3.2-1b": (1_235_814_400, 973_146_112),  # 1.23B
    "qwen3-1.7b": (1_720_574_976, 1_409_410_048),  # model card: 1.7B, 1.4B non-embedding
}
TINY_SHAPE = ["--set", "num_hidden_layers=1", "--set", "hidden_size=64", "--set",
              "intermediate_size=128", "--set", "num_attention_heads=2", "--set",
              "num_key_value_heads=1", "--set", "head_dim=32"]


def parse(stdout: str) -> dict[str, list[dict]]:
    """``KIND key=value ...`` lines by kind, values as numbers where they are numbers."""
    out: dict[str, list[dict]] = {}
    for line in stdout.splitlines():
        kind, *fields = line.split()
        if kind not in ("bench_gpu", "sft", "generate") or not all("=" in f for f in fields):
            continue
        rec = {}
        for f in fields:
            k, v = f.split("=", 1)
            try:
                rec[k] = int(v)
            except ValueError:
                try:
                    rec[k] = float(v)
                except ValueError:
                    rec[k] = v
        out.setdefault(kind, []).append(rec)
    return out


def run_bench(tmp_path, *args: str) -> tuple[dict, dict, str]:
    r = subprocess.run([sys.executable, str(BENCH), "--tiny", "--device", "cpu", "--peak-tflops",
                        "123", "--json", str(tmp_path / "b.json"), *args],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return parse(r.stdout), json.loads((tmp_path / "b.json").read_text()), r.stdout


def check_figures(figs: dict, saved: dict) -> None:
    (head,) = figs["bench_gpu"]
    n, peak = head["params"], head["peak_tflops"]
    assert n > 0 and peak == 123 and head["device"] == "cpu"
    assert figs["sft"] and figs["generate"]
    for s in figs["sft"]:
        for k in ("tokens_per_s", "rows_per_s", "mfu_pct", "seconds", "peak_mem_gib",
                  "tokens_per_step", "rows_per_step", "forward_passes_per_step"):
            assert s[k] > 0, (k, s)
        assert s["mfu_pct"] == pytest.approx(100 * 6 * n * s["tokens_per_s"] / (peak * 1e12), rel=1e-3)
        assert s["tokens_per_s"] == pytest.approx(s["tokens_per_step"] * s["steps"] / s["seconds"], rel=1e-2)
        assert s["rows_per_s"] == pytest.approx(s["rows_per_step"] * s["steps"] / s["seconds"], rel=1e-3)
        assert s["step_ms"] == pytest.approx(1000 * s["seconds"] / s["steps"], rel=1e-3)
        assert 0 <= s["padding_pct"] < 100 and s["loss_first"] > 0
    for g in figs["generate"]:
        for k in ("completions_per_s", "tokens_per_s", "seconds", "new_tokens", "peak_mem_gib"):
            assert g[k] > 0, (k, g)
        assert g["completions_per_s"] == pytest.approx(g["prompts"] / g["seconds"], rel=1e-3)
        assert g["tokens_per_s"] == pytest.approx(g["new_tokens"] / g["seconds"], rel=1e-3)
        assert g["prompts"] <= g["new_tokens"] <= g["prompts"] * g["max_new_tokens"]
        assert g["counted"] == "generate_output"  # counted from model.generate's output
    # the JSON holds the printed numbers (printed to 6 significant digits)
    for kind in ("sft", "generate"):
        for printed, stored in zip(figs[kind], saved[kind], strict=True):
            for k, v in printed.items():
                if isinstance(v, (int, float)) and not isinstance(stored[k], (bool, str)):
                    assert stored[k] == pytest.approx(v, rel=1e-5), (kind, k)
                else:
                    assert str(stored[k]) == str(v), (kind, k)


@pytest.mark.slow
def test_the_tiny_bench_prints_consistent_positive_figures(tmp_path):
    figs, saved, out = run_bench(tmp_path, "--gen-precision", "fp32")
    check_figures(figs, saved)
    assert figs["bench_gpu"][0]["model"] == "tiny-random"
    try:
        from pbb.evaluation.generation import why_not_static
    except ImportError:
        engines = ["hf"]
    else:  # the slot engine too, where this pbb has it (tiny-random is a model it runs)
        engines = ["hf", "static"]
        assert why_not_static is not None
    assert [(g["engine"], g["precision"]) for g in figs["generate"]] == [(e, "fp32") for e in engines]
    if len(engines) == 2:  # greedy fp32 on a CPU: both engines generate the same tokens
        assert figs["generate"][0]["new_tokens"] == figs["generate"][1]["new_tokens"]
    modes = [s["mode"] for s in figs["sft"]]
    try:
        from pbb.training import packing  # noqa: F401
    except ImportError:
        assert modes == ["padded"] and "sft mode=packed skipped" in out
    else:  # same rows, same weights (lr 0): packed and padded compute the same losses
        assert modes == ["padded", "packed"]
        padded, packed = figs["sft"]
        assert packed["tokens_per_step"] == padded["tokens_per_step"]  # the same rows
        assert packed["loss_first"] == pytest.approx(padded["loss_first"], rel=2e-3)  # bf16 rounding
        assert packed["loss_last"] == pytest.approx(padded["loss_last"], rel=2e-3)


@pytest.mark.slow
def test_the_bench_builds_a_shipped_shape_with_random_weights(tmp_path):
    """The --shape path (transformers' from_config on a shipped JSON), shrunk by --set to run in
    seconds: a Qwen3 model, its vocabulary the published one."""
    figs, saved, _ = run_bench(tmp_path, "--shape", "configs/models/qwen3-0.6b.json", *TINY_SHAPE,
                               "--sft-modes", "padded")
    check_figures(figs, saved)
    head = figs["bench_gpu"][0]
    assert head["model"] == "qwen3-0.6b-shape"
    assert head["params"] == 151936 * 64 + 1 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64 + 2 * 32) + 64


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shipped_shapes_are_the_published_sizes(name):
    import torch
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(BENCH.parent))
    try:
        from bench_gpu import load_shape
    finally:
        sys.path.remove(str(BENCH.parent))
    cfg, label = load_shape(Path(f"configs/models/{name}.json"), {})
    assert label == f"{name}-shape" and cfg.tie_word_embeddings
    with torch.device("meta"):  # no memory, no weights
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert (n, n - model.get_input_embeddings().weight.numel()) == SHAPES[name]
