"""pbb changes no state it does not own: a config reads no environment while it validates,
``run()`` puts back the library logging, warnings filters and progress bars it quiets, the
tokenizer is not written to, and the executors read no test hook from the environment."""

import logging
import warnings
from pathlib import Path

import pytest

from pbb import dist
from pbb.config import load_config
from pbb.errors import PbbError
from pbb.experiments import executors
from pbb.experiments import run as run_mod
from pbb.rows import chat

#: an RL batch that one process runs but two cannot share: 3 completions, groups of 3
ODD_RL = {"curricula": ["rl_only"], "rl.batch_size": 3, "rl.num_generations": 3}


# --- no environment in config validation --------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    ODD_RL,
    {"rl.batch_size": 2, "rl.num_generations": 4},  # once valid only under 2 processes (per process)
    {"rl.batch_size": 6, "rl.grad_accum": 2, "rl.num_generations": 4},
])
def test_a_config_validates_the_same_under_any_launch(overrides, monkeypatch):
    def outcome():
        try:
            return load_config(None, overrides).model_dump()
        except PbbError as e:
            return str(e)

    monkeypatch.setenv("WORLD_SIZE", "2")
    under_two = outcome()
    monkeypatch.delenv("WORLD_SIZE")
    assert outcome() == under_two
    # and validation never asks how many processes there are
    monkeypatch.setattr(dist, "world", lambda: pytest.fail("config validation read WORLD_SIZE"))
    assert outcome() == under_two


def test_a_config_written_under_a_launch_reloads_in_one_process(tmp_path, monkeypatch):
    from pbb.config import dump_config

    monkeypatch.setenv("WORLD_SIZE", "2")
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(load_config(None, ODD_RL)))
    monkeypatch.delenv("WORLD_SIZE")
    assert load_config(path).rl.batch_size == 3


def test_an_rl_batch_that_does_not_split_over_the_processes_is_refused_before_work(monkeypatch):
    cfg = load_config(None, {**ODD_RL, "model": "tiny-random"})
    run_mod.check_before_work(cfg)  # one process takes all 3
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PbbError) as e:
        run_mod.check_before_work(cfg)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("rl.batch_size: 3 completions") and "2 processes" in str(e.value)
    # a run without an RL stage does not use the RL batch: not refused for it
    run_mod.check_before_work(cfg.model_copy(update={"curricula": ["proactive"]}))


def test_rl_batch_size_is_the_batch_over_all_processes(monkeypatch):
    from pbb.training import grpo

    cfg = load_config(None, {"rl.batch_size": 8, "rl.num_generations": 4})
    args = grpo.grpo_args(cfg.rl, cfg.train, Path("/tmp/pbb-grpo-args"), 0, False, [1.0])
    assert args.per_device_train_batch_size == 8
    assert grpo.per_process_batch(cfg.rl, 2) == 4 and grpo.per_process_batch(cfg.rl, 8) == 1
    with pytest.raises(PbbError, match="multiple of 3"):
        grpo.per_process_batch(cfg.rl, 3)


# --- run() puts back what it quiets -------------------------------------------------------------


def _library_state() -> dict:
    import datasets
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    loggers = {name: logging.getLogger(name) for name in ("transformers", "datasets")}
    return {"loggers": {n: (lg.level, list(lg.handlers), lg.propagate, lg.disabled)
                        for n, lg in loggers.items()},
            "filters": list(warnings.filters),
            "bars": (hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled(),
                     datasets.utils.are_progress_bars_disabled()),
            "console_quiet": run_mod.console.quiet}


@pytest.mark.slow
def test_run_leaves_the_callers_logging_and_warnings_as_they_were(tmp_path, monkeypatch):
    from transformers.utils import logging as hf_logging

    # a caller with its own settings, none of them pbb's
    hf_logging.set_verbosity_info()
    monkeypatch.setattr(warnings, "filters", list(warnings.filters))  # the suite's own, restored
    warnings.filterwarnings("always", category=UserWarning, module="caller")
    before = _library_state()
    during = []
    real = run_mod.check_before_work
    monkeypatch.setattr(run_mod, "check_before_work",
                        lambda cfg: during.append(_library_state()) or real(cfg))
    try:
        cfg = load_config(Path("configs/quickstart.yaml"),
                          {"curricula": ["untuned"], "eval.modes": ["direct"]}, smoke=True)
        summary = run_mod.run(cfg, tmp_path / "r", progress=False)
        assert [r["curriculum"] for r in summary["results"]] == ["untuned"]
        assert _library_state() == before
        # and while it ran, the libraries were quiet
        assert during[0]["loggers"]["transformers"][0] == logging.ERROR
        assert during[0]["bars"] == (False, True, True) and during[0]["filters"] != before["filters"]
    finally:
        hf_logging.set_verbosity_warning()


# --- nothing written onto the tokenizer ---------------------------------------------------------


def test_encoding_rows_adds_no_attribute_to_the_tokenizer(tiny, rows, monkeypatch):
    from pbb.models import load_tokenizer

    tok = load_tokenizer(tiny[0])  # a tokenizer pbb has not rendered with yet
    tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)  # its own lazies
    attributes = dict(vars(tok))
    found = []
    real = chat._find_default_block
    monkeypatch.setattr(chat, "_find_default_block", lambda t: found.append(t) or real(t))
    encoded = [chat.encode_row(tok, r) for r in rows]
    assert vars(tok).keys() == attributes.keys()
    assert found == [tok]  # found once, then taken from the cache
    assert encoded == [chat.encode_row(tiny[1], r) for r in rows]  # as any tokenizer of the model


# --- no test hook in the executors --------------------------------------------------------------


def test_the_slurm_executor_takes_its_cluster_from_the_module_not_the_environment(tmp_path,
                                                                               monkeypatch):
    submitit = pytest.importorskip("submitit")
    asked = []

    class Stop(Exception):
        pass

    def executor(folder, cluster=None):
        asked.append(cluster)
        raise Stop

    monkeypatch.setattr(submitit, "AutoExecutor", executor)
    monkeypatch.setenv("PBB_SUBMITIT_CLUSTER", "local")
    with pytest.raises(PbbError, match="Stop"):
        executors.run_slurm([], tmp_path / "s", None)
    monkeypatch.setattr(executors, "SUBMITIT_CLUSTER", "local")
    with pytest.raises(PbbError, match="Stop"):
        executors.run_slurm([], tmp_path / "s", None)
    assert asked == [None, "local"]
