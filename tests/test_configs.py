"""Every shipped config loads and is runnable as far as can be told without training: its keys,
data options, precisions, model, curricula (built on a small data set with the config's own
options, leakage rules included) and per-stage settings. A broken config fails here, not an hour
into a run."""

import copy
from pathlib import Path

import pytest
import yaml

from pbb import data
from pbb.config import RunConfig, load_config
from pbb.domains import get_domain
from pbb.errors import PbbError
from pbb.experiments.sweep import load_sweep
from pbb.models import DEFAULT_MODEL, TINY_RANDOM
from pbb.rows import curricula
from pbb.training.precision import use_bf16

# run configs (configs/accelerate/ holds launcher settings, not run configs)
CONFIGS = sorted(p for p in Path("configs").glob("**/*.yaml") if "accelerate" not in p.parts)


def configs_in(path: Path) -> list[RunConfig]:
    if "sweep" in yaml.safe_load(path.read_text()):
        return [p["config"] for p in load_sweep(path)[2]]
    return [load_config(path)]


def check(cfg: RunConfig) -> None:
    """What `pbb run` checks before work, and what it checks once data and curricula exist."""
    dom = get_domain(cfg.data.domain)
    data.parse_domain_config(dom, cfg.data.options, where="data.options")
    use_bf16(cfg.train.precision, "train.precision")
    use_bf16(cfg.eval.precision, "eval.precision")
    if cfg.model not in (DEFAULT_MODEL, TINY_RANDOM):
        raise PbbError(f"model {cfg.model!r} is not one that runs offline here")
    composed = cfg.data.options.get("compositions")  # composites need their parts: full size
    ds = data.generate(cfg.data.domain, behaviours=cfg.data.behaviours if composed else 8,
                       demos=cfg.data.demos,
                       test_inputs=cfg.data.test_inputs, eval_fraction=0.25, seed=cfg.seed,
                       options=cfg.data.options, progress=False)
    curricula.check_stage_settings(
        cfg, {n: curricula.build(n, ds, cfg.curriculum) for n in cfg.curricula}, ds)


def test_configs_are_found():
    assert len(CONFIGS) >= 8 and Path("configs/quickstart.yaml") in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_runnable(path):
    for cfg in configs_in(path):
        check(cfg)


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw["train"].update(epoch=3), "epoch"),                          # a typo'd key
    (lambda raw: raw["data"]["options"].update(max_depth=3), "max_depth"),        # unknown option
    (lambda raw: raw["train"]["stages"].update(stage3={"epochs": 1}), "stage3"),  # no such stage
    # a stage of a curriculum the run does not plan is fine (a sweep shares train.stages), but a
    # stopping rule there still needs declarative rows
    (lambda raw: raw["train"]["stages"].update(mixture={"recall_target": 1.0, "max_epochs": 2},
                                               demos_k3={"recall_target": 1.0, "max_epochs": 2}),
     "demos_k3"),
    (lambda raw: raw.update(curricula=["proactive", "mixtrue"]), "mixtrue"),      # no such curriculum
    (lambda raw: raw["eval"].update(precision="fp8"), "precision"),
    # a first stage has no stage before it to replay (its replay was silently nothing)
    (lambda raw: raw.setdefault("curriculum", {}).update(custom={"mine": [
        {"name": "one", "replay": 0.5, "parts": [{"kind": "cot", "behaviours": "train"}]}]}),
     "first stage 'one' has replay 0.5 but no stage before it"),
])
def test_a_broken_config_fails_the_check(tmp_path, edit, message):
    raw = copy.deepcopy(yaml.safe_load(Path("configs/quickstart.yaml").read_text()))
    edit(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PbbError, match=message):
        for cfg in configs_in(path):
            check(cfg)
