"""pbb from Python: the calls a script or a notebook needs (``pbb.make_data``, ``pbb.run``, ...;
the names of :data:`pbb.__all__`, loaded on first use).

Why a separate layer: the command line is one way in, but an experiment that varies a setting in
a loop, or looks at a curriculum's rows before training on them, wants functions that take and
return Python objects. Each call here is a thin wrapper over the function the command line
calls, so a script and ``pbb run`` do the same work and write the same files; what the wrappers
add is the forms a researcher has at hand: a config as a YAML path, a mapping of the same keys
or a :class:`~pbb.config.RunConfig`; a data set as a directory or a :class:`~pbb.data.DataSet`.

Only this module's light imports run at ``import pbb.api``: torch and transformers load when a
call needs them, so making data and reading configs stay fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pbb import data as data_mod
from pbb.config import RunConfig
from pbb.data import DataSet
from pbb.errors import PbbError
from pbb.store import out_dir

__all__ = ["load_config", "make_data", "load_data", "build_stages", "plan", "run", "evaluate",
           "score"]

Config = str | Path | dict | RunConfig | None


def load_config(config: Config = None, overrides: dict | None = None, *,
                smoke: bool = False) -> RunConfig:
    """A validated run config from a YAML file, a mapping of the same keys, or a RunConfig
    (``None``: every default), with dotted ``overrides`` as ``--set`` gives them
    (``{"train.epochs": 2}``) and ``smoke`` as ``--smoke``.

    Why: every call below takes its config in any of these forms; this is how they read it,
    with the same checks and one-line errors as ``pbb run``.
    """
    from pbb import config as config_mod

    if isinstance(config, RunConfig):
        config = config.model_dump(mode="json")
    return config_mod.load_config(config, overrides, smoke)


def make_data(domain: str, *, behaviours: int = 100, demos: int = 20, test_inputs: int = 10,
              eval_fraction: float = 0.5, seed: int = 0, out: str | Path | None = None,
              force: bool = False, **options) -> DataSet:
    """Generate a data set of ``domain`` (``arithmetic``, ``algorithms``, ``ciphers``,
    ``grammars``), deterministic in ``seed``; ``options`` are the domain's knobs
    (``max_statements=3``). With ``out`` it is also saved there, as ``pbb data generate
    DOMAIN --out DIR`` saves it, so that a run can use it (``pbb.run(..., data=ds)``).

    Why: the same defaults and files as the command, from Python, without torch.
    """
    if out is not None:
        from pbb.folders import check_out

        check_out(Path(out), "data", force=force)  # before the work, as the command does
    ds = data_mod.generate(domain, behaviours=behaviours, demos=demos, test_inputs=test_inputs,
                           eval_fraction=eval_fraction, seed=seed, options=options,
                           progress=False)
    if out is not None:
        data_mod.save(ds, Path(out), force=force)
    return ds


def load_data(path: str | Path) -> DataSet:
    """A data set directory (``pbb data generate``, ``pbb data import``, :func:`make_data`)."""
    return data_mod.load(Path(path))


def build_stages(curriculum: str, data: DataSet | str | Path, config: Config = None) -> list:
    """The stages (:class:`pbb.rows.curricula.Stage`: name, rows, trainer) that ``curriculum``
    trains on ``data``, in order, with ``config``'s curriculum settings (replay, repeats, custom
    curricula; defaults without one). Rows are chat messages: ``row["prompt"]``,
    ``row["completion"]``.

    Why: to see exactly what a model will be trained on, before any training.
    """
    from pbb.rows.curricula import build

    cfg = load_config(config)
    return build(curriculum, _data(data), cfg.curriculum, cfg.data.instruction_format)


def plan(config: Config, out: str | Path | None = None, *, overrides: dict | None = None,
         data: DataSet | str | Path | None = None, smoke: bool = False,
         stages_root: str | Path | None = None):
    """What :func:`run` would do with these arguments (``pbb plan``): a
    :class:`pbb.experiments.plan.Plan` of stages, evaluations and expected time (``print`` it
    for the command's text). Nothing is written in ``out`` and nothing trains (a model used for
    the first time is put in the model cache, ``$PBB_CACHE``, as :func:`run` would).
    ``data``: a saved data set to plan on, as :func:`run` takes it."""
    from pbb.experiments.plan import make_plan

    cfg = load_config(config, _with_data(overrides, data), smoke=smoke)
    return make_plan(cfg, out_dir(cfg.name, out, smoke), _stage_store(stages_root, write=False))


def run(config: Config, out: str | Path | None = None, *, overrides: dict | None = None,
        data: DataSet | str | Path | None = None, smoke: bool = False, progress: bool = True,
        stages_root: str | Path | None = None) -> dict:
    """Run a config as ``pbb run`` does (data, each curriculum's stages, evaluation, report)
    into ``out`` (default ``runs/<name>``, resumed when it holds this run) and return the
    summary (``summary.json``: ``results`` holds one accuracy per curriculum, mode and split).

    ``data``: a saved data set to run on (it sets ``data.path``; the config's data keys must
    then agree with it, or be left out).
    """
    from pbb.experiments.run import run as run_config

    cfg = load_config(config, _with_data(overrides, data), smoke=smoke)
    return run_config(cfg, out_dir(cfg.name, out, smoke), progress=progress,
                      stages_root=_stage_store(stages_root))


def evaluate(model: str | Path, data: DataSet | str | Path, out: str | Path, *, curriculum: str,
             config: Config = None, overrides: dict | None = None,
             modes: list[str] | None = None, progress: bool = True) -> dict:
    """Evaluate a model on a data set's queries as ``pbb run`` evaluates a curriculum's final
    model, into the run directory ``out`` (``eval/<curriculum>/<mode>/samples.jsonl``,
    ``summary.json``, ``report.md``; resumed when it holds this evaluation); returns the summary.

    ``model``: a model directory (a stage's ``model/``, or any saved model), a model name
    (``tiny-random``, a Hugging Face id), or a LoRA adapter directory (on ``config``'s model).
    ``curriculum`` names what the model was trained with, as ``pbb score --curriculum`` does:
    it labels the results and sets the queries (``untuned``: eval behaviours only). Settings
    (modes, batch size, max new tokens...) are ``config``'s ``eval`` section, ``modes`` first.

    Why: a model trained elsewhere, or a stage of a run, measured with pbb's queries and
    verifiers and nothing else of a run.
    """
    from pbb.evaluation.report import build_summary, write_report
    from pbb.experiments.run import evaluate_curriculum, start_run
    from pbb.models import load_tokenizer
    from pbb.rows.curricula import build
    from pbb.store import RunStore
    from pbb.training.load import is_adapter

    sets = {**_with_data(overrides, data), "curricula": [curriculum]}
    if modes:
        sets["eval.modes"] = list(modes)
    if not is_adapter(Path(model)):  # the model evaluated is the run's model
        sets["model"] = str(Path(model).resolve()) if Path(model).exists() else str(model)
    cfg = load_config(config, sets)
    store = RunStore(Path(out))
    with contextlib.ExitStack() as held:  # the run folder's lock, as a run holds it
        cfg, ds, base = start_run(cfg, store, held)
        model_dir = Path(model) if is_adapter(Path(model)) else base
        tok = load_tokenizer(base, cfg.model_options())
        trained = bool(build(curriculum, ds, cfg.curriculum, cfg.data.instruction_format))
        evaluate_curriculum(cfg, ds, store.root, curriculum, model_dir, base, tok, {}, progress,
                            trained=trained)
        summary = {**build_summary(store.root, cfg, ds), "evaluated_model": str(model)}
        write_report(store.root, summary)
        return summary


def score(source: str | Path, completions: str | Path, out: str | Path, *, curriculum: str,
          config: str | Path | None = None, force: bool = False) -> dict:
    """Score completions produced elsewhere (JSONL keyed by the ``custom_id`` of ``pbb export
    openai``'s queries, Batch API output, or lm-eval's logged samples) with pbb's verifiers, as
    ``pbb score`` does; ``source`` is the run or data set the queries came from. Writes a run
    directory at ``out`` and returns its summary.

    Why: a hosted or served model's answers measured exactly as a local model's are.
    """
    from pbb.interop.score import score as score_completions

    return score_completions(Path(source), Path(completions), Path(out), curriculum=curriculum,
                             config=None if config is None else Path(config), force=force)


def _stage_store(stages_root: str | Path | None, write: bool = True) -> Path | None:
    """``stages_root`` checked to be a stage store (pbb.folders.check_stage_store), or None."""
    if stages_root is None:
        return None
    from pbb.folders import check_stage_store

    return check_stage_store(Path(stages_root), write)


def _data(data: DataSet | str | Path) -> DataSet:
    return data if isinstance(data, DataSet) else load_data(data)


def _with_data(overrides: dict | None, data: DataSet | str | Path | None) -> dict:
    """``overrides`` with ``data.path`` set to a saved data set (a run names its data set)."""
    if data is None:
        return dict(overrides or {})
    if isinstance(data, DataSet):
        if data.path is None:
            raise PbbError("data: a data set that was never saved; a run names its data set by "
                           "its directory: make it with pbb.make_data(..., out=DIR)")
        data = data.path
    return {**(overrides or {}), "data.path": str(Path(data).resolve())}

