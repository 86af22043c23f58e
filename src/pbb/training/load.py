"""The model a stage starts from, and a finished stage's model for evaluation: full weights,
LoRA adapters (PEFT) on the base, or QLoRA (4-bit base, CUDA only)."""

from __future__ import annotations

from pathlib import Path

from pbb.config import TrainConfig
from pbb.errors import PbbError


def is_adapter(model_dir: Path) -> bool:
    """A LoRA stage saves only its adapter; the base weights are loaded separately."""
    return (model_dir / "adapter_config.json").is_file()


def load_trainable(init: Path | str, base: Path | str, cfg: TrainConfig, options=None):
    """The model a stage starts from: the base model, or the previous stage's result."""
    from pbb.models import ModelOptions, load_model

    options = options or ModelOptions()
    init = Path(init)
    if is_adapter(init):
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
    if is_adapter(model_dir):
        from peft import PeftModel

        return PeftModel.from_pretrained(load_model(base, options=options),
                                         model_dir).merge_and_unload()
    return load_model(model_dir, options=options)
