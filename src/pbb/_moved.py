"""Module names of the flat layout (pbb 0.1, every module directly under ``pbb``), resolved to
their homes in the subpackages.

Why: files written by earlier versions name modules: an lm-eval task folder exported before
imports ``pbb.lmeval`` from its ``utils.py``, and a Slurm job pickled by submitit names
``pbb.executors``. Those keep working, with a DeprecationWarning saying the new name. New code
imports the new names; nothing inside pbb goes through here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "backends": "evaluation.served", "chat": "rows.chat", "curricula": "rows.curricula",
    "efficiency": "experiments.efficiency", "evaluate": "evaluation.evaluate",
    "executors": "experiments.executors", "export": "interop.export",
    "generation": "evaluation.generation", "importers": "data.importers",
    "lmeval": "interop.lmeval", "metrics": "evaluation.metrics", "names": "domains.names",
    "packing": "training.packing", "parallel": "training.engine", "recall": "evaluation.recall",
    "render": "rows.render", "report": "evaluation.report", "rewards": "training.rewards",
    "rl": "training.grpo", "run": "experiments.run", "sandbox": "domains.sandbox",
    "sandbox_worker": "domains.sandbox_worker", "score": "interop.score",
    "sft": "training.sft", "sweep": "experiments.sweep", "templates": "domains.templates",
    "tracking": "experiments.tracking", "train": "training.stages",
}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import pbb.OLD`` gives the module ``pbb.NEW`` itself (one module object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, name = fullname.partition(".")
        if pkg == "pbb" and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = "pbb." + MOVED[spec.name.partition(".")[2]]
        warnings.warn(f"{spec.name} is now {new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
