"""The run store: every file and folder name of a run, stage and sweep directory, and the rules
that go with them: where a run's data set is, how a stage is keyed, locked, started, resumed and
finished. No other module spells these names (``tests/test_store.py`` checks it), so the
layout below is the whole contract::

    RUN/config.yaml                      the resolved config (defaults filled in)
    RUN/data/                            the data set, unless the config names one (data.path)
    RUN/stages/<stage>-<key>/            a stage directory (below); a sweep's runs share one
                                         stages/ folder in the sweep directory
    RUN/curricula.json                   curriculum -> its stage directories
    RUN/eval/<curriculum>/<mode>/        samples.jsonl (while unfinished: samples.partial*.jsonl)
    RUN/summary.json, report.md, accuracy.png, rewards.png
    RUN/logs/, RUN/tensorboard/          servers' logs, the tensorboard tracker's files

    STAGE/model/                         full weights, or the LoRA adapter
    STAGE/metrics.jsonl                  one line per logged step (RL stages: rollouts.jsonl too)
    STAGE/trainer/checkpoint-<step>/     resume checkpoints, deleted when the stage is done
    STAGE/done.json                      written last: its presence means the stage is finished
    STAGE/evals/<mode>-<key>/            a finished evaluation of the stage's model (eval.json,
                                         then samples.jsonl), shared by every run that would
                                         evaluate that model the same way (pbb.evaluation.reuse)
    STAGE/.lock                          held while the stage is checked and trained
    RUN/.lock, SWEEP/.lock               held while a pbb process works in the folder;
    RUN/.lock.json, SWEEP/.lock.json     who holds it (pid, host, since, command), for the
                                         error a second process gets

    SWEEP/sweep.json                     the points, their overrides and run directories
    SWEEP/stages/, runs/<point>/         the shared stages, one run directory per point
    SWEEP/points/, logs/, jobs.json      the points' configs, logs and jobs (parallel executors;
    SWEEP/slurm/                         submitit's job folders)
    SWEEP/sweep_summary.json, report.md, efficiency.png, curricula.png

This module sits below everything that reads or writes those folders (training, evaluation,
the exports, the orchestrator), so it imports nothing of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from pbb import dist
from pbb.errors import PbbError
from pbb.jsonio import (
    atomic_write_json,
    feed_file,
    iter_jsonl,
    read_json,
    repair_jsonl,
    torn_tail_note,
    write_jsonl,
)
from pbb.records import StageRecord, check

if TYPE_CHECKING:
    from pbb.config import RunConfig

# --- a run directory -----------------------------------------------------------------------
CONFIG = "config.yaml"
DATA = "data"
STAGES = "stages"
CURRICULA = "curricula.json"
EVAL = "eval"
SUMMARY = "summary.json"
REPORT = "report.md"
PLOT = "accuracy.png"
REWARD_PLOT = "rewards.png"
LOGS = "logs"
TENSORBOARD = "tensorboard"
#: in an evaluation directory: the finished samples, and the answers of an unfinished one (one
#: file, or one per process under a launcher)
SAMPLES = "samples.jsonl"
PARTIAL = "samples.partial.jsonl"
PARTIAL_GLOB = "samples.partial*.jsonl"

# --- a stage directory ---------------------------------------------------------------------
#: a stage directory's name (RunStore.stage_dir): the stage's name (a custom stage's may hold
#: any character a folder name can), the first 12 hex digits of its key
STAGE_DIR_NAME = re.compile(r".+-[0-9a-f]{12}")
DONE = "done.json"
MODEL = "model"
METRICS = "metrics.jsonl"
ROLLOUTS = "rollouts.jsonl"
TRAINER = "trainer"
LOCK = ".lock"
LOCK_OWNER = ".lock.json"
#: a checkpoint's folder is ``checkpoint-<step>`` (transformers' Trainer names its own so too);
#: it is complete once its state file is there: pbb's SFT loop writes ``state.json``, the
#: Trainer ``trainer_state.json``
CHECKPOINT = "checkpoint-"
CHECKPOINT_STATE = "state.json"
TRAINER_STATE = "trainer_state.json"
#: beside the Trainer's state: the training time so far, all lives (pbb.training.hf_trainer)
CHECKPOINT_CLOCK = "pbb_seconds.json"
#: evaluations of the stage's model kept for other runs: ``evals/<mode>-<key>/``, each with the
#: samples and a record of how long the evaluation took and under which settings
EVALS = "evals"
EVAL_RECORD = "eval.json"

# --- a sweep directory ---------------------------------------------------------------------
SWEEP = "sweep.json"
SWEEP_SUMMARY = "sweep_summary.json"
RUNS = "runs"
POINTS = "points"
JOBS = "jobs.json"
SLURM = "slurm"
CURVE_PLOT = "efficiency.png"
BARS_PLOT = "curricula.png"

#: every name a run directory holds (an unmarked folder holding anything else is a user's)
RUN_FILES = frozenset({CONFIG, DATA, STAGES, EVAL, CURRICULA, SUMMARY, REPORT, PLOT, REWARD_PLOT,
                       LOGS, TENSORBOARD})
#: the names no other module may spell: the file names (not the folder names above, ordinary
#: words such as ``data`` or ``eval`` that mean other things elsewhere too, nor ``.lock``, the
#: suffix of any file lock)
FILE_NAMES = frozenset({CONFIG, CURRICULA, SUMMARY, REPORT, PLOT, REWARD_PLOT, SAMPLES, PARTIAL,
                        PARTIAL_GLOB, DONE, METRICS, ROLLOUTS, CHECKPOINT, CHECKPOINT_STATE,
                        TRAINER_STATE, EVAL_RECORD, SWEEP, SWEEP_SUMMARY, JOBS, CURVE_PLOT,
                        BARS_PLOT})

console = Console(stderr=True, soft_wrap=True)  # a message is one line in a log file


def parse_jobs(raw: bytes | str) -> dict[str, dict]:
    """A sweep's jobs record (point name -> its job: pid or job id, log, start, end, exit code;
    :mod:`pbb.experiments.executors`) from its text; empty where it is not one. Informational
    (logs, and the spans ``pbb claims`` reads a wall clock from), so never a reason to stop."""
    try:
        jobs = json.loads(raw)
    except ValueError:
        return {}
    return {k: v for k, v in jobs.items() if isinstance(v, dict)} if isinstance(jobs, dict) \
        else {}


def read_jobs(path: Path) -> dict[str, dict]:
    """The jobs record at ``path`` (:func:`parse_jobs`; empty where there is none)."""
    try:
        return parse_jobs(Path(path).read_bytes())
    except OSError:
        return {}


def out_dir(name: str, out: str | Path | None = None, smoke: bool = False) -> Path:
    """``out``, or where a run or sweep of that name goes by default: ``runs/<name>``
    (``runs/<name>-smoke`` for ``--smoke``, so a toy run never resumes into the real one)."""
    return Path(out) if out is not None else Path("runs") / (name + ("-smoke" if smoke else ""))


class RunStore:
    """The paths of one run directory. ``stages_root``: where its stages are, when runs share
    them (a sweep's points); else the run's own ``stages/``."""

    def __init__(self, root: Path, stages_root: Path | None = None):
        self.root = Path(root)
        self.stages = Path(stages_root) if stages_root is not None else self.root / STAGES

    config = property(lambda self: self.root / CONFIG)
    #: the run's own data set (generated for it), whether or not the config names another
    data = property(lambda self: self.root / DATA)
    curricula = property(lambda self: self.root / CURRICULA)
    summary = property(lambda self: self.root / SUMMARY)
    report = property(lambda self: self.root / REPORT)
    plot = property(lambda self: self.root / PLOT)
    reward_plot = property(lambda self: self.root / REWARD_PLOT)
    logs = property(lambda self: self.root / LOGS)
    tensorboard = property(lambda self: self.root / TENSORBOARD)

    def data_dir(self, cfg: RunConfig) -> Path:
        """Where the run's data set is: ``data.path``, else the run's own ``data/``."""
        return Path(cfg.data.path) if cfg.data.path else self.data

    def eval_dir(self, curriculum: str, mode: str) -> Path:
        return self.root / EVAL / curriculum / mode

    def samples(self, curriculum: str, mode: str) -> Path:
        return self.eval_dir(curriculum, mode) / SAMPLES

    def stage_dir(self, stage: str, key: str) -> Path:
        return self.stages / f"{stage}-{key}"

    def vllm_log(self, curriculum: str) -> Path:
        return self.logs / f"vllm-{curriculum}.log"

    def reports(self) -> list[Path]:
        """The summary, report and plots written so far (what a finished command names)."""
        return [p for p in (self.summary, self.report, self.plot, self.reward_plot) if p.is_file()]

    def has_work(self) -> bool:
        """Whether the run directory holds trained stages or evaluations (work a new config
        would silently mix with its own)."""
        return any((self.root / d).is_dir() and any((self.root / d).iterdir())
                   for d in (STAGES, EVAL)) or self.summary.is_file()


def not_stage_folders(folder: Path) -> list[str]:
    """The names in ``folder`` that are not stage directories: a stage store shared between runs
    holds none (a run's or a sweep's own folder holds its files beside ``stages/``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if not (p.is_dir() and STAGE_DIR_NAME.fullmatch(p.name)))


class SweepStore:
    """The paths of one sweep directory: its record, its points' run directories (sharing one
    stage store), its summary, report and plots."""

    def __init__(self, root: Path):
        self.root = Path(root)

    record = property(lambda self: self.root / SWEEP)
    stages = property(lambda self: self.root / STAGES)
    points = property(lambda self: self.root / POINTS)
    logs = property(lambda self: self.root / LOGS)
    jobs = property(lambda self: self.root / JOBS)
    slurm = property(lambda self: self.root / SLURM)
    summary = property(lambda self: self.root / SWEEP_SUMMARY)
    report = property(lambda self: self.root / REPORT)
    curve_plot = property(lambda self: self.root / CURVE_PLOT)
    bars_plot = property(lambda self: self.root / BARS_PLOT)

    @staticmethod
    def run_rel(point: str) -> str:
        """A point's run directory relative to the sweep (as ``sweep.json`` records it)."""
        return f"{RUNS}/{point}"

    def run_dir(self, point: str) -> Path:
        return self.root / RUNS / point

    def run(self, point: str) -> RunStore:
        """A point's run, its stages in the sweep's shared store."""
        return RunStore(self.run_dir(point), stages_root=self.stages)

    def point_config(self, point: str) -> Path:
        """The config a point's job runs (executors other than the in-process one)."""
        return self.points / f"{point.replace('/', '_')}.yaml"

    def point_log(self, point: str) -> Path:
        return self.logs / f"{point.replace('/', '_')}.log"


def partial_samples(rank: int | None = None) -> str:
    """The partial answers' file name of one process (``rank`` under a launcher), else one."""
    return PARTIAL if rank is None else f"samples.partial.{rank}.jsonl"


# --- stage keys ----------------------------------------------------------------------------
#: fields a section held in keys written before settings were declared out of the key: hashed
#: at their default value, whatever the config says (a field declared out later joins them)
_TRAIN_AT_DEFAULT = ("save_steps", "gradient_checkpointing", "stages")
_RL_AT_DEFAULT = ("save_steps", "vllm_mode", "vllm_server_base_url", "vllm_gpu_memory_utilization")


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
    settings, so a stage that stopped under another budget is retrained, never reused. An RL
    stage's rows tagged ``replay`` are hashed with the tag: GRPO samples from the others and
    trains these by an SFT term (:mod:`pbb.training.replay`), so the tag changes the result.
    """
    h = hashlib.sha256()
    h.update(json.dumps(_hashed_settings(cfg, parent, trainer, stage), sort_keys=True).encode())
    for r in rows:
        h.update(json.dumps([r["prompt"], r["completion"]], ensure_ascii=False).encode())
        if trainer == "rl" and r.get("replay"):  # a replayed row is no prompt to GRPO; SFT
            h.update(b"replay")                  # trains both alike (keys unchanged)
    return h.hexdigest()[:12]


def _hashed_settings(cfg: RunConfig, parent: str, trainer: str, stage) -> dict:
    """The settings a stage's key hashes besides its rows, laid out as :func:`stage_key` says."""
    from pbb.config import RunConfig, key_fields

    train, rule = cfg.train, None
    if stage is not None:
        train = cfg.train.for_stage(stage.name, stage.train)
        rule = cfg.train.stopping_rule(stage.name, stage.train)
    fields = key_fields(cfg.model_copy(update={"train": train}), stopping_rule=rule is not None,
                        rl=trainer == "rl")
    defaults = RunConfig().model_dump(mode="json")
    what = {"model": fields.pop("model"), "seed": fields.pop("seed"), "parent": parent,
            "train": _section(fields, defaults, "train", _TRAIN_AT_DEFAULT)}
    if rule:
        what["stopping_rule"] = list(rule)
    system_prompt = fields.pop("chat.system_prompt")
    if system_prompt:
        what["system_prompt"] = system_prompt
    options = [fields.pop("model_dtype"), fields.pop("trust_remote_code")]
    if options != ["auto", False]:  # (absent by default: keys unchanged)
        what["model_options"] = options
    if trainer == "rl":
        what["rl"] = _section(fields, defaults, "rl", _RL_AT_DEFAULT)
    rest = _other_settings(fields, defaults)
    if rest:
        what["settings"] = rest
    return what


def _section(fields: dict, defaults: dict, name: str, hashed_at_default: tuple[str, ...]) -> dict:
    """Section ``name``'s key fields (taken out of ``fields``), by their name in the section,
    beside the fields it hashes at their default."""
    out = {k: defaults[name][k] for k in hashed_at_default}
    for path in [p for p in fields if p.startswith(name + ".")]:
        out[path.removeprefix(name + ".")] = fields.pop(path)
    return out


def _other_settings(fields: dict, defaults: dict) -> dict:
    """The key fields left (the recall check's, a setting added to the key later) by dotted
    path: the recall check's always, any other only where it is not at its default."""
    from pbb.config import STOPPING_RULE, key_roles

    roles = key_roles()
    rest = {}
    for path, value in fields.items():
        default = defaults
        for part in path.split("."):
            default = default[part]
        if roles[path] == STOPPING_RULE or value != default:
            rest[path] = value
    return rest


# --- a stage's life: locked, started or resumed, finished -----------------------------------
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
    return FileLock(str(stage_dir / LOCK))


@contextlib.contextmanager
def folder_lock(folder: Path, kind: str):
    """An exclusive lock on a run or sweep folder (``kind``), held while a pbb process works in
    it, taken without waiting: a second process in the same folder (the same command started
    twice, a sweep rerun while its first attempt's points still run) would append its answers
    to the same partial samples and rewrite the same summaries, so it stops with one line
    instead, naming the holder (``LOCK_OWNER``) so that the user knows which process to wait
    for or stop. An OS file lock (``filelock``), so a process that is killed releases it; its
    owner record may then stay behind, read only while somebody holds the lock again."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(folder) / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise PbbError(f"{folder}: another pbb process{_lock_holder(folder)} is working in this "
                       f"{kind} folder (it holds {LOCK}); wait for it to end or stop it (Ctrl-C "
                       f"or SIGTERM stop it cleanly), then run the same command again") from None
    except OSError as e:
        raise PbbError(f"{folder}: cannot take its lock, {LOCK} ({e.strerror or e})") from None
    owner = Path(folder) / LOCK_OWNER
    with contextlib.suppress(OSError):  # who holds it is for the message only
        atomic_write_json(owner, {"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                  "command": " ".join(sys.argv)})
    try:
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _lock_holder(folder: Path) -> str:
    """`` (pid N on HOST since T: COMMAND)`` from the holder's record; empty when it cannot be
    read (the holder has only just taken the lock, or is an older pbb)."""
    try:
        who = read_json(Path(folder) / LOCK_OWNER)
        return f" (pid {who['pid']} on {who['host']} since {who['since']}: {who['command']})"
    except (OSError, PbbError, KeyError, TypeError):
        return ""


def lock_when_made(held: contextlib.ExitStack, folder: Path, kind: str):
    """A function that takes ``folder``'s :func:`folder_lock` into ``held`` once the folder
    exists, and does nothing after: called after the checks (an existing folder is locked
    before this process writes there) and again after the write that makes a new one."""
    def lock() -> None:
        if not held_lock and Path(folder).is_dir():
            held_lock.append(held.enter_context(folder_lock(folder, kind)))

    held_lock: list = []
    return lock


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / DONE).is_file()


def stage_info(stage_dir: Path) -> dict:
    """A finished stage's record (``done.json``)."""
    return read_json(Path(stage_dir) / DONE)


def shared_eval_dir(stage_dir: Path, mode: str, key: str) -> Path:
    """Where a finished evaluation of ``stage_dir``'s model in ``mode`` is kept for other runs."""
    return Path(stage_dir) / EVALS / f"{mode}-{key}"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT}{step}"


def checkpoint_dir(stage_dir: Path, step: int) -> Path:
    return Path(stage_dir) / TRAINER / checkpoint_name(step)


def step_of(checkpoint: Path) -> int:
    """The step a checkpoint directory (``checkpoint-<step>``) was saved at."""
    return int(Path(checkpoint).name.removeprefix(CHECKPOINT))


def checkpoint_step(stage_dir: Path) -> int | None:
    """The step of the latest resumable checkpoint of a stage, or None."""
    trainer_dir = Path(stage_dir) / TRAINER
    if not trainer_dir.is_dir():
        return None
    steps = [step_of(p) for p in trainer_dir.iterdir()
             if p.name.startswith(CHECKPOINT) and p.name.removeprefix(CHECKPOINT).isdigit()
             and ((p / TRAINER_STATE).is_file() or (p / CHECKPOINT_STATE).is_file())]
    return max(steps, default=None)


def keep_logs_until(path: Path, step: int) -> None:
    """Drop log lines of steps after ``step``: they are trained again on resume.

    A torn last line (a kill in the middle of a write) is cut first, and logged; any other bad
    line is an error naming ``path:line`` (not a kill's doing, and skipping it would drop every
    line after it).
    """
    path = Path(path)
    if not path.is_file():
        return
    dropped = repair_jsonl(path)
    if dropped:
        console.print(torn_tail_note(path, dropped), markup=False, highlight=False)
    kept = [rec for rec in iter_jsonl(path) if rec.get("step", 0) <= step]
    write_jsonl(path, kept)  # records come back byte for byte: pbb wrote them with dumps


def start_stage(stage_dir: Path, logs: tuple[str, ...] = (METRICS,)) -> Path | None:
    """Create the stage directory; return the checkpoint an interrupted run left, if any.

    Only complete checkpoints count (one cut short by a kill has no state file).
    The stage's per-step ``logs`` are cut back to the checkpoint (a torn last line first, see
    :func:`keep_logs_until`), or removed on a fresh start, so a resumed stage logs every step
    exactly once. Under a launcher the main process prepares the directory and every process
    gets the same checkpoint.
    """
    stage_dir = Path(stage_dir)
    step = None
    if dist.is_main():
        stage_dir.mkdir(parents=True, exist_ok=True)
        step = checkpoint_step(stage_dir)
        for name in logs:
            if step is None:
                (stage_dir / name).unlink(missing_ok=True)
            else:
                keep_logs_until(stage_dir / name, step)
    step = dist.broadcast(step)
    return None if step is None else checkpoint_dir(stage_dir, step)


def weights_digest(model_dir: Path) -> str | None:
    """The sha256 of a saved model's weights (each ``*.safetensors`` file's name and bytes, in
    name order; a LoRA stage's adapter), or None where none is saved. Two stage directories
    with one key hold the same weights where their digests agree (files that differ almost
    always hold other weights; the safetensors header counts too): a stage retrained on another
    machine (the archives keep no weights) is told apart by it, not by its loss alone.
    Hashing reads the weights once (about a second per GB)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        feed_file(h, f)
    return h.hexdigest()


def finish_stage(stage_dir: Path, info: dict) -> dict:
    """Mark a stage done (``done.json``, written last) and drop its resume checkpoints. The
    record gains ``weights_sha256`` (:func:`weights_digest`) where the stage saved a model.

    Under a launcher the main process writes, and no process goes on before it has.
    """
    check(StageRecord, info, str(Path(stage_dir) / DONE))
    if dist.is_main():
        digest = weights_digest(Path(stage_dir) / MODEL)
        info = {**info, "weights_sha256": digest} if digest else info
        atomic_write_json(Path(stage_dir) / DONE, info)
        shutil.rmtree(Path(stage_dir) / TRAINER, ignore_errors=True)
    dist.barrier()
    return info
