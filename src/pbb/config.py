"""Run configuration: YAML validated by pydantic, with ``--set key=value`` overrides.

A bad key or value is one clear error naming its dotted path, raised before any work starts.
The resolved config (defaults filled in) is written to the run directory as ``config.yaml``.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Literal, get_args, get_origin

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pbb.errors import PbbError
from pbb.jsonio import read_text
from pbb.models import DEFAULT_MODEL

MODES = ("recall", "direct", "cot", "in_context")
Mode = Literal[MODES]  # type: ignore[valid-type]
Kind = Literal["declarative", "direct", "cot", "in_context"]
Which = Literal["train", "eval", "all"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# What a setting changes, declared once, on its field: ``json_schema_extra=_key(ROLE)``. A field
# that declares nothing takes its section's role, and a section that declares nothing is ALWAYS:
# a new setting is part of every stage's key until it is declared otherwise. :func:`key_fields`
# turns the declarations into what :func:`pbb.store.stage_key` hashes; tests/test_stage_key.py holds
# the table of every setting and checks each against the key.

#: changes what a stage learns: hashed into the key of every stage
ALWAYS = True
#: changes how a stage runs (memory, speed, checkpoints, logging, where a server is) or what a run
#: does besides training (evaluation, curricula planned), not what a stage learns: in no key
NEVER = False
#: read by the stopping rule's recall check (:func:`pbb.experiments.run.recall_checker`), which decides when a
#: stage stops: hashed into the key of stages with a stopping rule (``recall_target``) only
STOPPING_RULE = "stopping_rule"
#: a setting of RL stages: hashed into the key of RL stages only
RL_STAGE = "rl_stage"
#: makes the stages themselves (their rows, trainer and own training settings, which the key
#: hashes through the stage): not hashed by itself
THROUGH_STAGE = "through_stage"
ROLES = (ALWAYS, NEVER, STOPPING_RULE, RL_STAGE, THROUGH_STAGE)


def _key(role: bool | str, items: dict[str, bool | str] | None = None) -> dict:
    """A field's declaration (its ``json_schema_extra``); ``items``: roles of single entries of a
    dict-valued field, which override the field's own for those entries."""
    assert role in ROLES and all(r in ROLES for r in (items or {}).values())
    return {"stage_key": role, **({"stage_key_items": items} if items else {})}


class DataConfig(_Strict):
    """Which data set to build (see ``pbb data generate``) or reuse (``path``)."""

    domain: str = Field("arithmetic", description="arithmetic, algorithms, ciphers, grammars "
                        "or imported (a data set made by `pbb data import`, through data.path)")
    behaviours: int = Field(100, ge=2, le=1_000_000, description="behaviours (functions, "
                            "ciphers, grammars) in the data set, train and eval together")
    demos: int = Field(8, ge=1, le=100_000, description="demonstrations per behaviour")
    test_inputs: int = Field(4, ge=1, le=100_000, description="test inputs per behaviour")
    eval_fraction: float = Field(0.5, gt=0, lt=1, description="share of the behaviours that "
                                 "are eval behaviours (seen as instructions only)")
    options: dict = Field(default_factory=dict, description="domain knobs")
    path: str | None = Field(None, description="use an existing data set directory instead")
    instruction_format: Literal["code", "nl"] = Field(
        "code", description="how training and prompts show instructions: the code, or its "
        "English description (arithmetic: generated from the code, exactly equivalent)")


class PartConfig(_Strict):
    """One ingredient of a custom stage: rows of one kind for one group of behaviours."""

    kind: Kind = Field(description="row kind: declarative (the instruction), direct or cot "
                       "(demonstrations), in_context (a demonstration with the instruction in "
                       "its prompt: trains the in-context upper bound)")
    behaviours: Which = Field(description="which behaviours' rows: train, eval or all")
    repeats: int = Field(1, ge=1, description="paraphrased copies per behaviour (declarative)")
    demos: int | None = Field(None, ge=1, description="demonstrations per behaviour (execution)")


class StageTrainConfig(_Strict):
    """Training settings of one stage, over ``train``'s (unset keys keep ``train``'s value).

    ``recall_target`` turns on the stopping rule of declarative stages: train whole epochs,
    measure after each how many of the stage's instructions the model recalls exactly (greedy,
    from a declarative prompt), and stop once that share reaches the target, or after
    ``max_epochs``. The learning-rate schedule then spans ``max_epochs``.
    """

    epochs: float | None = Field(None, gt=0, description="train.epochs for this stage")
    learning_rate: float | None = Field(None, gt=0, lt=1,
                                        description="train.learning_rate for this stage")
    max_steps: int | None = Field(None, ge=-1, description="train.max_steps for this stage")
    warmup_ratio: float | None = Field(None, ge=0, lt=1,
                                       description="train.warmup_ratio for this stage")
    batch_size: int | None = Field(None, ge=1, description="train.batch_size for this stage")
    recall_target: float | None = Field(None, gt=0, le=1, description="stop at this recall")
    max_epochs: int | None = Field(None, ge=1, description="cap of the stopping rule")

    @model_validator(mode="after")
    def _rule_complete(self) -> StageTrainConfig:
        if (self.recall_target is None) != (self.max_epochs is None):
            raise ValueError("recall_target and max_epochs go together (the stopping rule needs "
                             "both: a threshold and a cap)")
        return self


class StageConfig(_Strict):
    name: str = Field(description="the stage's name (its directory is NAME-KEY)")
    train: StageTrainConfig | None = Field(
        None, description="this stage's training settings over `train` (and train.stages)")
    parts: list[PartConfig] = Field(min_length=1, description="the row groups the stage trains on")
    replay: float = Field(0.0, ge=0, le=1, description="share of the previous stage's rows "
                          "mixed in (an rl stage trains them by an SFT loss beside GRPO's: "
                          "pbb.training.replay)")
    # `trainer`, not `method`: `train.method` already means full finetuning vs LoRA. The old key
    # is still read (configs written before the rename), never written.
    trainer: Literal["sft", "rl"] = Field(
        "sft", validation_alias=AliasChoices("trainer", "method"),
        description="sft: train on the gold completions; rl: GRPO on the prompts (settings "
        "in `rl`), rewarded by the domain's verifier")

    @model_validator(mode="after")
    def _rl_needs_queries(self) -> StageConfig:
        if self.trainer == "rl":
            if any(p.kind == "declarative" for p in self.parts):
                raise ValueError("an rl stage takes execution parts only (direct or cot): a "
                                 "declarative row has no answer to reward")
        return self


class CurriculumConfig(_Strict):
    """Shared knobs of the built-in curricula."""

    declarative_repeats: int = Field(4, ge=1, description="paraphrased copies of each instruction")
    eval_declarative_repeats: int | None = Field(
        None, ge=1, description="copies of each *eval* behaviour's instruction (default: "
        "declarative_repeats). Eval behaviours are known from these rows alone, so they need "
        "more than train behaviours, whose CoT rows recite the instruction too")
    demo_modes: list[Literal["direct", "cot"]] = Field(
        default_factory=lambda: ["direct", "cot"],
        description="each demonstration becomes one row per mode (stage 1 trains both test modes)")
    replay: float = Field(0.0, ge=0, le=1, description="stage-2 share of replayed stage-1 rows")
    demos_only_k: int = Field(3, ge=1, description="demonstrations per eval behaviour (demos_only)")
    rl_warmup_demos: int = Field(
        0, ge=0, description="retroactive/rl_only: an SFT warm start on this many demonstrations "
        "per train behaviour before the RL stage (0: RL alone, as in the paper). A small model "
        "that has seen only declarative rows writes no answer line, so RL gets no reward signal")
    activation_replay: float = Field(
        0.0, ge=0, lt=1, description="retroactive/retroactive_sft: share of stage 2 (activation) "
        "that is stage 1's rows replayed, the same rows for both: SFT trains them with the "
        "prompts' demonstrations; GRPO by an SFT loss beside its own, a step's share of them "
        "each step (pbb.training.replay). Keeps the stored code that stage 2 erodes")
    custom: dict[str, list[StageConfig]] = Field(default_factory=dict,
                                                 description="user-defined curricula by name")

    @field_validator("custom")
    @classmethod
    def _names_and_first_stages(cls, custom: dict) -> dict:
        for name in custom:  # NAME@STAGE names a cut curriculum (RunConfig.curricula)
            if CUT in name:
                raise ValueError(f"curriculum name {name!r}: {CUT!r} is kept for NAME{CUT}STAGE")
        for name, stages in custom.items():  # replay takes the previous stage's rows
            if stages and stages[0].replay:
                raise ValueError(f"curriculum {name!r}: its first stage {stages[0].name!r} has "
                                 f"replay {stages[0].replay} but no stage before it to replay")
        return custom


class TrainConfig(_Strict):
    """SFT settings (the plain loop of :mod:`pbb.training.sft`); ``stages`` overrides them per stage."""

    method: Literal["full", "lora", "qlora"] = Field(
        "full", description="full finetuning; LoRA adapters (PEFT); or QLoRA: LoRA on a 4-bit "
        "base (bitsandbytes, CUDA only)")
    learning_rate: float = Field(1e-4, gt=0, lt=1, description="peak learning rate (AdamW)")
    epochs: float = Field(1.0, gt=0, description="passes over a stage's rows (fractions allowed)")
    max_steps: int = Field(-1, ge=-1, description="cap on optimizer steps per stage (-1: none)")
    batch_size: int = Field(16, ge=1, description="rows per optimizer step over all "
                            "processes (the global batch)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_batch_tokens: int | Literal["auto"] = Field(
        "auto", json_schema_extra=_key(NEVER), description="memory bound: a batch is run in "
        "parts (forward passes) of at most this many tokens (padded, or packed: see packing), "
        "its loss still the token mean over the whole batch. auto: 1024 on a CPU, 8192 on a "
        "GPU. Changes peak memory and speed, not the update")
    packing: Literal["auto", "on", "off"] = Field(
        "auto", json_schema_extra=_key(NEVER), description="pack the rows of an optimizer step "
        "end to end into sequences of at most max_batch_tokens tokens (position ids restart at "
        "every row, so no row attends to another: pbb.training.packing) instead of right-padding each "
        "batch: no padding, fewer forward passes. The same update up to float rounding. auto: "
        "on with CUDA, off on a CPU (measured no faster there: the padded path wastes little "
        "on length-grouped rows); a model that does not keep packed rows apart trains padded "
        "(auto) or stops with an error (on)")
    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(
        default_factory=list, json_schema_extra=_key(NEVER), description="experiment trackers "
        "(pbb.experiments.tracking): every stage's metrics, SFT and RL, and the final accuracies")
    max_length: int = Field(768, ge=16, description="longest row in tokens (a longer prompt "
                            "is an error; a longer completion is cut)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps with a "
                                "linear warmup")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="after warmup: cosine or linear decay to min_lr_ratio, or constant")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the decay's floor, as a share "
                                "of learning_rate")
    adam_beta2: float = Field(0.98, gt=0, lt=1, description="AdamW's beta2")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping threshold")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay")
    lora_r: int = Field(16, ge=1, description="LoRA rank (method: lora or qlora)")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (alpha / r)")
    lora_targets: str | list[str] = Field("all-linear", description="modules LoRA adapts "
                                          "(PEFT's target_modules)")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="compute precision of training, SFT and RL stages alike: bf16 = "
        "bf16 autocast over the weights (which stay in model_dtype), fp32 = no autocast; auto: "
        "bf16 where the hardware supports it, else fp32. The recall checks of training generate "
        "under it too")
    save_steps: int = Field(50, ge=1, json_schema_extra=_key(NEVER),
                            description="checkpoint every N steps (for resume; a stop "
                            "checkpoints its step too)")
    group_by_length: bool = Field(True, description="batch rows of similar length (less padding)")
    gradient_checkpointing: bool = Field(
        False, json_schema_extra=_key(NEVER), description="recompute activations in the "
        "backward instead of keeping them: less memory, more time, the same update")
    recall_after_stage: bool = Field(
        True, json_schema_extra=_key(NEVER), description="after every SFT stage with "
        "declarative rows, measure recall of the instructions it taught (logged in the stage's "
        "metrics.jsonl and done.json): time spent in training, not a change to what it learns "
        "(stages with a stopping rule measure recall after every epoch anyway). Read from "
        "eval.recall_after_stage in configs written before it moved here")
    stages: dict[str, StageTrainConfig] = Field(
        default_factory=dict, json_schema_extra=_key(THROUGH_STAGE), description="per-stage "
        "settings by stage name (stage1, stage2, mixture, exposure, activation_sft, ...; custom "
        "stages by their name); they are part of the key of the stage they name")

    @field_validator("max_batch_tokens", mode="before")
    @classmethod
    def _tokens_or_auto(cls, v):
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < 16):
            raise ValueError(f"{v!r}: an integer of at least 16 tokens, or auto")
        return v

    @field_validator("packing", mode="before")
    @classmethod
    def _on_off(cls, v):
        # YAML reads a bare on / off (or true / false) as a boolean
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    def for_stage(self, name: str, extra: StageTrainConfig | None = None) -> TrainConfig:
        """This config with stage ``name``'s overrides applied (``extra`` last)."""
        update: dict = {}
        for over in (self.stages.get(name), extra):
            if over is not None:
                update.update(over.model_dump(exclude_none=True))
        update.pop("recall_target", None)
        update.pop("max_epochs", None)
        return self.model_copy(update={**update, "stages": {}})

    def stopping_rule(self, name: str, extra: StageTrainConfig | None = None) -> tuple[float, int] | None:
        """(recall_target, max_epochs) of stage ``name``, or None."""
        rule = None
        for over in (self.stages.get(name), extra):
            if over is not None and over.recall_target is not None:
                rule = (over.recall_target, over.max_epochs)
        return rule


#: GRPO loss variants that need no further settings (TRL's ``GRPOConfig.loss_type``)
LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo")


class RLConfig(_Strict):
    """Settings of RL stages (GRPO through TRL's GRPOTrainer), used by ``retroactive``/``rl_only``.

    Each prompt is sampled ``num_generations`` times (a *group*); a completion's advantage is its
    reward minus the group mean (scaled by the group std unless ``scale_rewards: none``). Prompts
    are the execution queries of train behaviours in ``curriculum.demo_modes``; the reward is
    the domain's verifier on the extracted answer plus ``format_weight`` x a format reward.
    ``batch_size`` counts completions over all processes, as ``train.batch_size`` counts rows:
    one optimizer step sees ``batch_size * grad_accum`` completions, ``batch_size * grad_accum /
    num_generations`` prompts, however many processes share them. Method (full/LoRA),
    precision and checkpointing come from ``train``.
    """

    loss_type: Literal[LOSS_TYPES] = Field(  # type: ignore[valid-type]
        "dapo", description="TRL loss aggregation; dapo normalises by active tokens (no length bias)")
    num_generations: int = Field(4, ge=1, description="group size: completions per prompt")
    batch_size: int = Field(
        8, ge=1, description="completions per micro-batch over all processes (the global batch, "
        "as train.batch_size counts rows); under a launcher of N processes each takes "
        "batch_size / N, so it must be a multiple of N")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    learning_rate: float = Field(5e-6, gt=0, lt=1, description="peak learning rate of RL stages")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the steps with a "
                                "linear warmup")
    epochs: float = Field(1.0, gt=0, description="passes over the prompts")
    max_steps: int = Field(-1, ge=-1, description="cap on optimizer steps (-1: none)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of the rollouts")
    max_completion_length: int = Field(160, ge=1, description="tokens per sampled completion")
    beta: float = Field(0.0, ge=0, description="KL coefficient to the stage's start model (0: no "
                        "reference model, no KL term; KL is logged whenever beta > 0)")
    epsilon: float = Field(0.2, gt=0, description="clipping range of the policy ratio")
    num_iterations: int = Field(1, ge=1, description="optimisation passes per generated batch")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the std of the group, of the batch, or not")
    mask_truncated_completions: bool = Field(
        False, description="leave completions cut at max_completion_length out of the loss")
    format_weight: float = Field(0.0, ge=0, description="weight of the format reward (1 when an "
                                 "answer line can be extracted); 0 = correctness only")
    save_steps: int = Field(10, ge=1, json_schema_extra=_key(NEVER), description="checkpoint "
                            "every N steps (for resume; a stop checkpoints its step too); RL "
                            "steps are slow, so more often than SFT")
    use_vllm: bool = Field(False, description="rollouts generated by vLLM through TRL (GPU only; "
                           "another sampler, so other rollouts: part of the key)")
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", json_schema_extra=_key(NEVER), description="colocate: vLLM in the training "
        "process; server: a `trl vllm-serve` already running (vllm_server_base_url)")
    vllm_server_base_url: str | None = Field(None, json_schema_extra=_key(NEVER),
                                             description="URL of the running `trl vllm-serve`")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, json_schema_extra=_key(NEVER),
                                               description="colocate mode")

    @property
    def completions_per_step(self) -> int:
        """The completions one optimizer step samples and trains on, over all processes."""
        return self.batch_size * self.grad_accum

    @property
    def completion_tokens_per_step(self) -> int:
        """A step's budget of completion tokens (its completions x ``max_completion_length``):
        what a GRPO stage records its rate by and a plan scales it with."""
        return self.completions_per_step * self.max_completion_length

    @model_validator(mode="after")
    def _trl_accepts(self) -> RLConfig:
        # The combinations GRPOConfig rejects, caught here with the keys a user writes.
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2: GRPO's advantage is a "
                             "completion's reward relative to the others of its group")
        # batch_size is global, so this holds or fails whatever the number of processes: a
        # config reloads anywhere; its split over processes is checked when a run starts
        # (pbb.training.grpo.per_process_batch)
        effective = self.completions_per_step
        if effective % self.num_generations:
            raise ValueError(
                f"batch_size x grad_accum = {self.batch_size} x {self.grad_accum} = {effective} "
                f"completions is not divisible by num_generations {self.num_generations}; every "
                "group must fit in one generation batch")
        return self


#: the built-in curricula, by name (:data:`pbb.rows.curricula.CURRICULA` implements them; named here
#: so that a config is checked without importing the code that builds them)
BUILTIN_CURRICULA = ("proactive", "mixture", "stage1_only", "stage2_only", "demos_only",
                     "retroactive", "retroactive_sft", "rl_only", "untuned")
#: the built-in curricula with an RL stage (the ones that use the ``rl`` settings)
RL_CURRICULA = ("retroactive", "rl_only")
#: ``NAME@STAGE``: curriculum NAME cut after its stage STAGE (:func:`split_cut`)
CUT = "@"


def split_cut(name: str) -> tuple[str, str | None]:
    """``"retroactive@activation_warmup"`` -> ``("retroactive", "activation_warmup")``; a name
    without a cut -> ``(name, None)``. A cut curriculum trains its curriculum's stages up to and
    including STAGE (the same stages, so the same keys: they are trained once and shared) and
    evaluates the model there: what a curriculum's model can do before its later stages (a
    warm start before RL) as one more row of the same run."""
    base, sep, stage = name.partition(CUT)
    return base, (stage if sep else None)


def check_curriculum_name(name: str, custom) -> None:
    """Raise ValueError unless ``name`` is a built-in curriculum, one of ``custom``'s, or one of
    those cut after a stage (``NAME@STAGE``; the stage is checked when the curriculum is built,
    since the built-in curricula's stages depend on the settings)."""
    base, stage = split_cut(name)
    known = set(BUILTIN_CURRICULA) | set(custom)
    if base not in known:
        raise ValueError(f"unknown curriculum {base!r}; known: {', '.join(sorted(known))} "
                         f"(and NAME{CUT}STAGE: NAME cut after its stage STAGE)")
    if stage is not None and (not stage or CUT in stage):
        raise ValueError(f"curriculum {name!r}: NAME{CUT}STAGE names one stage after one {CUT}")

DEFAULT_MAX_NEW_TOKENS = {"recall": 192, "direct": 24, "cot": 384, "in_context": 320}


class OpenAIBackendConfig(_Strict):
    """An OpenAI-compatible server for ``eval.backend: openai`` (vLLM's ``vllm serve``, SGLang,
    llama.cpp's server, a hosted API)."""

    base_url: str | None = Field(None, description="default: $OPENAI_BASE_URL, else OpenAI's")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable with the key "
                             "(a local server takes any; 'none' is sent when it is unset)")
    models: dict[str, str] = Field(
        default_factory=dict, description="curriculum -> the served model that was trained with "
        "it (e.g. a hosted finetune); `untuned` defaults to `model: openai:NAME`'s NAME")
    concurrency: int = Field(8, ge=1, description="requests in flight")
    max_retries: int = Field(4, ge=0, description="per request, with backoff (the client's)")
    timeout: float = Field(120.0, gt=0, description="seconds per request")


class VLLMBackendConfig(_Strict):
    """``eval.backend: vllm``: pbb serves each model with ``vllm serve`` while it is evaluated."""

    executable: str = Field("vllm", description="the vLLM command (a path, or found on PATH)")
    port: int = Field(0, ge=0, lt=65536, description="0: a free port")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="share of the GPU's "
                                          "memory vLLM may take")
    max_model_len: int | None = Field(None, ge=16, description="vLLM's context length "
                                      "(null: the model's)")
    extra_args: list[str] = Field(default_factory=list, description="more `vllm serve` flags")
    startup_timeout: float = Field(900.0, gt=0, description="seconds to wait until healthy")


class EvalConfig(_Strict):
    """Evaluation of each curriculum's final model. Stages do not depend on it, except those with
    a stopping rule: their recall check generates with ``batch_size``, ``generator`` and
    ``max_new_tokens.recall`` (greedy, the model as it trains: ``train.precision``, not
    ``precision``), so those three are part of such stages' keys."""

    backend: Literal["hf", "openai", "vllm"] = Field(
        "hf", json_schema_extra=_key(NEVER), description="hf: batched generation in this "
        "process; openai: requests to an OpenAI-compatible server (eval.openai); vllm: pbb runs "
        "`vllm serve` on each model (eval.vllm) and sends it the prompts as pbb renders them. All "
        "scored the same way")
    openai: OpenAIBackendConfig = Field(default_factory=OpenAIBackendConfig,
                                        json_schema_extra=_key(NEVER))
    vllm: VLLMBackendConfig = Field(default_factory=VLLMBackendConfig,
                                    json_schema_extra=_key(NEVER))
    modes: list[Mode] = Field(default_factory=lambda: ["recall", "direct", "cot", "in_context"],
                              min_length=1, json_schema_extra=_key(NEVER),
                              description="recall: the instruction from a declarative prompt, "
                              "exact after whitespace normalisation")
    batch_size: int = Field(32, ge=1, json_schema_extra=_key(STOPPING_RULE),
                            description="prompts per generation batch, in evaluation and in the "
                            "recall checks of training (left-padded: completions can depend on "
                            "it)")
    generator: Literal["auto", "hf", "static"] = Field(
        "auto", json_schema_extra=_key(STOPPING_RULE), description="the in-process generation "
        "engine (backend hf; pbb.evaluation.generation). hf: batches of batch_size through transformers' "
        "model.generate; static: a preallocated KV cache of slots, a finished sequence's slot "
        "refilled at once, decode steps as CUDA graphs on a GPU (slots sized by free GPU memory; "
        "batch_size slots on a CPU); auto: static on CUDA, hf elsewhere. Greedy completions are "
        "the same in fp32; in bf16 near-ties can flip, so the recall check can differ")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "fp32", json_schema_extra=_key(NEVER), description="compute precision of evaluation "
        "(backend hf): the final model's weights are cast to bf16 or fp32 for generation (no "
        "autocast); auto: bf16 where the hardware supports it. fp32 (default) gives the same "
        "greedy completions as an unbatched fp32 loop; bf16 is faster on bf16 hardware but "
        "flips near-ties, so completions can differ (docs/benchmarks.md). The recall "
        "checks of training follow train.precision instead")
    max_new_tokens: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_NEW_TOKENS),
        json_schema_extra=_key(NEVER, {"recall": STOPPING_RULE}),
        description="per mode; modes left out keep their default (recall: also the recall "
        "checks of training)")
    max_test_inputs: int | None = Field(None, ge=1, json_schema_extra=_key(NEVER),
                                        description="cap per behaviour")
    max_train_behaviours: int | None = Field(
        None, ge=1, json_schema_extra=_key(NEVER), description="evaluate only the first N train "
        "behaviours (by id); eval behaviours are always all evaluated. Train behaviours measure "
        "forgetting, and there are usually many more of them")
    temperature: float = Field(0.0, ge=0, json_schema_extra=_key(NEVER),
                               description="0 = greedy (the recall check is always greedy)")
    bootstrap: int = Field(1000, ge=100, json_schema_extra=_key(NEVER),
                           description="resamples for the 95% interval")

    @field_validator("max_new_tokens")
    @classmethod
    def _modes_known(cls, v: dict[str, int]) -> dict[str, int]:
        bad = set(v) - set(MODES)
        if bad:
            raise ValueError(f"unknown mode(s) {sorted(bad)}")
        if any(n < 1 for n in v.values()):
            raise ValueError("must be positive")
        return {**DEFAULT_MAX_NEW_TOKENS, **v}


class ChatConfig(_Strict):
    """How rows become chat text (training and evaluation alike)."""

    system_prompt: str | None = Field(
        None, description="a system message for every row; none (default) also removes the "
        "default system prompt that some chat templates inject (SmolLM2's: ~20 tokens a row)")


#: ``model: openai:NAME`` - a model that lives only behind an OpenAI-compatible server
OPENAI_PREFIX = "openai:"


class RunConfig(_Strict):
    name: str = Field("run", json_schema_extra=_key(NEVER),
                      description="the run's name, in reports, plots and trackers")
    model: str = Field(DEFAULT_MODEL, description="smollm2-135m-instruct, tiny-random, a local "
                       "directory, a Hugging Face id, or openai:NAME (evaluation only)")
    model_dtype: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="dtype the weights are loaded and kept in: the master weights "
        "training updates, and the weights evaluation loads before eval.precision casts them. "
        "auto = fp32 on every device (bf16 compute comes from train.precision's autocast); bf16 "
        "= bf16 weights, half the memory, but small updates are lost to rounding")
    trust_remote_code: bool = Field(
        False, description="let transformers run the model repository's own code (models "
        "whose architecture transformers does not ship)")
    seed: int = Field(0, description="seeds the data, the rows' order and sampling, "
                      "initialisation and bootstrap intervals")
    curricula: list[str] = Field(default_factory=lambda: ["proactive", "mixture", "untuned"],
                                 min_length=1, json_schema_extra=_key(NEVER),
                                 description="the curricula to train and evaluate, by "
                                 "name; NAME@STAGE: curriculum NAME cut after its stage STAGE "
                                 "(its stages are NAME's, trained once), e.g. "
                                 "retroactive@activation_warmup: the model before RL")
    data: DataConfig = Field(default_factory=DataConfig, json_schema_extra=_key(THROUGH_STAGE))
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig,
                                         json_schema_extra=_key(THROUGH_STAGE))
    train: TrainConfig = Field(default_factory=TrainConfig)
    rl: RLConfig = Field(default_factory=RLConfig, json_schema_extra=_key(RL_STAGE))
    eval: EvalConfig = Field(default_factory=EvalConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)

    def model_options(self):
        from pbb.models import ModelOptions

        return ModelOptions(self.model_dtype, self.trust_remote_code)

    def trains_rl(self) -> bool:
        """Whether a planned curriculum has an RL stage (and so uses the ``rl`` settings)."""
        custom = self.curriculum.custom
        bases = (split_cut(c)[0] for c in self.curricula)  # (a cut may drop its RL stage: kept)
        return any(any(s.trainer == "rl" for s in custom[c]) if c in custom else c in RL_CURRICULA
                   for c in bases)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data):
        return move_old_keys(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _known_curricula(self) -> RunConfig:
        for name in self.curricula:
            check_curriculum_name(name, self.curriculum.custom)
        if len(set(self.curricula)) != len(self.curricula):
            raise ValueError("a curriculum is listed twice")
        if self.model.startswith(OPENAI_PREFIX) and self.eval.backend != "openai":
            raise ValueError(f"model {self.model}: a model behind a server is evaluated with "
                             "eval.backend: openai")
        return self


def _role(field, inherited: bool | str) -> bool | str:
    extra = field.json_schema_extra
    return extra.get("stage_key", inherited) if isinstance(extra, dict) else inherited


def _model_in(annotation) -> tuple[type[BaseModel] | None, str]:
    """(model class, path suffix) of a field holding a model: ``X``, ``X | None`` (``""``),
    ``dict[str, X]`` (``".<name>"``), ``list[X]`` (``"[]"``), nested; (None, "") otherwise."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin in (dict, list) and args:
        inner, rest = _model_in(args[-1])
        return inner, ("[]" if origin is list else ".<name>") + rest
    if len(args) == 1:  # X | None
        return _model_in(args[0])
    return None, ""


def key_roles(model: type[BaseModel] | None = None, deep: bool = False) -> dict[str, bool | str]:
    """Dotted path -> declared role (ALWAYS, NEVER, ...) of every setting, sections recursively.

    A field holding a dict or list of models (``train.stages``, ``curriculum.custom``) is one
    setting; ``deep`` lists the fields of those models too (``train.stages.<name>.epochs``).
    Entries declared apart (``eval.max_new_tokens.recall``) are listed apart.
    """
    out: dict[str, bool | str] = {}

    def walk(model: type[BaseModel], prefix: str, inherited: bool | str) -> None:
        for name, field in model.model_fields.items():
            path, role = prefix + name, _role(field, inherited)
            inner, suffix = _model_in(field.annotation)
            if inner is not None and not suffix:  # a section
                walk(inner, path + ".", role)
                continue
            out[path] = role
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            for item, item_role in extra.get("stage_key_items", {}).items():
                out[f"{path}.{item}"] = item_role
            if inner is not None and deep:
                walk(inner, path + suffix + ".", role)

    walk(model or RunConfig, "", ALWAYS)
    return out


def key_fields(cfg: RunConfig, *, stopping_rule: bool = False,
               rl: bool = False) -> dict[str, object]:
    """Dotted path -> JSON value of every setting of ``cfg`` that changes the result of a stage:
    the ALWAYS ones, the STOPPING_RULE ones for a stage with a stopping rule, the RL_STAGE ones
    for an RL stage (as declared: :func:`key_roles`). What :func:`pbb.store.stage_key` hashes."""
    wanted = {ALWAYS, *([STOPPING_RULE] if stopping_rule else []), *([RL_STAGE] if rl else [])}
    roles = key_roles(type(cfg))
    tree = cfg.model_dump(mode="json")
    out = {}
    for path, role in roles.items():
        if role not in wanted:
            continue
        node = tree
        for part in path.split("."):
            node = node[part]
        out[path] = node
    return out


#: settings that moved to the section they belong to, old dotted path -> new: the old path is
#: still read (configs and run directories written before the move), with a note, never written
MOVED_KEYS = {"eval.recall_after_stage": "train.recall_after_stage"}


def move_old_keys(raw: dict, note: bool = True) -> dict:
    """``raw`` (a config's mapping) with each setting of :data:`MOVED_KEYS` at its new path (a
    copy where one moved); ``note``: say so (a FutureWarning). A setting given at both paths
    is an error, whatever the values."""
    out = raw
    for old, new in MOVED_KEYS.items():
        section, key = old.rsplit(".", 1)
        node = _get_dotted(out, section)
        new_section = _get_dotted(out, new.rsplit(".", 1)[0])
        if not (isinstance(node, dict) and key in node
                and isinstance(new_section, (dict, type(None)))):
            continue  # nothing to move, or a section that is no mapping: validation says so
        if _get_dotted(out, new) is not None:
            raise ValueError(f"{old} and {new} are one setting (its old and its new name); "
                             f"give only {new}")
        if out is raw:
            out = copy.deepcopy(raw)
        set_dotted(out, new, _get_dotted(out, section).pop(key))
        if note:
            warnings.warn(f"config: {old} is now {new} (read as {new}; write it there)",
                          FutureWarning, stacklevel=2)
    return out


def _get_dotted(tree: dict, key: str) -> object:
    """``tree[a][b]`` for ``key = "a.b"``, or None where a part is missing or no mapping."""
    node: object = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def as_written_now(text: str) -> str:
    """A run directory's ``config.yaml`` (written by this or an earlier version) as this version
    writes it: moved settings at their new path. A run directory written before a setting moved
    then still matches its own config. Text that is no valid config is returned as it is."""
    try:
        raw = yaml.safe_load(text)
        return dump_config(RunConfig(**move_old_keys(raw, note=False)))
    except (yaml.YAMLError, TypeError, AttributeError, ValueError):
        return text


def holds_config(path: Path, cfg: RunConfig) -> bool:
    """Whether the ``config.yaml`` at ``path`` is ``cfg``'s, read as this version writes it:
    how a resumed run, its data set and a sweep point each know they hold this very run (one
    test, so they never disagree; on a mismatch ``same_run`` reads the texts again to name the
    first line that differs). No file there: ``False``."""
    return Path(path).is_file() and as_written_now(read_text(path)) == dump_config(cfg)


def set_dotted(tree: dict, key: str, value: object) -> None:
    """Set ``tree[a][b][c] = value`` for ``key = "a.b.c"``, creating nothing unknown."""
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise PbbError(f"--set {key}: {p} is not a section")
        node = child
    node[parts[-1]] = value


def error_line(e: ValidationError, source: str, overrides: dict | None = None) -> str:
    """The first validation error as one line; "(with --set)" where it is at a key that an
    override set (or below one), so a file's own mistake is not blamed on the command line."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    if overrides and (not loc or any(loc == k or loc.startswith(f"{k}.") or k.startswith(f"{loc}.")
                                     for k in overrides)):  # no loc: a check across keys
        source += " (with --set)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"


class _UniqueKeysLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping: PyYAML keeps the last one
    without a word, so a config saying ``seed: 0`` and further down ``seed: 1`` would run seed 1
    while its reader sees seed 0."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` may override on purpose
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: PyYAML's own error says so
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first at line "
                        f"{first.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: Path, what: str = "config") -> dict:
    """A YAML file's top-level mapping; a missing file or bad YAML is one ``file:line`` error.
    A file with no YAML in it (empty, or comments only: a save that did not happen) is refused
    too, rather than read as a run of every default; ``{}`` asks for that."""
    path = Path(path)
    text = read_text(path, f"{what} file")
    try:
        raw = yaml.load(text, Loader=_UniqueKeysLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PbbError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if raw is None:
        raise PbbError(f"{path}: empty {what} file (no keys in it; every default: write {{}})")
    if not isinstance(raw, dict):
        raise PbbError(f"{path}: expected a mapping at the top level")
    return raw


#: ``--smoke``: any config shrunk to a run of a minute or two on the tiny-random model (8
#: behaviours, 2 test inputs, 2 optimizer steps a stage, 8-token completions), to see that it runs
#: end to end before spending hours on it. The tests run shipped configs through it too. What it
#: does not touch (curricula, modes, stages, demos) stays as the config says.
SMOKE: dict[str, object] = {
    "model": "tiny-random", "data.behaviours": 8, "data.test_inputs": 2,
    "curriculum.declarative_repeats": 1, "curriculum.eval_declarative_repeats": 1,
    "train.max_steps": 2, "train.batch_size": 4, "rl.max_steps": 1,
    "rl.max_completion_length": 8, "eval.max_new_tokens": {m: 8 for m in MODES},
}


def with_smoke(overrides: dict[str, object] | None) -> dict[str, object]:
    """The smoke overlay under the caller's own overrides (theirs win)."""
    return {**SMOKE, **(overrides or {})}


def apply_overrides(raw: dict, overrides: dict[str, object] | None, smoke: bool = False) -> dict:
    """``raw`` with dotted ``overrides`` set (a copy); ``smoke``: the :data:`SMOKE` overlay under
    them, less its data sizes where the config names a data set (``data.path``): a given data
    set is used as it is, never shrunk."""
    out = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        # a copy: a later override of a key inside it must not change the caller's value (or
        # the process-wide SMOKE overlay)
        set_dotted(out, key, copy.deepcopy(value))
    if not smoke:
        return out
    given = (out.get("data") or {}).get("path") if isinstance(out.get("data"), dict) else None
    overlay = {k: v for k, v in SMOKE.items() if not (given and k.startswith("data."))}
    return apply_overrides(raw, {**overlay, **(overrides or {})})


def load_config(path: Path | dict | None, overrides: dict[str, object] | None = None,
                smoke: bool = False) -> RunConfig:
    """Read YAML (or take a mapping of the same keys, from Python), apply dotted overrides
    (over the smoke overlay with ``smoke``), validate; every failure is one PbbError line."""
    raw: dict = {}
    source = "config"
    if isinstance(path, dict):
        raw = path
    elif path is not None:
        source = str(path)
        raw = read_yaml_mapping(path)
        if "sweep" in raw:  # not "sweep: unknown key": the user picked the wrong command
            raise PbbError(f"{source}: a sweep config (it has a `sweep:` section): run it with "
                           f"`pbb sweep {source}` (one point: --set sweep.grid.seed=[0])")
    raw = apply_overrides(raw, overrides, smoke)
    try:
        return RunConfig(**raw)
    except ValidationError as e:
        raise PbbError(error_line(e, source, overrides)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
