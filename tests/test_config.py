"""Config errors: one clear line naming the key, before any work starts."""

import copy

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
    ({"curricula": ["nosuch@stage1"]}, "unknown curriculum 'nosuch'"),
    ({"curricula": ["proactive@"]}, "curriculum 'proactive@': NAME@STAGE names one stage"),
    ({"curriculum.custom": {"a@b": [{"name": "s",
                                     "parts": [{"kind": "cot", "behaviours": "train"}]}]}},
     "curriculum.custom: curriculum name 'a@b': '@' is kept for NAME@STAGE"),
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


def test_an_empty_config_file_is_refused_and_braces_ask_for_every_default(tmp_path):
    """An empty file (a save that did not happen) would otherwise start a full run of the
    defaults; a sweep file likewise. ``{}`` is the way to ask for the defaults."""
    from pbb.config import read_yaml_mapping

    p = tmp_path / "c.yaml"
    for text in ("", "# to do: the settings\n\n"):
        p.write_text(text)
        with pytest.raises(PbbError, match=r"c\.yaml: empty config file \(no keys in it"):
            load_config(p)
        with pytest.raises(PbbError, match=r"c\.yaml: empty sweep file"):
            read_yaml_mapping(p, "sweep")
    p.write_text("{}\n")
    assert load_config(p) == load_config(None)


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys without a word: the run would not be the one the
    file seems to say."""
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nseed: 0\ntrain:\n  epochs: 1\nseed: 1\n")
    with pytest.raises(PbbError, match=r"c\.yaml:5: invalid YAML \(key 'seed' given twice "
                                       r"\(first at line 2\)\)"):
        load_config(p)
    p.write_text("name: x\ntrain: {epochs: 1, epochs: 2}\n")
    with pytest.raises(PbbError, match=r"c\.yaml:2: .*key 'epochs' given twice"):
        load_config(p)
    p.write_text("name: x\ntrain: {epochs: 2}\neval: {epochs: 2}\n")  # the same key, elsewhere
    with pytest.raises(PbbError, match="eval.epochs: unknown key"):
        load_config(p)


def test_with_set_is_said_only_where_an_override_set_the_bad_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntrain: {metod: full}\n")
    with pytest.raises(PbbError) as e:
        load_config(p, {"seed": 3})
    assert str(e.value) == f"{p}: train.metod: unknown key"
    p.write_text("name: x\n")
    with pytest.raises(PbbError) as e:
        load_config(p, {"seed": 3, "train.epochs": 0})
    assert str(e.value).startswith(f"{p} (with --set): train.epochs: ")
    with pytest.raises(PbbError) as e:  # a check across keys (no key of its own): --set may be it
        load_config(p, {"curricula": ["nope"]})
    assert str(e.value).startswith(f"{p} (with --set): unknown curriculum 'nope'")


@pytest.mark.parametrize("args, message", [
    (["--set", "train.method=dora"], "train.method"),
    (["--set", "model=no-such-model-anywhere"], "model 'no-such-model-anywhere': not in the local Hugging Face cache"),
    (["--set", "data.domain=nosuch"], "data.domain: unknown domain 'nosuch'"),
    (["--set", "data.options.max_args=7"], "data.options: max_args: "),
    (["--set", "data.options.max_argz=2"], "data.options: max_argz: unknown key"),
    (["--set", "nokey"], "expected KEY=VALUE"),
])
def test_cli_config_errors_fail_before_work(tmp_path, args, message):
    out = tmp_path / "run"
    r = run_cli("run", "configs/quickstart.yaml", "--out", str(out), *args)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], r.stderr
    assert not out.exists()


# --- a setting that moved keeps loading ----------------------------------------------------------


def test_a_moved_setting_is_read_at_its_old_path_with_a_note_and_written_at_its_new():
    import yaml

    from pbb.config import dump_config

    with pytest.warns(FutureWarning, match="eval.recall_after_stage is now train.recall_after_stage"):
        cfg = load_config(None, {"eval.recall_after_stage": False})
    assert cfg.train.recall_after_stage is False
    written = yaml.safe_load(dump_config(cfg))
    assert "recall_after_stage" not in written["eval"] and written["train"]["recall_after_stage"] is False
    with pytest.raises(PbbError, match="give only train.recall_after_stage"):
        load_config(None, {"eval.recall_after_stage": True, "train.recall_after_stage": True})


def test_a_run_directory_written_before_a_setting_moved_matches_its_config(tmp_path):
    """A config.yaml with the old path: loaded by report/export/score, and the run resumes (the
    run directory's config is compared as this version writes it)."""
    import warnings

    import yaml

    from pbb.config import RunConfig, as_written_now, dump_config

    cfg = RunConfig(model="tiny-random")
    old = cfg.model_dump(mode="json")
    old["eval"]["recall_after_stage"] = old["train"].pop("recall_after_stage")
    text = yaml.safe_dump(old, sort_keys=False)
    assert text != dump_config(cfg) and as_written_now(text) == dump_config(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert load_config(path) == cfg
    assert as_written_now("curricula: [nosuch]\n") == "curricula: [nosuch]\n"  # no config: as is


def test_the_rl_curricula_are_those_with_an_rl_stage():
    from pbb import data
    from pbb.config import BUILTIN_CURRICULA, RL_CURRICULA, CurriculumConfig
    from pbb.rows import curricula

    ds = data.generate("arithmetic", behaviours=4, demos=1, test_inputs=1, eval_fraction=0.5,
                       seed=0, progress=False)
    with_rl = [name for name in BUILTIN_CURRICULA
               if any(st.trainer == "rl" for st in curricula.build(name, ds, CurriculumConfig()))]
    assert with_rl == list(RL_CURRICULA)
    custom = [{"name": "s", "trainer": "rl", "parts": [{"kind": "cot", "behaviours": "train"}]}]
    assert load_config(None, {"curricula": ["mine"], "curriculum.custom": {"mine": custom}}).trains_rl()
    assert not load_config(None, {"curricula": ["proactive", "untuned"]}).trains_rl()


def test_overrides_never_change_the_values_they_are_given_or_the_smoke_overlay():
    """``eval.max_new_tokens`` from the smoke overlay, then ``eval.max_new_tokens.cot`` from the
    caller: the second write went into the overlay's own dict, so every later smoke config of
    the process got the caller's value."""
    from pbb.config import SMOKE, apply_overrides

    before = copy.deepcopy(SMOKE)
    given = {"eval.max_new_tokens": {"cot": 5, "recall": 6}}
    out = apply_overrides({}, {**given, "eval.max_new_tokens.cot": 64}, smoke=True)
    assert out["eval"]["max_new_tokens"]["cot"] == 64
    assert SMOKE == before and given == {"eval.max_new_tokens": {"cot": 5, "recall": 6}}
    apply_overrides({}, {"eval.max_new_tokens.cot": 64}, smoke=True)
    assert SMOKE == before
