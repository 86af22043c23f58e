"""``pbb run``: data -> each curriculum's stages -> evaluation -> summary, table, plot.

Everything lands in the run directory, whose layout :mod:`pbb.store` owns (also in
docs/concepts.md, Run directory): the resolved config, the data set, one directory per trained stage,
``curricula.json`` (curriculum -> its stage directories), the samples of every evaluation, and
the summary, report and plots.

Resume: starting the same command again skips finished stages (``done.json``) and finished
evaluations (``samples.jsonl``), resumes an interrupted stage from its checkpoint and an
interrupted evaluation from its partial samples. Stages are keyed by a hash of everything that
determines them (model, training settings, seed, rows, parent stage), so a stage shared by
several curricula is trained once.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
from pathlib import Path

from rich.console import Console

from pbb import clock, dist, folders
from pbb import data as data_mod
from pbb.config import (
    OPENAI_PREFIX,
    RunConfig,
    as_written_now,
    dump_config,
    holds_config,
)
from pbb.errors import PbbError
from pbb.evaluation import reuse
from pbb.evaluation.evaluate import (
    cut_warning,
    evaluate,
    gold_lengths,
    mean_cut,
    token_count,
)
from pbb.evaluation.report import build_summary, print_table, write_report, written
from pbb.experiments import rates
from pbb.experiments.tracking import Tracking, check_trackers
from pbb.folders import check_out
from pbb.jsonio import atomic_write_json, atomic_write_text, read_jsonl, read_text
from pbb.rows import curricula as curricula_mod
from pbb.store import (
    MODEL,
    RunStore,
    is_done,
    lock_when_made,
    stage_info,
    stage_key,
    stage_lock,
)
from pbb.training.engine import check_setup
from pbb.training.grpo import per_process_batch, train_rl_stage
from pbb.training.load import check_method, load_for_eval
from pbb.training.precision import release_memory, use_bf16
from pbb.training.rewards import reward_functions
from pbb.training.sft import train_sft

console = Console(stderr=True, soft_wrap=True)  # a message is one line in a log file


def same_run(cfg: RunConfig, out: Path) -> bool:
    """Whether ``out`` holds ``cfg``'s run already (its ``config.yaml`` says the same, settings
    moved since read at their new place). A run there under another config with work done is
    refused; one whose earlier attempt failed before any work may take the corrected config."""
    store = RunStore(out)
    if holds_config(store.config, cfg):
        return True
    if store.config.is_file() and store.has_work():  # the texts again, to name what differs
        old, text = as_written_now(read_text(store.config)), dump_config(cfg)
        diff = next((f"{a.strip()!r} -> {b.strip()!r}"
                     for a, b in zip(old.splitlines(), text.splitlines()) if a != b), "")
        raise PbbError(f"{out}: holds a run with a different config ({diff}); "
                       "use another --out to start a new run")
    return False


def prepare_run_dir(cfg: RunConfig, out: Path, ds: data_mod.DataSet,
                    made=lambda: None) -> None:
    """Make the run directory (marker, ``config.yaml``, the data set unless ``data.path``), or
    check that an existing one holds the same run. ``made`` is called once the folder exists,
    before the first write into it (:func:`start_run` takes the folder's lock there: another
    process may have made the folder since the checks).

    A run directory whose earlier attempt failed before any work (no stage, no evaluation) takes
    the corrected config: a failed attempt never blocks the fixed one.
    """
    text, store = dump_config(cfg), RunStore(out)
    path = store.config
    if same_run(cfg, out) and (ds.path is not None or (store.data / data_mod.MANIFEST).is_file()):
        folders.mark(out, "run")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        made()
        folders.mark(out, "run")
        atomic_write_text(path, text)
    except OSError as e:
        raise PbbError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    if ds.path is None:  # generated for this run: saved with it (a data set pbb wrote, replaced)
        data_mod.save(ds, store.data, force=True)


def open_data(cfg: RunConfig, out: Path,
              announce: bool = True) -> tuple[RunConfig, data_mod.DataSet]:
    """The run's data set, loaded or generated in memory (nothing written), and the config with
    its data block filled in from that data set where the config left keys out. ``announce``:
    say that a data set is being generated (a plan says where its data comes from itself).

    With ``data.path``, or a run directory's own ``data/``, every key the config does give must
    agree with the data set's manifest (one error naming the keys that disagree): a summary
    must never name a domain or size that did not run.
    """
    store = RunStore(out)
    own = store.data
    if cfg.data.path:
        cfg, ds = with_data_path(cfg)
    elif (own / data_mod.MANIFEST).is_file() and holds_config(store.config, cfg):
        # this run's own data set, resumed: generated from this very data block
        ds = data_mod.load(own)
        cfg = reconcile_data_block(cfg, ds, str(own), set(DATA_KEYS))
        if ds.seed != cfg.seed:
            raise PbbError(f"{own}: generated with seed {ds.seed}, the config says seed "
                           f"{cfg.seed}; use another --out")
    else:
        if announce:
            console.print(f"[bold]data[/]: generating {cfg.data.behaviours} "
                          f"{cfg.data.domain} behaviours")
        ds = data_mod.generate(cfg.data.domain, behaviours=cfg.data.behaviours,
                               demos=cfg.data.demos, test_inputs=cfg.data.test_inputs,
                               eval_fraction=cfg.data.eval_fraction, seed=cfg.seed,
                               options=cfg.data.options)
    if cfg.data.instruction_format == "nl":
        missing = next((b for b in ds.behaviours if not b.description), None)
        if missing is not None:
            raise PbbError(f"data.instruction_format: nl needs a description of every behaviour; "
                           f"{missing.id} (domain {ds.domain.name}) has none")
    return cfg, ds


def with_data_path(cfg: RunConfig) -> tuple[RunConfig, data_mod.DataSet]:
    """The data set at ``data.path``, and the config reconciled with it (see :func:`open_data`)."""
    path = Path(cfg.data.path)
    if not (path / data_mod.MANIFEST).is_file():
        raise PbbError(f"data.path {path}: not a data set directory (no {data_mod.MANIFEST})")
    ds = data_mod.load(path)
    return reconcile_data_block(cfg, ds, f"data.path {path}", cfg.data.model_fields_set), ds


#: the data block's keys that describe a data set (``path`` and ``instruction_format`` do not)
DATA_KEYS = ("domain", "behaviours", "demos", "test_inputs", "eval_fraction", "options")


def data_block_of(ds: data_mod.DataSet) -> dict:
    """The data block that describes ``ds``, as far as its records tell (``demos`` and
    ``test_inputs`` only where every behaviour has the same number, ``eval_fraction`` only
    where some but not all behaviours are eval behaviours)."""
    n, n_eval = len(ds.behaviours), len(ds.split("eval"))
    block: dict = {"domain": ds.domain.name, "behaviours": n,
                   "options": ds.domain_config.model_dump(mode="json")}
    for key, use in (("demos", "train"), ("test_inputs", "test")):
        per = {len(v) for v in ds.by_behaviour(use).values()}
        if len(per) == 1 and min(per) >= 1:
            block[key] = per.pop()
    if 0 < n_eval < n:
        block["eval_fraction"] = n_eval / n
    return block


def reconcile_data_block(cfg: RunConfig, ds: data_mod.DataSet, where: str,
                         given: set[str]) -> RunConfig:
    """Refuse a config whose ``given`` data keys disagree with ``ds``; fill in the others."""
    actual = data_block_of(ds)
    n = len(ds.behaviours)
    wrong = []
    for key in DATA_KEYS:
        if key not in given or key not in actual:
            continue
        mine, theirs = getattr(cfg.data, key), actual[key]
        if key == "eval_fraction":
            same = round(n * mine) == len(ds.split("eval"))
        elif key == "options":
            same = _domain_options(ds.domain, mine) == theirs
        else:
            same = mine == theirs
        if not same:
            wrong.append(f"{key} ({_short(mine)} in the config, {_short(theirs)} in the data set)")
    if wrong:
        raise PbbError(f"{where}: the config's data block disagrees with this data set: "
                       f"{'; '.join(wrong)}; fix those keys or leave them out")
    fill = {k: v for k, v in actual.items() if k not in given}
    if not fill:
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=fill)})


def _domain_options(domain, options: dict) -> dict | None:
    """``options`` resolved as ``domain``'s knobs, or None where they are not its knobs."""
    try:
        return data_mod.parse_domain_config(domain, options).model_dump(mode="json")
    except PbbError:
        return None


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def check_before_work(cfg: RunConfig) -> Path | str:
    """Fail fast on what the config cannot tell by itself; return where the model loads from."""
    from pbb.domains import get_domain
    from pbb.models import resolve_model_path

    if not cfg.data.path:  # else the data set's own domain decides (open_data)
        try:
            domain = get_domain(cfg.data.domain)
        except PbbError as e:
            raise PbbError(f"data.domain: {e}") from None
        data_mod.parse_domain_config(domain, cfg.data.options, where="data.options")
    use_bf16(cfg.train.precision, "train.precision")
    use_bf16(cfg.eval.precision, "eval.precision")
    if cfg.trains_rl():  # the RL batch is global: it must split over this launch's processes
        per_process_batch(cfg.rl, dist.world())
    check_trackers(cfg.train.report_to)
    check_method(cfg.train.method)
    check_setup(cfg.train.method)
    if cfg.eval.backend == "vllm":
        from pbb.evaluation.served import check_vllm

        check_vllm(cfg)
    if cfg.rl.use_vllm:
        from pbb.evaluation.served import check_rl_vllm

        check_rl_vllm()
    if cfg.eval.backend == "openai":
        from pbb.evaluation.served import check_server

        check_server(cfg)
        if cfg.model.startswith(OPENAI_PREFIX):
            return cfg.model  # nothing to load here: the server has it
    return resolve_model_path(cfg.model)


@contextlib.contextmanager
def quiet_libraries():
    """Keep the terminal for pbb's own progress while a run works (no per-map bars, no library
    chatter, one process speaking), and put back what it changed when the run returns, so a
    Python caller's logging, warnings filters and progress bars are as they were."""
    import warnings

    import datasets
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
              hub.are_progress_bars_disabled(), datasets.utils.are_progress_bars_disabled(),
              console.quiet)
    with warnings.catch_warnings():
        # renamed-argument notices from transformers about settings TRL passes, not the user's
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
        datasets.disable_progress_bars()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        console.quiet = not dist.is_main()  # one process speaks
        try:
            yield
        finally:
            verbosity, hf_bars, hub_off, datasets_off, console.quiet = before
            hf_logging.set_verbosity(verbosity)
            if hf_bars:
                hf_logging.enable_progress_bar()  # (the hub's bars too: set right below)
            if hub_off != hub.are_progress_bars_disabled():
                (hub.disable_progress_bars if hub_off else hub.enable_progress_bars)()
            if not datasets_off:
                datasets.enable_progress_bars()


@quiet_libraries()
def run(cfg: RunConfig, out: Path, progress: bool = True, stages_root: Path | None = None) -> dict:
    """One run; ``stages_root`` lets several runs (a sweep) share trained stages.

    Under ``accelerate launch`` every process runs this (:mod:`pbb.dist`): the main process
    prepares the run directory and data and writes every file; SFT stages train data parallel
    across the processes; evaluation is sharded across them.
    """
    dist.init()
    store = RunStore(out, stages_root)
    t0 = clock.now()
    with contextlib.ExitStack() as held:
        cfg, ds, base = start_run(cfg, store, held)
        return _run_started(cfg, ds, base, store, {"data": clock.now() - t0}, progress)


def _run_started(cfg: RunConfig, ds: data_mod.DataSet, base, store: RunStore, timing: dict,
                 progress: bool) -> dict:
    """What :func:`run` does once its folder and data set are in place and it holds the
    folder's lock: train and evaluate every curriculum, then write the summary."""
    from pbb.models import load_tokenizer

    main = dist.is_main()
    served = cfg.eval.backend == "openai"  # served models are evaluated, nothing trains here
    tok = None if served else load_tokenizer(base, cfg.model_options())
    if main:
        for warning in budget_warnings(cfg, ds, tok):
            console.print(f"[yellow]warning[/]: {warning}")
    built = curricula_mod.build_for_run(cfg, ds)
    tracking = Tracking(cfg.train.report_to if main else [], cfg.name, store.root)
    plan: dict[str, list[dict]] = {}
    try:
        for name, stages in built.items():
            plan[name], final = train_curriculum(cfg, ds, store, name, [] if served else stages,
                                                 base=base, tok=tok, timing=timing,
                                                 progress=progress, tracking=tracking)
            if main:
                atomic_write_json(store.curricula, plan)
            evaluate_curriculum(cfg, ds, store.root, name, final, base, tok, timing, progress,
                                trained=bool(stages))
            release_memory()

        if not main:
            dist.barrier()  # the main process writes the summary
            return {}
        summary = run_summary(cfg, ds, store, plan, timing)
        write_report(store.root, summary)
        tracking.log_results(summary)
        dist.barrier()
    finally:
        tracking.finish()
    print_table(summary)
    console.print(written(store.root))
    return summary


def budget_warnings(cfg: RunConfig, ds: data_mod.DataSet, tok, lengths=None) -> list[str]:
    """One line for each evaluation mode whose generation budget is shorter than some of its
    queries' gold completions (:func:`pbb.evaluation.evaluate.cut_completions`); none for a
    served model (no local tokenizer to count with). ``lengths(mode, max_train_behaviours)``:
    the gold completions' lengths where the caller has counted them already."""
    if tok is None:
        return []
    if lengths is None:
        def lengths(mode: str, max_train: int | None) -> list[int]:
            return gold_lengths(ds, mode, tok, cfg.eval.max_test_inputs, max_train,
                                cfg.data.instruction_format)
    found = (cut_warning(mode, lengths(mode, cfg.eval.max_train_behaviours),
                         cfg.eval.max_new_tokens[mode]) for mode in cfg.eval.modes)
    return [w for w in found if w]


def start_run(cfg: RunConfig, store: RunStore, held: contextlib.ExitStack
              ) -> tuple[RunConfig, data_mod.DataSet, Path | str]:
    """Check everything, then (the main process; the others wait) write the run directory and
    its data set; returns the config with its data block filled in, the data set, and where
    the model loads from. Every check comes before the first write: a failed start leaves
    nothing behind. The main process takes the folder's lock into ``held`` as soon as the
    folder exists, before it writes there (:func:`pbb.store.folder_lock`): after the checks,
    and again before the first write (a folder another process made meanwhile is its)."""
    lock = lock_when_made(held, store.root, "run")
    dist.on_main(lambda: (check_out(store.root, "run", replace=False), lock()))
    base = check_before_work(cfg)
    cfg, ds = open_data(cfg, store.root)
    dist.on_main(lambda: (lock(), prepare_run_dir(cfg, store.root, ds, made=lock)))
    return cfg, ds, base


def train_curriculum(cfg: RunConfig, ds, store: RunStore, name: str, stages: list, *, base, tok,
                     timing: dict, progress: bool,
                     tracking: Tracking) -> tuple[list[dict], Path | str]:
    """Train each stage of one curriculum from the one before it, reusing those trained
    earlier (by this run or any run sharing the stage store); returns the curriculum's entries
    of ``curricula.json`` and its final model (``base`` when it trains nothing)."""
    main = dist.is_main()
    parent, init, entries = "base", base, []
    for st in stages:
        key = stage_key(cfg, parent, st.rows, st.trainer, st)
        sdir = store.stage_dir(st.name, key)
        entries.append({"stage": st.name, "dir": os.path.relpath(sdir, store.root),
                        "rows": len(st.rows)})
        # a stage two sweep jobs need is trained once (the main process holds the lock)
        with stage_lock(sdir) if main else contextlib.nullcontext():
            if dist.broadcast(is_done(sdir) if main else None):
                console.print(f"[dim]{name}/{st.name}: done earlier, reusing {sdir.name}[/]")
            else:
                t, shares = clock.now(), dist.share_changes()
                info = train_one_stage(cfg, ds, st, init=init, base=base, tok=tok,
                                       stage_dir=sdir, label=f"{name}/{st.name}",
                                       progress=progress,
                                       on_metrics=tracking.stage_logger(sdir.name))
                release_memory()
                # with the lives before a resume (their time up to their last checkpoint)
                timing[f"train {name}/{st.name}"] = clock.now() - t + info.get("seconds_before", 0)
                if main and shares == dist.share_changes():  # the plan's times (pbb plan)
                    rates.record_stage(rates.machine_key(cfg.model), info)  # of one share
        parent, init = key, sdir / MODEL
    return entries, init


def run_summary(cfg: RunConfig, ds, store: RunStore, plan: dict[str, list[dict]],
                timing: dict) -> dict:
    """``summary.json``: the results from the samples files, each curriculum's stages with
    their records, the timings and peak memory, and where the answers came from."""
    summary = {**build_summary(store.root, cfg, ds),
               "stages": {n: [dict(e, **stage_info(store.root / e["dir"])) for e in es]
                          for n, es in plan.items()},
               "evals": kept_evaluations(cfg, ds, store, plan),
               "timing": {k: round(v, 1) for k, v in timing.items()},
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dist.launched():
        summary["processes"] = dist.world()
    if cfg.eval.backend == "openai":
        from pbb.evaluation.served import served_model

        summary["served_models"] = {n: served_model(cfg, n) for n in cfg.curricula}
    return summary


def kept_evaluations(cfg: RunConfig, ds, store: RunStore, plan: dict[str, list[dict]]) -> dict:
    """``curriculum/mode`` -> where its evaluation is kept for other runs and how long it took
    (what ``pbb claims`` counts as the cost of an evaluation a claim took from another)."""
    out = {}
    for name, entries in plan.items():
        if not entries:
            continue
        for mode in cfg.eval.modes:
            where = shared_evaluation(cfg, ds, store.root / entries[-1]["dir"], mode,
                                      cfg.eval.max_train_behaviours)
            if where is not None and reuse.is_kept(where):
                out[f"{name}/{mode}"] = {"dir": os.path.relpath(where, store.root),
                                         "seconds": reuse.seconds_of(where)}
    return out


def recall_checker(cfg: RunConfig, ds, tok, behaviour_ids: list[str], generator_for=None):
    """A function model -> {"recall", "n"}: recall of these behaviours' instructions by the
    Generator ``generator_for(model)``; by default that model in this process, greedy."""
    from pbb.evaluation.evaluate import build_queries, recall_rate

    wanted = set(behaviour_ids)
    queries = [q for q in build_queries(ds, "recall", fmt=cfg.data.instruction_format)
               if q["behaviour_id"] in wanted]
    generator_for = generator_for or (lambda model: _hf_generator(cfg, model, tok))
    return lambda model: recall_rate(generator_for(model), queries,
                                     max_new_tokens=cfg.eval.max_new_tokens["recall"])


def train_one_stage(cfg: RunConfig, ds, st, *, init, base, tok, stage_dir: Path, label: str,
                    progress: bool, on_metrics=None) -> dict:
    """Train one stage (SFT or RL) with its own settings; returns its ``done.json``."""
    train = cfg.train.for_stage(st.name, st.train)
    if st.trainer == "rl":
        replayed = len(st.replayed_rows)
        beside = f", {replayed} rows replayed by SFT beside it" if replayed else ""
        console.print(f"[bold]{label}[/]: GRPO on {len(st.own_rows)} prompts{beside} -> "
                      f"{stage_dir.name}")
        info = train_rl_stage(st.rows, init=init, base=base, tokenizer=tok, cfg=train, rl=cfg.rl,
                              stage_dir=stage_dir, seed=cfg.seed,
                              rewards=reward_functions(ds, cfg.rl.format_weight),
                              progress=progress, system_prompt=cfg.chat.system_prompt,
                              on_metrics=on_metrics, model_options=cfg.model_options())
        same = info.get("frac_correct_zero_std")
        signal = "" if same is None else f", {same:.0%} of groups without a correctness signal"
        console.print(f"  {info['steps']} steps, reward {info.get('reward_first', 0):.3f}"
                      f" -> {info.get('reward_last', 0):.3f}{signal}, {info['seconds']:.0f} s")
        return info
    rule = cfg.train.stopping_rule(st.name, st.train)
    ids = st.recall_ids
    check = recall_checker(cfg, ds, tok, ids) if ids and (rule or cfg.train.recall_after_stage) \
        else None
    how = (f"until recall >= {rule[0]:.0%} of {len(ids)} instructions (at most {rule[1]} epochs)"
           if rule else f"{train.epochs:g} epoch(s)")
    console.print(f"[bold]{label}[/]: training on {len(st.rows)} rows, {how}, lr "
                  f"{train.learning_rate:g} -> {stage_dir.name}")
    info = train_sft(st.rows, init=init, base=base, tokenizer=tok, cfg=train, stage_dir=stage_dir,
                     seed=cfg.seed, progress=progress, system_prompt=cfg.chat.system_prompt,
                     recall_check=check, recall_target=rule[0] if rule else None,
                     max_epochs=rule[1] if rule else None, on_metrics=on_metrics,
                     model_options=cfg.model_options())
    recall = "".join(f", recall {r['recall']:.0%} after epoch {r['epoch']}" for r in info["recall"])
    console.print(f"  {info['steps']} steps ({info['epochs']:g} epochs), loss "
                  f"{info['train_loss']:.3f}, {info['tokens_per_row']:.0f} tokens/row, "
                  f"{rate_text(info.get('rows_per_second'))}, {info['seconds']:.0f} s{recall}")
    return info


def rate_text(rows_per_second: float | None) -> str:
    """A stage's training rate for the log; a stage resumed at its last step trained nothing."""
    return "no step left" if rows_per_second is None else f"{rows_per_second:.2f} rows/s"


def evaluate_curriculum(cfg: RunConfig, ds, out: Path, name: str, model_dir, base, tok,
                        timing: dict, progress: bool, trained: bool = True) -> None:
    """Every pending eval mode of one curriculum's final model.

    An untrained model (``untuned``) is evaluated on eval behaviours only: it has seen neither
    split, so its train-behaviour queries would measure the same thing again at the same cost.
    A trained model's evaluation is kept in its final stage's directory, and taken from there
    when another run evaluated the same model the same way (:mod:`pbb.evaluation.reuse`).
    """
    store = RunStore(out)
    pending = [m for m in cfg.eval.modes if not store.samples(name, m).is_file()]
    max_train = cfg.eval.max_train_behaviours if trained else 0
    if trained and dist.is_main():
        share_finished(cfg, ds, store, name, model_dir,
                       [m for m in cfg.eval.modes if m not in pending], max_train)
    if not pending:
        console.print(f"[dim]{name}: evaluation done earlier[/]")
        return
    kept = {m: where for m in pending if trained and (where := shared_evaluation(
        cfg, ds, Path(model_dir).parent, m, max_train)) is not None}  # model_dir: STAGE/model
    for mode, where in kept.items():
        if dist.broadcast(reuse.is_kept(where) if dist.is_main() else None):
            if dist.is_main():
                reuse.take(where, store.eval_dir(name, mode), name)
            dist.barrier()
            pending.remove(mode)
            console.print(f"  eval {name}/{mode}: evaluated earlier by another run, taken from "
                          f"{os.path.relpath(where, store.root)}")
    if not pending:
        return
    with _generation(cfg, out, name, model_dir, base, tok) as generator:
        for mode in pending:
            fresh = not store.eval_dir(name, mode).exists()  # (a resumed one has no rate)
            t, shares = clock.now(), dist.share_changes()
            samples = evaluate(generator, ds, curriculum=name, mode=mode,
                               out_dir=store.eval_dir(name, mode),
                               max_new_tokens=cfg.eval.max_new_tokens[mode],
                               max_test_inputs=cfg.eval.max_test_inputs, progress=progress,
                               max_train_behaviours=max_train,
                               fmt=cfg.data.instruction_format)
            timing[f"eval {name}/{mode}"] = clock.now() - t
            if dist.is_main():
                if fresh and shares == dist.share_changes():  # (and of one share of the cores)
                    written = None if tok is None else mean_cut(
                        [token_count(tok, s["completion"]) for s in samples],
                        cfg.eval.max_new_tokens[mode])
                    rates.record_eval(rates.machine_key(cfg.model), mode, len(samples),
                                      timing[f"eval {name}/{mode}"], written)
                if mode in kept:
                    reuse.keep(kept[mode], samples, timing[f"eval {name}/{mode}"],
                               {"mode": mode, "run": str(store.root.resolve()),
                                "curriculum": name})
            acc = sum(s["score"] for s in samples) / max(1, len(samples))
            console.print(f"  eval {name}/{mode}: {len(samples)} queries, mean score {acc:.3f}")


def share_finished(cfg: RunConfig, ds, store: RunStore, name: str, model_dir, modes: list[str],
                   max_train_behaviours: int | None) -> None:
    """Keep the run's finished evaluations in ``modes`` for other runs where they are not kept yet.

    An evaluation writes the run's samples first and the stage's shared copy after
    (:func:`evaluate_curriculum`); a run killed between the two is done with that mode, so its
    resume evaluates nothing and would never share it: later runs of the same model would
    evaluate it again. Its time is unknown here (kept as 0, which
    :func:`pbb.evaluation.reuse.seconds_of` reads as unknown). The key is this process's: a run
    resumed on another kind of device or number of processes than the one that evaluated files
    that evaluation under its own (the same model, queries and generation settings; greedy
    decoding on another device may differ in a rare token).
    """
    for mode in modes:
        where = shared_evaluation(cfg, ds, Path(model_dir).parent, mode, max_train_behaviours)
        if where is None or reuse.is_kept(where):
            continue
        samples = read_jsonl(store.samples(name, mode))
        reuse.keep(where, samples, 0.0,
                   {"mode": mode, "run": str(store.root.resolve()), "curriculum": name})
        console.print(f"  eval {name}/{mode}: finished earlier, now kept for other runs in "
                      f"{os.path.relpath(where, store.root)}")


def shared_evaluation(cfg: RunConfig, ds, stage_dir: Path, mode: str,
                      max_train_behaviours: int | None) -> Path | None:
    """Where an evaluation of the model of ``stage_dir`` in ``mode`` is kept for other runs
    (None for a served model: no stage of this machine's)."""
    if cfg.eval.backend == "openai":
        return None
    return reuse.kept(stage_dir, cfg, ds, mode, max_train_behaviours,
                      dist.device().split(":")[0])


@contextlib.contextmanager
def _generation(cfg: RunConfig, out: Path, name: str, model_dir, base, tok):
    """The Generator for one curriculum's evaluation, by ``eval.backend``: the model in this
    process (hf), a served model (openai), or a ``vllm serve`` started on this model and stopped
    afterwards (vllm)."""
    import torch

    if cfg.eval.backend == "openai":
        from pbb.evaluation.generators import OpenAIGenerator
        from pbb.evaluation.served import served_model

        yield OpenAIGenerator.from_config(cfg, served_model(cfg, name))
        return
    if cfg.eval.backend == "vllm":
        from pbb.evaluation.generators import VLLMGenerator
        from pbb.training.load import is_adapter

        if is_adapter(Path(model_dir)):
            raise PbbError(f"eval.backend: vllm serves full models; {name}'s final stage is a LoRA "
                           "adapter (train.method: full, or eval.backend: hf)")
        with VLLMGenerator(cfg, model_dir, tok, RunStore(out).vllm_log(name)) as generator:
            yield generator
        return
    model = load_for_eval(model_dir, base, cfg.model_options())
    dtype = torch.bfloat16 if use_bf16(cfg.eval.precision, "eval.precision") else torch.float32
    model = model.to(dist.device(), dtype=dtype).eval()
    try:
        yield _hf_generator(cfg, model, tok, temperature=cfg.eval.temperature)
    finally:
        del model


def _hf_generator(cfg: RunConfig, model, tok, temperature: float = 0.0):
    """``model`` in this process with the run's evaluation settings (greedy by default)."""
    from pbb.evaluation.generators import HFGenerator

    return HFGenerator(model, tok, batch_size=cfg.eval.batch_size, temperature=temperature,
                       system_prompt=cfg.chat.system_prompt, engine=cfg.eval.generator)
