"""Config errors: one clear line naming the key, before any work starts."""

import pytest

from pbb.config import load_config
from pbb.errors import PbbError
from tests.conftest import run_cli


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(None, {"model": "tiny-random", "data.behaviours": 12, "train.max_steps": 2,
                             "eval.modes": ["cot"], "curricula": ["proactive", "untuned"],
                             "train.method": "lora", "data.eval_fraction": 0.25, "seed": 3,
                             "data.domain": "arithmetic", "data.demos": 2, "data.test_inputs": 1})
    assert cfg.model == "tiny-random" and cfg.data.behaviours == 12 and cfg.train.max_steps == 2
    assert cfg.eval.modes == ["cot"] and cfg.train.method == "lora" and cfg.seed == 3


@pytest.mark.parametrize("overrides, message", [
    ({"data.behavours": 3}, "data.behavours: unknown key"),
    ({"train.method": "dora"}, "train.method: Input should be 'full', 'lora' or 'qlora'"),
    ({"data.behaviours": -1}, "data.behaviours: Input should be greater than or equal to 2"),
    ({"curricula": ["proactive", "nosuch"]}, "unknown curriculum 'nosuch'"),
    ({"eval.modes": ["telepathy"]}, "eval.modes.0"),
    ({"train.max_steps": "many"}, "train.max_steps"),
    ({"seed.x": 1}, "seed: Input should be a valid integer"),
])
def test_bad_keys_and_values(overrides, message):
    with pytest.raises(PbbError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)


def test_yaml_errors_name_the_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata:\n  behaviours: [1,\n")
    with pytest.raises(PbbError, match=r"c.yaml:\d+: invalid YAML"):
        load_config(p)
    p.write_text("- a list\n")
    with pytest.raises(PbbError, match="expected a mapping"):
        load_config(p)


@pytest.mark.parametrize("args, message", [
    (["--set", "train.method=dora"], "train.method"),
    (["--set", "model=no-such-model-anywhere"], "model 'no-such-model-anywhere': not in the local Hugging Face cache"),
    (["--set", "data.domain=nosuch"], "unknown domain 'nosuch'"),
    (["--set", "data.options.max_args=7"], "arithmetic.max_args"),
    (["--set", "nokey"], "expected KEY=VALUE"),
])
def test_cli_config_errors_fail_before_work(tmp_path, args, message):
    out = tmp_path / "run"
    r = run_cli("run", "configs/quickstart.yaml", "--out", str(out), *args)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], r.stderr
    assert not out.exists()
