"""The stage key: what each setting changes, declared once per field (pbb.config), checked here.

``TABLE`` has one row per setting of every section (a setting added without a row fails
``test_the_table_lists_every_setting``), with what it changes:

* ``key``:   the result of every stage: in every stage's key
* ``rule``:  read by the stopping rule's recall check: in the key of stages with a stopping rule
* ``rl``:    a setting of RL stages: in their keys only
* ``no``:    how a stage runs (memory, speed, checkpoints, trackers, vLLM's placement) or what a
             run does besides training (evaluation, which curricula): in no key
* ``stage``: makes the stages themselves (rows, trainer, own training settings): the key sees it
             through the stage, never by itself

Each row is checked against the declaration and against ``stage_key`` itself: three stages (plain
SFT, SFT with a stopping rule, RL) keyed before and after the change. ``stage`` rows are also
checked end to end where a curriculum shows them: its stages built from a tiny data set, before
and after, keyed as ``pbb run`` keys them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pbb import data as data_mod
from pbb.config import (
    ALWAYS,
    NEVER,
    RL_STAGE,
    STOPPING_RULE,
    THROUGH_STAGE,
    key_roles,
    load_config,
)
from pbb.rows import curricula
from pbb.rows.curricula import Stage
from pbb.store import stage_key

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"key": ALWAYS, "no": NEVER, "rule": STOPPING_RULE, "rl": RL_STAGE, "stage": THROUGH_STAGE}

ROWS = [{"prompt": [{"role": "user", "content": f"Show the code of `f{i}`"}],
         "completion": [{"role": "assistant", "content": f"def f{i}(x):\n    return x + {i}"}]}
        for i in range(3)]

#: the three stages keyed by every row: plain SFT, SFT with a stopping rule, RL
KINDS = {"sft": Stage("plain", ROWS, "sft"), "rule": Stage("rule", ROWS, "sft"),
         "rl": Stage("rlst", ROWS, "rl")}
#: which of them a row's change must re-key, by label
EXPECT = {"key": {"sft", "rule", "rl"}, "no": set(), "rule": {"rule"}, "rl": {"rl"}, "stage": set()}

CUSTOM = [  # a custom curriculum (`mine`) for the rows of curriculum.custom
    {"name": "decl", "parts": [{"kind": "declarative", "behaviours": "all", "repeats": 1}]},
    {"name": "exec", "parts": [{"kind": "direct", "behaviours": "train", "demos": 1}]},
]
BASE = {"data.behaviours": 8, "data.demos": 4, "data.test_inputs": 1,
        "train.stages": {"rule": {"recall_target": 1.0, "max_epochs": 2}},
        "curriculum.custom": {"mine": CUSTOM}}


def custom(stage: int, **change) -> dict:
    """``curriculum.custom`` with one stage of ``mine`` changed."""
    stages = copy.deepcopy(CUSTOM)
    stages[stage].update(change)
    return {"curriculum.custom": {"mine": stages}}


def part(stage: int, **change) -> dict:
    return custom(stage, parts=[{**CUSTOM[stage]["parts"][0], **change}])


#: setting -> (what it changes, a change to it[, the curriculum whose stages show it, whether
#: they change][, which of KINDS it re-keys when that is not the label's])
TABLE: dict[str, tuple] = {
    "name": ("no", {"name": "other"}),
    "model": ("key", {"model": "tiny-random"}),
    "model_dtype": ("key", {"model_dtype": "bf16"}),
    "trust_remote_code": ("key", {"trust_remote_code": True}),
    "seed": ("key", {"seed": 1}),
    "curricula": ("no", {"curricula": ["mixture"]}),
    "data.domain": ("stage", {"data.domain": "ciphers"}, ("proactive", True)),
    "data.behaviours": ("stage", {"data.behaviours": 10}, ("proactive", True)),
    "data.demos": ("stage", {"data.demos": 3}, ("proactive", True)),
    # never trained on, but drawn with the demonstrations: other demonstrations
    "data.test_inputs": ("stage", {"data.test_inputs": 2}, ("proactive", True)),
    "data.eval_fraction": ("stage", {"data.eval_fraction": 0.25}, ("proactive", True)),
    "data.options": ("stage", {"data.options": {"max_const": 5}}, ("proactive", True)),
    # a copy of the same data set elsewhere: the same stages (a path is not a result)
    "data.path": ("stage", {"data.path": "<copy>"}, ("proactive", False)),
    "data.instruction_format": ("stage", {"data.instruction_format": "nl"}, ("proactive", True)),
    "curriculum.declarative_repeats": ("stage", {"curriculum.declarative_repeats": 2},
                                       ("proactive", True)),
    "curriculum.eval_declarative_repeats": ("stage", {"curriculum.eval_declarative_repeats": 2},
                                            ("proactive", True)),
    "curriculum.demo_modes": ("stage", {"curriculum.demo_modes": ["cot"]}, ("proactive", True)),
    "curriculum.replay": ("stage", {"curriculum.replay": 0.5}, ("proactive", True)),
    "curriculum.demos_only_k": ("stage", {"curriculum.demos_only_k": 2}, ("demos_only", True)),
    "curriculum.rl_warmup_demos": ("stage", {"curriculum.rl_warmup_demos": 1}, ("rl_only", True)),
    "curriculum.activation_replay": ("stage", {"curriculum.activation_replay": 0.5},
                                     ("retroactive", True)),
    "curriculum.custom": ("stage", {"curriculum.custom": {"mine": CUSTOM[1:]}}, ("mine", True)),
    # a stage's name also seeds the order of its rows
    "curriculum.custom.<name>[].name": ("stage", custom(1, name="exec2"), ("mine", True)),
    "curriculum.custom.<name>[].train.epochs": ("stage", custom(1, train={"epochs": 2}),
                                                ("mine", True)),
    "curriculum.custom.<name>[].train.learning_rate": (
        "stage", custom(1, train={"learning_rate": 1e-3}), ("mine", True)),
    "curriculum.custom.<name>[].train.max_steps": ("stage", custom(1, train={"max_steps": 3}),
                                                   ("mine", True)),
    "curriculum.custom.<name>[].train.warmup_ratio": (
        "stage", custom(1, train={"warmup_ratio": 0.5}), ("mine", True)),
    "curriculum.custom.<name>[].train.batch_size": ("stage", custom(1, train={"batch_size": 2}),
                                                    ("mine", True)),
    "curriculum.custom.<name>[].train.recall_target": (
        "stage", custom(0, train={"recall_target": 0.5, "max_epochs": 2}), ("mine", True)),
    "curriculum.custom.<name>[].train.max_epochs": (
        "stage", custom(0, train={"recall_target": 1.0, "max_epochs": 3}), ("mine", True)),
    "curriculum.custom.<name>[].parts": (
        "stage", custom(1, parts=CUSTOM[1]["parts"] + [{"kind": "cot", "behaviours": "train"}]),
        ("mine", True)),
    "curriculum.custom.<name>[].parts[].kind": ("stage", part(1, kind="cot"), ("mine", True)),
    "curriculum.custom.<name>[].parts[].behaviours": ("stage", part(0, behaviours="train"),
                                                      ("mine", True)),
    "curriculum.custom.<name>[].parts[].repeats": ("stage", part(0, repeats=2), ("mine", True)),
    "curriculum.custom.<name>[].parts[].demos": ("stage", part(1, demos=2), ("mine", True)),
    "curriculum.custom.<name>[].replay": ("stage", custom(1, replay=0.5), ("mine", True)),
    "curriculum.custom.<name>[].trainer": ("stage", custom(1, trainer="rl"), ("mine", True)),
    "train.method": ("key", {"train.method": "lora"}),
    "train.learning_rate": ("key", {"train.learning_rate": 3e-4}),
    "train.epochs": ("key", {"train.epochs": 2.0}),
    "train.max_steps": ("key", {"train.max_steps": 5}),
    "train.batch_size": ("key", {"train.batch_size": 8}),
    "train.grad_accum": ("key", {"train.grad_accum": 2}),
    "train.max_batch_tokens": ("no", {"train.max_batch_tokens": 256}),
    "train.packing": ("no", {"train.packing": "on"}),
    "train.report_to": ("no", {"train.report_to": ["tensorboard"]}),
    "train.max_length": ("key", {"train.max_length": 512}),
    "train.warmup_ratio": ("key", {"train.warmup_ratio": 0.1}),
    "train.schedule": ("key", {"train.schedule": "linear"}),
    "train.min_lr_ratio": ("key", {"train.min_lr_ratio": 0.0}),
    "train.adam_beta2": ("key", {"train.adam_beta2": 0.999}),
    "train.max_grad_norm": ("key", {"train.max_grad_norm": 0.5}),
    "train.weight_decay": ("key", {"train.weight_decay": 0.01}),
    "train.lora_r": ("key", {"train.lora_r": 8}),
    "train.lora_alpha": ("key", {"train.lora_alpha": 16}),
    "train.lora_targets": ("key", {"train.lora_targets": ["q_proj", "v_proj"]}),
    "train.precision": ("key", {"train.precision": "fp32"}),
    "train.save_steps": ("no", {"train.save_steps": 7}),
    "train.group_by_length": ("key", {"train.group_by_length": False}),
    "train.gradient_checkpointing": ("no", {"train.gradient_checkpointing": True}),
    "train.recall_after_stage": ("no", {"train.recall_after_stage": False}),  # logged, not a result
    # per-stage settings: in the key of the stage they name (here `plain`), no other
    "train.stages": ("stage", {"train.stages.other": {"epochs": 2}}),
    "train.stages.<name>.epochs": ("stage", {"train.stages.plain.epochs": 2}, None, {"sft"}),
    "train.stages.<name>.learning_rate": ("stage", {"train.stages.plain.learning_rate": 1e-3},
                                          None, {"sft"}),
    "train.stages.<name>.max_steps": ("stage", {"train.stages.plain.max_steps": 3}, None, {"sft"}),
    "train.stages.<name>.warmup_ratio": ("stage", {"train.stages.plain.warmup_ratio": 0.5},
                                         None, {"sft"}),
    "train.stages.<name>.batch_size": ("stage", {"train.stages.plain.batch_size": 2}, None,
                                       {"sft"}),
    "train.stages.<name>.recall_target": ("stage", {"train.stages.rule.recall_target": 0.5},
                                          None, {"rule"}),
    "train.stages.<name>.max_epochs": ("stage", {"train.stages.rule.max_epochs": 3}, None,
                                       {"rule"}),
    "rl.loss_type": ("rl", {"rl.loss_type": "grpo"}),
    "rl.num_generations": ("rl", {"rl.num_generations": 8}),
    "rl.batch_size": ("rl", {"rl.batch_size": 12}),
    "rl.grad_accum": ("rl", {"rl.grad_accum": 2}),
    "rl.learning_rate": ("rl", {"rl.learning_rate": 1e-5}),
    "rl.warmup_ratio": ("rl", {"rl.warmup_ratio": 0.1}),
    "rl.epochs": ("rl", {"rl.epochs": 2.0}),
    "rl.max_steps": ("rl", {"rl.max_steps": 5}),
    "rl.temperature": ("rl", {"rl.temperature": 0.7}),
    "rl.top_p": ("rl", {"rl.top_p": 0.9}),
    "rl.max_completion_length": ("rl", {"rl.max_completion_length": 64}),
    "rl.beta": ("rl", {"rl.beta": 0.04}),
    "rl.epsilon": ("rl", {"rl.epsilon": 0.3}),
    "rl.num_iterations": ("rl", {"rl.num_iterations": 2}),
    "rl.scale_rewards": ("rl", {"rl.scale_rewards": "none"}),
    "rl.mask_truncated_completions": ("rl", {"rl.mask_truncated_completions": True}),
    "rl.format_weight": ("rl", {"rl.format_weight": 0.5}),
    "rl.save_steps": ("no", {"rl.save_steps": 3}),
    "rl.use_vllm": ("rl", {"rl.use_vllm": True}),  # another sampler: other rollouts
    "rl.vllm_mode": ("no", {"rl.vllm_mode": "server"}),
    "rl.vllm_server_base_url": ("no", {"rl.vllm_server_base_url": "http://localhost:8000"}),
    "rl.vllm_gpu_memory_utilization": ("no", {"rl.vllm_gpu_memory_utilization": 0.5}),
    "eval.backend": ("no", {"eval.backend": "vllm"}),
    "eval.openai.base_url": ("no", {"eval.openai.base_url": "http://localhost:8000/v1"}),
    "eval.openai.api_key_env": ("no", {"eval.openai.api_key_env": "MY_KEY"}),
    "eval.openai.models": ("no", {"eval.openai.models": {"proactive": "ft:x"}}),
    "eval.openai.concurrency": ("no", {"eval.openai.concurrency": 2}),
    "eval.openai.max_retries": ("no", {"eval.openai.max_retries": 0}),
    "eval.openai.timeout": ("no", {"eval.openai.timeout": 5.0}),
    "eval.vllm.executable": ("no", {"eval.vllm.executable": "/opt/vllm"}),
    "eval.vllm.port": ("no", {"eval.vllm.port": 8001}),
    "eval.vllm.gpu_memory_utilization": ("no", {"eval.vllm.gpu_memory_utilization": 0.5}),
    "eval.vllm.max_model_len": ("no", {"eval.vllm.max_model_len": 1024}),
    "eval.vllm.extra_args": ("no", {"eval.vllm.extra_args": ["--enforce-eager"]}),
    "eval.vllm.startup_timeout": ("no", {"eval.vllm.startup_timeout": 60.0}),
    "eval.modes": ("no", {"eval.modes": ["cot"]}),
    "eval.batch_size": ("rule", {"eval.batch_size": 96}),
    "eval.precision": ("no", {"eval.precision": "bf16"}),  # the check runs as the model trains
    # the recall check generates with it: bf16 near-ties can flip between engines
    "eval.generator": ("rule", {"eval.generator": "static"}),
    # every mode's budget but recall's
    "eval.max_new_tokens": ("no", {"eval.max_new_tokens": {"direct": 3, "cot": 7,
                                                           "in_context": 5}}),
    "eval.max_new_tokens.recall": ("rule", {"eval.max_new_tokens.recall": 96}),
    "eval.max_test_inputs": ("no", {"eval.max_test_inputs": 1}),
    "eval.max_train_behaviours": ("no", {"eval.max_train_behaviours": 2}),
    "eval.temperature": ("no", {"eval.temperature": 0.7}),  # the recall check is always greedy
    "eval.bootstrap": ("no", {"eval.bootstrap": 200}),
    "chat.system_prompt": ("key", {"chat.system_prompt": "Be brief."}),
}


def config(overrides: dict):
    return load_config(None, copy.deepcopy({**BASE, **overrides}))


def keys(overrides: dict) -> dict[str, str]:
    cfg = config(overrides)
    return {kind: stage_key(cfg, "base", st.rows, st.trainer, st) for kind, st in KINDS.items()}


def test_the_table_lists_every_setting():
    declared = key_roles(deep=True)
    assert sorted(TABLE) == sorted(declared), "a setting without a row (or a row without one)"
    wrong = {path: (TABLE[path][0], role) for path, role in declared.items()
             if LABELS[TABLE[path][0]] != role}
    assert not wrong, f"table vs declaration in pbb.config: {wrong}"


@pytest.mark.parametrize("path", sorted(TABLE))
def test_what_each_setting_changes(path):
    label, change, *more = TABLE[path]
    direct = more[1] if len(more) > 1 else EXPECT[label]
    before, after = keys({}), keys(change)
    assert {k for k in KINDS if before[k] != after[k]} == direct


def _generate(cfg) -> data_mod.DataSet:
    d = cfg.data
    return data_mod.generate(d.domain, behaviours=d.behaviours, demos=d.demos,
                             test_inputs=d.test_inputs, eval_fraction=d.eval_fraction,
                             seed=cfg.seed, options=d.options, progress=False)


def _stages_of(cfg, curriculum: str, tmp_path) -> list[str]:
    """The curriculum's stage directories as ``pbb run`` names them."""
    if cfg.data.path == "<copy>":  # the base data set, saved elsewhere
        data_mod.save(_generate(config({})), tmp_path / "copy")
        ds = data_mod.load(tmp_path / "copy")
    else:
        ds = _generate(cfg)
    out, parent = [], "base"
    for st in curricula.build(curriculum, ds, cfg.curriculum, cfg.data.instruction_format):
        parent = stage_key(cfg, parent, st.rows, st.trainer, st)
        out.append(f"{st.name}-{parent}")
    return out


@pytest.mark.parametrize("path", sorted(p for p, row in TABLE.items() if len(row) > 2 and row[2]))
def test_what_makes_a_stage_reaches_its_key(path, tmp_path):
    """Settings that make stages (data, curriculum) change the keys of the stages they change,
    through them: rows, trainer and a stage's own settings are hashed."""
    _, change, (curriculum, changes) = TABLE[path][:3]
    before = _stages_of(config({}), curriculum, tmp_path)
    after = _stages_of(config(change), curriculum, tmp_path)
    assert before and after
    assert (before != after) == changes


STAGE2_RULE = {"train.stages": {"stage2": {"recall_target": 1.0, "max_epochs": 4}}}


def _quick_keys(**overrides) -> dict[str, str]:
    cfg = load_config(None, {**copy.deepcopy(STAGE2_RULE), **overrides})
    return {name: stage_key(cfg, "base", ROWS, "sft", Stage(name, ROWS))
            for name in ("stage1", "stage2")}


def test_the_recall_budget_is_in_the_key_of_a_stage_with_a_stopping_rule():
    """Stage 2 stops when its recall check passes, and the check generates with the recall
    budget and the eval batch size: another budget is another stage (in a sweep too)."""
    base = _quick_keys()
    for change in ({"eval.max_new_tokens.recall": 96}, {"eval.batch_size": 96}):
        other = _quick_keys(**change)
        assert other["stage2"] != base["stage2"], change
        assert other["stage1"] == base["stage1"], change  # no stopping rule: no recall check
    # the other modes' budgets are evaluation only
    assert _quick_keys(**{"eval.max_new_tokens.cot": 32}) == base


def test_an_rl_stages_key_tells_replayed_rows_from_prompts():
    """GRPO samples from an RL stage's prompts and trains its ``replay``-tagged rows by an SFT
    term: the same rows tagged otherwise are another stage. SFT trains both alike: its keys
    (those of every stage trained before the tag) stay."""
    cfg = load_config(None, {})
    tagged = [ROWS[0], dict(ROWS[1], replay=True), ROWS[2]]
    for trainer, differs in (("rl", True), ("sft", False)):
        st = Stage("s", ROWS, trainer)
        assert (stage_key(cfg, "base", ROWS, trainer, st)
                != stage_key(cfg, "base", tagged, trainer, st)) is differs, trainer


def test_checkpoint_intervals_retrain_nothing():
    base = _quick_keys()
    assert _quick_keys(**{"train.save_steps": 7}) == base
    cfg, other = load_config(None, {}), load_config(None, {"rl.save_steps": 3})
    st = Stage("activation_rl", ROWS, "rl")
    assert stage_key(cfg, "base", ROWS, "rl", st) == stage_key(other, "base", ROWS, "rl", st)


def test_existing_stage_directories_keep_their_keys_unless_their_settings_changed():
    """Keys written before the settings were declared (literal: computed by that code): a stage
    without a stopping rule keeps its key, so its directory is reused; one with a stopping rule
    does not (the old key did not record the recall check's settings: retrained, never reused)."""
    old = {  # (overrides) -> (plain, rule, rl) stage keys of the code before
        (): ("7c50617f602d", "324d9764bcf1", "c412fd4fdae2"),
        (("chat.system_prompt", "Be brief."),): ("5fc838a158e6", "8cd04c4ac47d", "a4356118bfa6"),
        (("model_dtype", "bf16"),): ("95d0ba30f3cf", "88cde162c95f", "ef10d51edf49"),
        (("train.learning_rate", 3e-4),): ("7285279d1b44", "671ebe170109", "1477aa5b659d"),
    }
    for overrides, (plain, rule, rl) in old.items():
        now = keys(dict(overrides))
        assert (now["sft"], now["rl"]) == (plain, rl), overrides
        assert now["rule"] != rule, overrides
    # a stage trained with another checkpoint interval: the key of the default one, whose result
    # it shares
    assert keys({"train.save_steps": 7, "rl.save_steps": 3}) == keys({})


def test_the_quickstarts_stage_keys_are_pinned():
    """The quickstart's stage directories keep their names across refactors: a user's trained
    stages stay reusable. (A change that must retrain them says so in docs/results/LOG.md.)"""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    d = cfg.data
    ds = data_mod.generate(d.domain, behaviours=d.behaviours, demos=d.demos,
                           test_inputs=d.test_inputs, eval_fraction=d.eval_fraction,
                           seed=cfg.seed, options=d.options, progress=False)
    stage1, stage2 = curricula.build("proactive", ds, cfg.curriculum)
    k1 = stage_key(cfg, "base", stage1.rows, stage1.trainer, stage1)
    assert (k1, stage_key(cfg, k1, stage2.rows, stage2.trainer, stage2)) == (
        "cdc9b93734ff", "8ed13c2f58cb")
