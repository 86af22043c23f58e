"""Files written by earlier versions (the flat layout, every module directly under ``pbb``)
still work: they name modules by their old names, which resolve to the new ones."""

import importlib
import pickle
import sys
import warnings

import pytest

from pbb import _moved
from pbb.config import load_config
from pbb.interop.export import eval_queries
from pbb.interop.lmeval import _UTILS, write_task_folder

#: the ``utils.py`` that ``pbb export lm-eval`` wrote into task folders before the subpackages:
#: today's, but for the module it imports
OLD_UTILS = _UTILS.replace("from pbb.interop import lmeval", "from pbb import lmeval")
assert OLD_UTILS != _UTILS

#: submitit's pickle of a sweep point's job function, as the flat layout wrote it
OLD_JOB = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\rpbb.executors\x94\x8c\trun_point\x94\x93\x94."


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_module_name_is_the_new_module_with_a_warning(old, monkeypatch):
    monkeypatch.delitem(sys.modules, f"pbb.{old}", raising=False)  # as in a fresh process
    with pytest.warns(DeprecationWarning, match=f"pbb.{old} is now pbb.{_moved.MOVED[old]}"):
        mod = importlib.import_module(f"pbb.{old}")
    assert mod is importlib.import_module(f"pbb.{_moved.MOVED[old]}")


def test_an_lm_eval_task_folder_exported_before_still_scores(arith_set, tmp_path):
    cfg = load_config("configs/quickstart.yaml", smoke=True)
    write_task_folder(cfg, arith_set, tmp_path, {"cot": eval_queries(cfg, arith_set, "cot")})
    (tmp_path / "utils.py").write_text(OLD_UTILS)
    spec = importlib.util.spec_from_file_location("old_task_utils", tmp_path / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(utils)
    docs = list(utils.load_docs(mode="cot", split="eval")["test"])
    traces = {(d.behaviour_id, d.input): d.trace for d in arith_set.demonstrations}
    assert docs and all(utils.process_results(d, [traces[(d["behaviour_id"], d["input"])]]) ==
                        {"acc": 1.0} for d in docs)
    assert all(utils.process_results(d, ["Answer: junk"]) == {"acc": 0.0} for d in docs)


def test_a_sweep_job_pickled_before_unpickles_to_todays_job_function():
    from pbb.experiments.executors import run_point

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert pickle.loads(OLD_JOB) is run_point


def test_unknown_names_are_still_import_errors():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pbb.no_such_module")
