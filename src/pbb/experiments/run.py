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

from pbb import data as data_mod
from pbb import dist, folders
from pbb.config import OPENAI_PREFIX, RunConfig, dump_config
from pbb.errors import PbbError
from pbb.evaluation.evaluate import SAMPLES, evaluate
from pbb.evaluation.report import build_summary, print_table, write_report, written
from pbb.experiments.tracking import Tracking, check_trackers
from pbb.folders import check_out
from pbb.jsonio import atomic_write_json, atomic_write_text, read_text
from pbb.rows import curricula as curricula_mod
from pbb.training.engine import check_setup
from pbb.training.grpo import train_rl_stage
from pbb.training.load import check_method, load_for_eval
from pbb.training.precision import release_memory, use_bf16
from pbb.training.rewards import reward_functions
from pbb.training.sft import train_sft
from pbb.training.stages import MODEL, is_done, stage_info

console = Console(stderr=True)


def stage_key(cfg: RunConfig, parent: str, rows: list[dict], trainer: str = "sft",
              stage=None) -> str:
    """Hash of everything that determines a stage's result: its rows, its parent stage, and the
    settings declared to change a stage (:func:`pbb.config.key_fields`): every stage's, the RL
    settings for an RL stage, the recall check's (``eval.batch_size``,
    ``eval.max_new_tokens.recall``) for a stage with a stopping rule. Nothing else: checkpoints,
    trackers, memory bounds, vLLM's placement and evaluation settings retrain nothing.

    The training settings hashed are the stage's own (``train`` with its per-stage overrides),
    so changing stage 2's epochs retrains stage 2 only.

    The layout hashed is that of the keys written before settings were declared, so a stage
    whose settings did not change keeps its key and directory: the fields those keys held that
    are now declared out of the key are hashed at their default value (whatever the config
    says), and a key setting outside ``train`` and ``rl`` only where it is not at its default.
    Stages with a stopping rule have new keys: the old ones did not hold the recall check's
    settings, so a stage that stopped under another budget is retrained, never reused.
    """
    from pbb.config import STOPPING_RULE, key_fields, key_roles

    train, rule = cfg.train, None
    if stage is not None:
        train = cfg.train.for_stage(stage.name, stage.train)
        rule = cfg.train.stopping_rule(stage.name, stage.train)
    fields = key_fields(cfg.model_copy(update={"train": train}), stopping_rule=rule is not None,
                        rl=trainer == "rl")
    defaults = RunConfig().model_dump(mode="json")

    def section(name: str, hashed_at_default: tuple[str, ...]) -> dict:
        out = {k: defaults[name][k] for k in hashed_at_default}
        for path in [p for p in fields if p.startswith(name + ".")]:
            out[path.removeprefix(name + ".")] = fields.pop(path)
        return out

    what = {"model": fields.pop("model"), "seed": fields.pop("seed"), "parent": parent,
            # fields these sections held in keys before they were declared out of the key (a field
            # declared out later joins them: keys stay)
            "train": section("train", ("save_steps", "gradient_checkpointing", "stages"))}
    if rule:
        what["stopping_rule"] = list(rule)
    system_prompt = fields.pop("chat.system_prompt")
    if system_prompt:
        what["system_prompt"] = system_prompt
    options = [fields.pop("model_dtype"), fields.pop("trust_remote_code")]
    if options != ["auto", False]:  # (absent by default: keys unchanged)
        what["model_options"] = options
    if trainer == "rl":
        what["rl"] = section("rl", ("save_steps", "vllm_mode", "vllm_server_base_url",
                                    "vllm_gpu_memory_utilization"))
    # the rest (the recall check's settings, a setting added to the key later) by dotted path:
    # the recall check's always, any other where it is not at its default
    roles = key_roles()
    rest = {}
    for path, value in fields.items():
        default = defaults
        for part in path.split("."):
            default = default[part]
        if roles[path] == STOPPING_RULE or value != default:
            rest[path] = value
    if rest:
        what["settings"] = rest
    h = hashlib.sha256()
    h.update(json.dumps(what, sort_keys=True).encode())
    for r in rows:
        h.update(json.dumps([r["prompt"], r["completion"]], ensure_ascii=False).encode())
    return h.hexdigest()[:12]


def prepare_run_dir(cfg: RunConfig, out: Path, ds: data_mod.DataSet) -> None:
    """Make the run directory (marker, ``config.yaml``, the data set unless ``data.path``), or
    check that an existing one holds the same run.

    A run directory whose earlier attempt failed before any work (no stage, no evaluation) takes
    the corrected config: a failed attempt never blocks the fixed one.
    """
    text = dump_config(cfg)
    path = out / "config.yaml"
    if path.is_file():
        old = read_text(path)
        if old != text and _did_work(out):
            diff = next((f"{a.strip()!r} -> {b.strip()!r}"
                         for a, b in zip(old.splitlines(), text.splitlines()) if a != b), "")
            raise PbbError(f"{out}: holds a run with a different config ({diff}); "
                           "use another --out to start a new run")
        if old == text and (ds.path is not None or (out / "data" / data_mod.MANIFEST).is_file()):
            folders.mark(out, "run")
            return
    try:
        out.mkdir(parents=True, exist_ok=True)
        folders.mark(out, "run")
        atomic_write_text(path, text)
    except OSError as e:
        raise PbbError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    if ds.path is None:  # generated for this run: saved with it (a data set pbb wrote, replaced)
        data_mod.save(ds, out / "data", force=True)


def _did_work(out: Path) -> bool:
    """Whether a run directory holds trained stages or evaluations (work a new config would
    silently mix with its own)."""
    return any((out / d).is_dir() and any((out / d).iterdir()) for d in ("stages", "eval")) \
        or (out / "summary.json").is_file()


def open_data(cfg: RunConfig, out: Path) -> tuple[RunConfig, data_mod.DataSet]:
    """The run's data set, loaded or generated in memory (nothing written), and the config with
    its data block filled in from that data set where the config left keys out.

    With ``data.path``, or a run directory's own ``data/``, every key the config does give must
    agree with the data set's manifest (one error naming the keys that disagree): a summary
    must never name a domain or size that did not run.
    """
    own = out / "data"
    if cfg.data.path:
        cfg, ds = with_data_path(cfg)
    elif (own / data_mod.MANIFEST).is_file() and (out / "config.yaml").is_file() \
            and read_text(out / "config.yaml") == dump_config(cfg):
        # this run's own data set, resumed: generated from this very data block
        ds = data_mod.load(own)
        cfg = reconcile_data_block(cfg, ds, str(own), set(DATA_KEYS))
        if ds.seed != cfg.seed:
            raise PbbError(f"{out / 'data'}: generated with seed {ds.seed}, the config says seed "
                           f"{cfg.seed}; use another --out")
    else:
        console.print(f"[bold]data[/]: generating {cfg.data.behaviours} {cfg.data.domain} "
                      "behaviours")
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
        data_mod.parse_domain_config(get_domain(cfg.data.domain), cfg.data.options,
                                     where="data.options")
    use_bf16(cfg.train.precision, "train.precision")
    use_bf16(cfg.eval.precision, "eval.precision")
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
    t0 = time.time()
    # every check before the first write: a failed start leaves nothing behind
    dist.on_main(lambda: check_out(out, "run", replace=False))
    base = check_before_work(cfg)
    cfg, ds = open_data(cfg, out)
    # the main process writes the run directory and the data set, the others wait
    dist.on_main(lambda: prepare_run_dir(cfg, out, ds))
    timing = {"data": time.time() - t0}
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
            from pbb.evaluation.served import served_model

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
    from pbb.evaluation.evaluate import build_queries, generate
    from pbb.evaluation.recall import recall_score

    wanted = set(behaviour_ids)
    queries = [q for q in build_queries(ds, "recall", fmt=cfg.data.instruction_format)
               if q["behaviour_id"] in wanted]

    def check(model) -> dict:
        completions = generate(model, tok, [q["prompt"] for q in queries],
                               batch_size=cfg.eval.batch_size,
                               max_new_tokens=cfg.eval.max_new_tokens["recall"],
                               desc="recall check", progress=False,
                               system_prompt=cfg.chat.system_prompt, engine=cfg.eval.generator)
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
                               fmt=cfg.data.instruction_format, generator=generator,
                               engine=cfg.eval.generator)
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
        from pbb.evaluation.served import openai_generator, served_model

        yield None, openai_generator(cfg, served_model(cfg, name))
        return
    if cfg.eval.backend == "vllm":
        from pbb.evaluation.served import VLLMServer, openai_generator
        from pbb.models import end_of_turn_ids
        from pbb.rows.chat import prompt_text
        from pbb.training.load import is_adapter

        if is_adapter(Path(model_dir)):
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
