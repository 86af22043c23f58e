"""The run store (:mod:`pbb.store`) is the one place that spells a run directory's file names,
finds a run's data set and keys its stages: no other module of src/pbb writes a run file's name
as a string, and the exports and reports find what a run wrote through the store."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pbb import data as data_mod
from pbb.config import RunConfig, dump_config
from pbb.errors import PbbError
from pbb.folders import kind_of
from pbb.store import FILE_NAMES, RUN_FILES, RunStore, SweepStore, stage_key

SRC = Path(__file__).resolve().parent.parent / "src" / "pbb"


def spelled_names(source: str, names=FILE_NAMES) -> list[tuple[int, str]]:
    """(line, name) for every string constant in ``source`` equal to one of ``names`` (the
    literal parts of f-strings included: ``f"checkpoint-{step}"`` spells ``checkpoint-``)."""
    return sorted((node.lineno, node.value) for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and node.value in names)


def test_no_module_but_the_store_spells_a_run_file_name():
    found = [f"{path.relative_to(SRC.parent)}:{line}: {name!r}"
             for path in sorted(SRC.rglob("*.py")) if path != SRC / "store.py"
             for line, name in spelled_names(path.read_text())]
    assert not found, "use pbb.store's names:\n" + "\n".join(found)


def test_the_scan_finds_a_spelled_name():
    source = ('"""A docstring naming summary.json in prose is no file name."""\n'
              'SAMPLES = "samples.jsonl"\n'
              'def f(d, step):\n'
              '    return d / f"checkpoint-{step}", d / "model", "summary.json.bak"\n')
    assert spelled_names(source) == [(2, "samples.jsonl"), (4, "checkpoint-")]


def _run_dir_with_its_data(root: Path, cfg: RunConfig) -> None:
    ds = data_mod.generate("arithmetic", behaviours=4, demos=1, test_inputs=1,
                           eval_fraction=0.5, seed=0, progress=False)
    data_mod.save(ds, RunStore(root).data)
    RunStore(root).config.write_text(dump_config(cfg))


def test_a_run_without_data_path_finds_its_own_data_set_and_one_with_it_the_named_one(tmp_path):
    from pbb.interop.export import open_source

    plain = RunConfig(**{"data": {"domain": "arithmetic"}})
    assert RunStore(tmp_path / "r").data_dir(plain) == tmp_path / "r" / "data"
    _run_dir_with_its_data(tmp_path / "r", plain)
    assert open_source(tmp_path / "r")[1].path == tmp_path / "r" / "data"

    other = tmp_path / "elsewhere"
    data_mod.save(data_mod.generate("arithmetic", behaviours=6, demos=1, test_inputs=1,
                                    eval_fraction=0.5, seed=0, progress=False), other)
    named = RunConfig(**{"data": {"domain": "arithmetic", "path": str(other)}})
    assert RunStore(tmp_path / "r").data_dir(named) == other
    RunStore(tmp_path / "r").config.write_text(dump_config(named))
    _, ds = open_source(tmp_path / "r")
    assert ds.path == other and len(ds.behaviours) == 6  # not the run's own 4


def test_a_sweeps_points_share_its_stage_store(tmp_path):
    sweep = SweepStore(tmp_path)
    a, b = sweep.run("p0"), sweep.run("p1")
    assert a.root == tmp_path / "runs" / "p0" and a.root == tmp_path / sweep.run_rel("p0")
    assert a.stage_dir("stage1", "abc") == b.stage_dir("stage1", "abc") \
        == tmp_path / "stages" / "stage1-abc"
    assert RunStore(tmp_path / "alone").stage_dir("stage1", "abc") \
        == tmp_path / "alone" / "stages" / "stage1-abc"


def test_a_run_directory_has_work_once_a_stage_or_evaluation_wrote_into_it(tmp_path):
    store = RunStore(tmp_path)
    (tmp_path / "stages").mkdir()
    store.config.write_text("x: 1\n")
    assert not store.has_work()  # an empty stage store is no work
    store.samples("proactive", "cot").parent.mkdir(parents=True)
    store.samples("proactive", "cot").write_text("")
    assert store.has_work()


def test_an_unmarked_folder_of_run_files_is_a_run_and_one_more_file_makes_it_a_users(tmp_path):
    for name in RUN_FILES:
        (tmp_path / name).write_text("")
    assert kind_of(tmp_path) == "run"
    (tmp_path / "notes.txt").write_text("mine")
    assert kind_of(tmp_path) is None


def test_stage_keys_come_from_the_store_alone_without_the_orchestrator_or_torch():
    """The exports and reports key stages with the store; it needs neither the orchestrator
    nor the deep-learning stack, and keys as the orchestrator does."""
    rows = [{"prompt": [{"role": "user", "content": "q"}], "completion": [
        {"role": "assistant", "content": "a"}]}]
    code = ("import sys\n"
            "from pbb.config import RunConfig\n"
            "from pbb.store import stage_key\n"
            f"print(stage_key(RunConfig(), 'base', {rows!r}))\n"
            "print(sorted(m for m in ('torch', 'transformers', 'pbb.experiments.run',\n"
            "                         'pbb.training') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    key, loaded = r.stdout.strip().splitlines()[-2:]
    assert loaded == "[]"
    from pbb.experiments import run as run_mod

    assert key == stage_key(RunConfig(), "base", rows) == run_mod.stage_key(RunConfig(), "base", rows)


def test_a_folder_holding_only_a_stage_store_is_a_claims_folder_and_anything_beside_it_a_users(
        tmp_path):
    # `pbb sweep --stages-root runs/claims/stages` makes runs/claims with its stages only: the
    # claims share their stages there, so `pbb claims` must reuse them, not refuse the folder
    from pbb.folders import check_out

    (tmp_path / "stages").mkdir()
    assert kind_of(tmp_path) is None  # an empty folder named stages: not shown to be pbb's
    (tmp_path / "stages" / "stage1-0123456789ab").mkdir()
    assert kind_of(tmp_path) == "claims"
    assert check_out(tmp_path, "claims", replace=False) == tmp_path.parent
    with pytest.raises(PbbError, match="holds a pbb claims folder, not a sweep folder"):
        check_out(tmp_path, "sweep", replace=False)
    (tmp_path / "stages" / "notes.txt").write_text("mine")  # not a stage store any more
    assert kind_of(tmp_path) is None
    (tmp_path / "stages" / "notes.txt").unlink()
    (tmp_path / "notes.txt").write_text("mine")  # a user's file beside the store
    assert kind_of(tmp_path) is None


def test_a_finished_stage_records_the_digest_of_the_weights_it_saved(tmp_path):
    """``done.json`` names the saved weights by their sha256, so that two stage directories of
    one key can be told to hold the same model or not; a stage that saved none records none."""
    import hashlib
    import json

    from pbb.store import DONE, MODEL, finish_stage

    def finished(name: str, files: dict[str, bytes]) -> dict:
        stage = tmp_path / name
        (stage / MODEL).mkdir(parents=True)
        for f, data in files.items():
            (stage / MODEL / f).write_bytes(data)
        finish_stage(stage, {"seconds": 1.0, "resumed": False, "processes": 1})
        return json.loads((stage / DONE).read_text())

    one = finished("a", {"model.safetensors": b"weights", "config.json": b"{}"})
    assert one["weights_sha256"] == hashlib.sha256(b"model.safetensors\0weights").hexdigest()
    same = finished("b", {"model.safetensors": b"weights", "config.json": b'{"x": 1}'})
    assert same["weights_sha256"] == one["weights_sha256"]  # the weights alone count
    other = finished("c", {"model.safetensors": b"weightz"})
    assert other["weights_sha256"] != one["weights_sha256"]
    sharded = finished("d", {"model-2.safetensors": b"b", "model-1.safetensors": b"a"})
    assert sharded["weights_sha256"] == hashlib.sha256(
        b"model-1.safetensors\0a" + b"model-2.safetensors\0b").hexdigest()
    assert "weights_sha256" not in finished("e", {})
