"""``pbb run``: data -> each curriculum's stages -> evaluation -> summary, table, plot.

Everything lands in the run directory (the contract, also in README.md, section Run directory)::

    runs/<name>/config.yaml                      resolved config (defaults filled in)
    runs/<name>/data/                            the data set (or data.path in the config)
    runs/<name>/stages/<stage>-<key>/            model/, metrics.jsonl, done.json
                                                 (RL stages also rollouts.jsonl)
    runs/<name>/curricula.json                   curriculum -> its stage directories
    runs/<name>/eval/<curriculum>/<mode>/samples.jsonl
    runs/<name>/summary.json, report.md, accuracy.png

Resume: starting the same command again skips finished stages (``done.json``) and finished
evaluations (``samples.jsonl``), resumes an interrupted stage from its checkpoint and an
interrupted evaluation from its partial samples. Stages are keyed by a hash of everything that
determines them (model, training settings, seed, rows, parent stage), so a stage shared by
several curricula is trained once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import time
from pathlib import Path

from rich.console import Console

from pbb import curricula as curricula_mod
from pbb import data as data_mod
from pbb import dist
from pbb.config import OPENAI_PREFIX, RunConfig, dump_config
from pbb.errors import PbbError
from pbb.evaluate import SAMPLES, evaluate
from pbb.jsonio import atomic_write_json, atomic_write_text
from pbb.parallel import check_setup
from pbb.report import build_summary, print_table, write_report, written
from pbb.rewards import reward_functions
from pbb.rl import train_rl_stage
from pbb.sft import train_sft
from pbb.tracking import Tracking, check_trackers
from pbb.train import (
    MODEL,
    check_method,
    is_done,
    load_for_eval,
    release_memory,
    stage_info,
    use_bf16,
)

console = Console(stderr=True)


def stage_key(cfg: RunConfig, parent: str, rows: list[dict], trainer: str = "sft",
              stage=None) -> str:
    """Hash of everything that determines a stage's result (RL settings only for RL stages).

    The training settings hashed are the stage's own (``train`` with its per-stage overrides),
    so changing stage 2's epochs retrains stage 2 only.
    """
    h = hashlib.sha256()
    train = cfg.train
    what = {"model": cfg.model, "seed": cfg.seed, "parent": parent}
    if stage is not None:
        train = cfg.train.for_stage(stage.name, stage.train)
        rule = cfg.train.stopping_rule(stage.name, stage.train)
        if rule:
            what["stopping_rule"] = list(rule)
    what["train"] = train.model_dump(mode="json", exclude={"max_batch_tokens", "report_to"})
    if cfg.chat.system_prompt:
        what["system_prompt"] = cfg.chat.system_prompt
    if cfg.model_dtype != "auto" or cfg.trust_remote_code:  # (absent by default: keys unchanged)
        what["model_options"] = [cfg.model_dtype, cfg.trust_remote_code]
    if trainer == "rl":
        what["rl"] = cfg.rl.model_dump(mode="json")
    h.update(json.dumps(what, sort_keys=True).encode())
    for r in rows:
        h.update(json.dumps([r["prompt"], r["completion"]], ensure_ascii=False).encode())
    return h.hexdigest()[:12]


def prepare_run_dir(cfg: RunConfig, out: Path) -> None:
    """Create the run directory, or check that an existing one belongs to the same config."""
    text = dump_config(cfg)
    path = out / "config.yaml"
    if path.is_file():
        if path.read_text(encoding="utf-8") != text:
            old, new = path.read_text().splitlines(), text.splitlines()
            diff = next((f"{a.strip()!r} -> {b.strip()!r}" for a, b in zip(old, new) if a != b), "")
            raise PbbError(f"{out}: holds a run with a different config ({diff}); "
                           "use another --out to start a new run")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as e:
        raise PbbError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def prepare_data(cfg: RunConfig, out: Path) -> data_mod.DataSet:
    ds = _load_or_generate(cfg, out)
    if cfg.data.instruction_format == "nl":
        missing = next((b for b in ds.behaviours if not b.description), None)
        if missing is not None:
            raise PbbError(f"data.instruction_format: nl needs a description of every behaviour; "
                           f"{missing.id} (domain {ds.domain.name}) has none")
    return ds


def _load_or_generate(cfg: RunConfig, out: Path) -> data_mod.DataSet:
    if cfg.data.path:
        return data_mod.load(Path(cfg.data.path))
    d = out / "data"
    if (d / data_mod.MANIFEST).is_file():
        return data_mod.load(d)
    console.print(f"[bold]data[/]: generating {cfg.data.behaviours} {cfg.data.domain} behaviours")
    ds = data_mod.generate(cfg.data.domain, behaviours=cfg.data.behaviours, demos=cfg.data.demos,
                           test_inputs=cfg.data.test_inputs, eval_fraction=cfg.data.eval_fraction,
                           seed=cfg.seed, options=cfg.data.options)
    data_mod.save(ds, d, force=True)
    return data_mod.load(d)


def check_before_work(cfg: RunConfig) -> Path | str:
    """Fail fast on what the config cannot tell by itself; return where the model loads from."""
    from pbb.domains import get_domain
    from pbb.models import resolve_model_path

    dom = get_domain(cfg.data.domain)
    data_mod.parse_domain_config(dom, cfg.data.options, where="data.options")
    use_bf16(cfg.train.precision, "train.precision")
    use_bf16(cfg.eval.precision, "eval.precision")
    check_trackers(cfg.train.report_to)
    check_method(cfg.train.method)
    check_setup(cfg.train.method)
    if cfg.eval.backend == "vllm":
        from pbb.backends import check_vllm

        check_vllm(cfg)
    if cfg.rl.use_vllm:
        from pbb.backends import check_rl_vllm

        check_rl_vllm()
    if cfg.eval.backend == "openai":
        from pbb.backends import check_server

        check_server(cfg)
        if cfg.model.startswith(OPENAI_PREFIX):
            return cfg.model  # nothing to load here: the server has it
    return resolve_model_path(cfg.model)


def _quiet_libraries() -> None:
    """Keep the terminal for pbb's own progress: no per-map bars, no library chatter."""
    import warnings

    import datasets
    import transformers

    # renamed-argument notices from transformers about settings TRL passes, not the user's
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run(cfg: RunConfig, out: Path, progress: bool = True, stages_root: Path | None = None) -> dict:
    """One run; ``stages_root`` lets several runs (a sweep) share trained stages.

    Under ``accelerate launch`` every process runs this (:mod:`pbb.dist`): the main process
    prepares the run directory and data and writes every file; SFT stages train data parallel
    across the processes; evaluation is sharded across them.
    """
    from pbb.models import load_tokenizer

    dist.init()
    main = dist.is_main()
    console.quiet = not main  # one process speaks
    _quiet_libraries()
    out = Path(out)
    base = check_before_work(cfg)
    timing: dict[str, float] = {}
    t0 = time.time()
    # the main process makes the run directory and the data set; the others then read the data
    made: dict = {}
    dist.on_main(lambda: (prepare_run_dir(cfg, out), made.update(ds=prepare_data(cfg, out))))
    ds = made["ds"] if main else prepare_data(cfg, out)
    timing["data"] = time.time() - t0
    served = cfg.eval.backend == "openai"  # served models are evaluated, nothing trains here
    tok = None if served else load_tokenizer(base, cfg.model_options())

    plan: dict[str, list[dict]] = {}
    fmt = cfg.data.instruction_format
    built = {name: curricula_mod.build(name, ds, cfg.curriculum, fmt) for name in cfg.curricula}
    check_stage_settings(cfg, built, ds)
    tracking = Tracking(cfg.train.report_to if main else [], cfg.name, out)
    try:
        for name, stages in built.items():
            parent, init, entries = "base", base, []
            for st in ([] if served else stages):
                key = stage_key(cfg, parent, st.rows, st.trainer, st)
                sdir = Path(stages_root or out / "stages") / f"{st.name}-{key}"
                entries.append({"stage": st.name, "dir": os.path.relpath(sdir, out), "rows": len(st.rows)})
                # a stage two sweep jobs need is trained once (the main process holds the lock)
                with stage_lock(sdir) if main else contextlib.nullcontext():
                    if dist.broadcast(is_done(sdir) if main else None):
                        console.print(f"[dim]{name}/{st.name}: done earlier, reusing "
                                      f"{sdir.name}[/]")
                    else:
                        t = time.time()
                        train_one_stage(cfg, ds, st, init=init, base=base, tok=tok, stage_dir=sdir,
                                        label=f"{name}/{st.name}", progress=progress,
                                        on_metrics=tracking.stage_logger(sdir.name))
                        release_memory()
                        timing[f"train {name}/{st.name}"] = time.time() - t
                parent, init = key, sdir / MODEL
            plan[name] = entries
            if main:
                atomic_write_json(out / "curricula.json", plan)
            evaluate_curriculum(cfg, ds, out, name, init, base, tok, timing, progress,
                                trained=bool(stages))
            release_memory()

        if not main:
            dist.barrier()  # the main process writes the summary
            return {}
        summary = {**build_summary(out, cfg, ds),
                   "stages": {n: [dict(e, **stage_info(out / e["dir"])) for e in es]
                              for n, es in plan.items()},
                   "timing": {k: round(v, 1) for k, v in timing.items()},
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if dist.launched():
            summary["processes"] = dist.world()
        if served:
            from pbb.backends import served_model

            summary["served_models"] = {n: served_model(cfg, n) for n in cfg.curricula}
        write_report(out, summary)
        tracking.log_results(summary)
        dist.barrier()
    finally:
        tracking.finish()
    print_table(summary, Console())
    console.print(written(out))
    return summary


def stage_lock(stage_dir: Path):
    """An exclusive lock on a stage directory, held while it is checked and trained.

    Runs that share a stage store (sweep jobs run at once) train a stage they both need once:
    the second waits, then finds ``done.json``. The lock is an OS file lock (``filelock``), so
    a job that crashes or is killed releases it; its half-trained stage has no ``done.json`` and
    is never taken as finished (the next job resumes it from its last complete checkpoint).
    """
    from filelock import FileLock

    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(stage_dir / ".lock"))


def check_stage_settings(cfg: RunConfig, built: dict, data: data_mod.DataSet) -> None:
    """Refuse ``train.stages`` entries that name no stage of any curriculum (a typo would
    otherwise be ignored silently), and stopping rules on stages that memorise nothing.

    A key may name a stage of a curriculum this run does not plan: a sweep shares one
    ``train.stages`` between points that run different curricula (``stage2`` of proactive beside
    ``demos_k3`` of demos_only). Only then are the other curricula built, to know their stages.
    """
    names = {st.name: st for stages in built.values() for st in stages}
    unknown = [key for key in cfg.train.stages if key not in names]
    if unknown:
        every = dict(names)
        for other in sorted(set(curricula_mod.CURRICULA) | set(cfg.curriculum.custom)):
            if other not in built:
                every.update((st.name, st) for st in curricula_mod.build(
                    other, data, cfg.curriculum, cfg.data.instruction_format))
        for key in unknown:
            if key not in every:
                raise PbbError(f"train.stages.{key}: no stage of that name in any curriculum; "
                               f"stages of {cfg.curricula}: {', '.join(sorted(names)) or 'none'}")
        names = every
    for st in names.values():
        if cfg.train.stopping_rule(st.name, st.train) and (st.trainer != "sft" or not st.recall_ids):
            raise PbbError(f"train.stages.{st.name}: recall_target needs an SFT stage with "
                           "declarative rows (there is no instruction to recall)")


def recall_checker(cfg: RunConfig, ds, tok, behaviour_ids: list[str]):
    """A function model -> {"recall", "n"}: greedy recall of these behaviours' instructions."""
    from pbb.evaluate import build_queries, generate
    from pbb.recall import recall_score

    wanted = set(behaviour_ids)
    queries = [q for q in build_queries(ds, "recall", fmt=cfg.data.instruction_format)
               if q["behaviour_id"] in wanted]

    def check(model) -> dict:
        completions = generate(model, tok, [q["prompt"] for q in queries],
                               batch_size=cfg.eval.batch_size,
                               max_new_tokens=cfg.eval.max_new_tokens["recall"],
                               desc="recall check", progress=False,
                               system_prompt=cfg.chat.system_prompt)
        hits = sum(recall_score(c, q["target"]) for c, q in zip(completions, queries))
        return {"recall": round(hits / max(1, len(queries)), 4), "n": len(queries)}

    return check


def train_one_stage(cfg: RunConfig, ds, st, *, init, base, tok, stage_dir: Path, label: str,
                    progress: bool, on_metrics=None) -> dict:
    """Train one stage (SFT or RL) with its own settings; returns its ``done.json``."""
    train = cfg.train.for_stage(st.name, st.train)
    if st.trainer == "rl":
        console.print(f"[bold]{label}[/]: GRPO on {len(st.rows)} prompts -> {stage_dir.name}")
        info = train_rl_stage(st.rows, init=init, base=base, tokenizer=tok, cfg=train, rl=cfg.rl,
                              stage_dir=stage_dir, seed=cfg.seed,
                              rewards=reward_functions(ds, cfg.rl.format_weight),
                              progress=progress, system_prompt=cfg.chat.system_prompt,
                              on_metrics=on_metrics, model_options=cfg.model_options())
        console.print(f"  {info['steps']} steps, reward {info.get('reward_first', 0):.3f}"
                      f" -> {info.get('reward_last', 0):.3f}, {info['seconds']:.0f} s")
        return info
    rule = cfg.train.stopping_rule(st.name, st.train)
    ids = st.recall_ids
    check = recall_checker(cfg, ds, tok, ids) if ids and (rule or cfg.eval.recall_after_stage) \
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
                  f"{info['rows_per_second']:.2f} rows/s, {info['seconds']:.0f} s{recall}")
    return info


def evaluate_curriculum(cfg: RunConfig, ds, out: Path, name: str, model_dir, base, tok,
                        timing: dict, progress: bool, trained: bool = True) -> None:
    """Every pending eval mode of one curriculum's final model.

    An untrained model (``untuned``) is evaluated on eval behaviours only: it has seen neither
    split, so its train-behaviour queries would measure the same thing again at the same cost.
    """
    pending = [m for m in cfg.eval.modes if not (out / "eval" / name / m / SAMPLES).is_file()]
    if not pending:
        console.print(f"[dim]{name}: evaluation done earlier[/]")
        return
    with _generation(cfg, out, name, model_dir, base, tok) as (model, generator):
        for mode in pending:
            t = time.time()
            samples = evaluate(model, tok, ds, curriculum=name, mode=mode,
                               out_dir=out / "eval" / name / mode, batch_size=cfg.eval.batch_size,
                               max_new_tokens=cfg.eval.max_new_tokens[mode],
                               temperature=cfg.eval.temperature,
                               max_test_inputs=cfg.eval.max_test_inputs, progress=progress,
                               max_train_behaviours=cfg.eval.max_train_behaviours if trained else 0,
                               system_prompt=cfg.chat.system_prompt,
                               fmt=cfg.data.instruction_format, generator=generator)
            timing[f"eval {name}/{mode}"] = time.time() - t
            acc = sum(s["score"] for s in samples) / max(1, len(samples))
            console.print(f"  eval {name}/{mode}: {len(samples)} queries, mean score {acc:.3f}")


@contextlib.contextmanager
def _generation(cfg: RunConfig, out: Path, name: str, model_dir, base, tok):
    """(model, generator) for one curriculum's evaluation, by ``eval.backend``: the model in
    this process (hf), a served model (openai), or a ``vllm serve`` started on this model and
    stopped afterwards (vllm)."""
    import torch

    if cfg.eval.backend == "openai":
        from pbb.backends import openai_generator, served_model

        yield None, openai_generator(cfg, served_model(cfg, name))
        return
    if cfg.eval.backend == "vllm":
        from pbb.backends import VLLMServer, openai_generator
        from pbb.chat import prompt_text
        from pbb.models import end_of_turn_ids
        from pbb.train import _is_adapter

        if _is_adapter(Path(model_dir)):
            raise PbbError(f"eval.backend: vllm serves full models; {name}'s final stage is a LoRA "
                           "adapter (train.method: full, or eval.backend: hf)")
        with VLLMServer(cfg, model_dir, out / "logs" / f"vllm-{name}.log") as url:
            yield None, openai_generator(
                cfg, VLLMServer.SERVED_NAME, base_url=url,
                render=lambda p: prompt_text(tok, p, cfg.chat.system_prompt),
                stop_token_ids=end_of_turn_ids(tok))
        return
    model = load_for_eval(model_dir, base, cfg.model_options())
    dtype = torch.bfloat16 if use_bf16(cfg.eval.precision, "eval.precision") else torch.float32
    model = model.to(dist.device(), dtype=dtype).eval()
    try:
        yield model, None
    finally:
        del model
