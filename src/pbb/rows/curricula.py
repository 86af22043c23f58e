"""Curricula as data: each is an ordered list of stages, each stage a list of rows.

Built-in curricula (names as in the paper):

* ``proactive`` - stage 1: declarative + demonstrations of *train* behaviours, interleaved
  (learn how instructions map to behaviour); stage 2: declarative of *eval* behaviours
  (internalise new instructions), optionally with a replay share of stage-1 rows.
* ``mixture`` - the same rows as one shuffled stage (the baseline the curricula beat).
* ``stage1_only`` / ``stage2_only`` - ablations.
* ``demos_only`` - stage 1 as in ``proactive``, then ``k`` demonstrations of each eval behaviour
  *in place of* its instruction (the "instruction is worth N examples" comparison).
* ``retroactive`` - stage 1 (``exposure``): declarative rows of *all* behaviours; stage 2
  (``activation_rl``): RL (GRPO) on execution prompts of *train* behaviours only, rewarded by the
  domain's verifier. Executing the train behaviours should "activate" the stored eval ones.
* ``retroactive_sft`` - the same stage 1, then stage 2 (``activation_sft``) by SFT on the gold
  completions of the very same prompts: the RL-vs-SFT comparison.
* ``rl_only`` - control: the RL stage of ``retroactive`` without stage 1. Whatever eval
  behaviours gain here comes from RL itself (format, answer style), not from PBB; the difference
  ``retroactive - rl_only`` is the PBB effect.

``curriculum.rl_warmup_demos: k`` puts an SFT stage (``activation_warmup``: k demonstrations per
train behaviour) before the RL stage of ``retroactive`` and ``rl_only`` alike. Without it a
small model that has seen only declarative rows answers every prompt by reciting code: no
rollout has an answer line, every group has zero reward variance, and GRPO learns nothing.
* ``untuned`` - no training.

Stage 2 of the retroactive curricula ignores ``curriculum.replay``: RL and SFT see the
same prompts, so the two can be compared directly. Its prompts are the ``use: train``
demonstrations of train behaviours in ``curriculum.demo_modes`` (RL ignores the gold
completions). ``curriculum.activation_replay`` adds stage 1's rows to stage 2 of both, the same
rows: SFT trains them among the demonstrations, GRPO by an SFT term beside its loss
(:mod:`pbb.training.replay`); ``rl_only`` has no stage 1 and replays nothing.

Rules every curriculum keeps (and :func:`check_leakage` enforces): test inputs never appear in a
training row; demonstrations of eval behaviours appear only in ``demos_only`` (or in a custom
curriculum that asks for them explicitly).

Every curriculum is a function ``(data set, curriculum config, fmt) -> stages``; ``fmt`` is how
rows show instructions (``data.instruction_format``: ``code`` or ``nl``), a run setting handed
down from the run, not stored on the data set.

Row rendering is seeded per row and stage shuffles per stage *content*, so a stage shared by two
curricula (stage 1 of ``proactive``, ``stage1_only`` and ``demos_only``) is byte-identical in all
of them and is trained once.

``NAME@STAGE`` (e.g. ``retroactive@activation_warmup``) is curriculum NAME cut after its stage
STAGE: the same stages up to there, so the same keys, trained once whichever of the two runs
first, and the model there evaluated as a row of its own (what RL adds to its warm start is
``retroactive`` - ``retroactive@activation_warmup``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from pbb.config import (
    CurriculumConfig,
    RunConfig,
    StageConfig,
    StageTrainConfig,
    check_curriculum_name,
    split_cut,
)
from pbb.data import DataSet
from pbb.domains import Behaviour
from pbb.errors import PbbError
from pbb.memo import once
from pbb.rows.render import make_row, row_rng


@dataclass
class Stage:
    name: str
    rows: list[dict]
    trainer: str = "sft"  # "sft" (rows are prompt + gold completion) or "rl" (prompts only)
    train: StageTrainConfig | None = None  # a custom stage's own training settings

    @property
    def recall_ids(self) -> list[str]:
        """Behaviours whose instructions this stage teaches (declarative rows), in order.

        Replayed rows are tagged ``replay`` and do not count: recall after a stage measures
        what that stage set out to memorise.
        """
        return list(dict.fromkeys(r["behaviour_id"] for r in self.rows
                                  if r["kind"] == "declarative" and not r.get("replay")))

    @property
    def own_rows(self) -> list[dict]:
        """The rows less those replayed from an earlier stage: an RL stage's prompts."""
        return [r for r in self.rows if not r.get("replay")]

    @property
    def replayed_rows(self) -> list[dict]:
        """The rows replayed from an earlier stage (an RL stage trains them by an SFT term)."""
        return [r for r in self.rows if r.get("replay")]


def declarative_rows(ds: DataSet, behaviours: list[Behaviour], repeats: int,
                     fmt: str = "code") -> list[dict]:
    """``repeats`` declarative rows of each behaviour (a new list; inside
    :func:`pbb.memo.memoized` of the same row dicts as before: a plan's points share them)."""
    return list(once(ds, ("declarative", tuple(b.id for b in behaviours), repeats, fmt), lambda: [
        make_row(ds.domain, b, "declarative", row_rng(ds.seed, "declarative", b.id, r), fmt=fmt)
        for b in behaviours for r in range(repeats)]))


def demo_rows(ds: DataSet, behaviours: list[Behaviour], modes: list[str],
              per_behaviour: int | None = None, fmt: str = "code") -> list[dict]:
    """Execution rows from the ``use: train`` demonstrations only (never test inputs); a new
    list, as :func:`declarative_rows`."""
    return list(once(ds, ("demo", tuple(b.id for b in behaviours), tuple(modes), per_behaviour,
                          fmt), lambda: _demo_rows(ds, behaviours, modes, per_behaviour, fmt)))


def _demo_rows(ds: DataSet, behaviours: list[Behaviour], modes: list[str],
               per_behaviour: int | None, fmt: str) -> list[dict]:
    demos = ds.by_behaviour("train")
    rows = []
    for b in behaviours:
        for i, d in enumerate(demos[b.id][:per_behaviour]):
            for mode in modes:
                rows.append(make_row(ds.domain, b, mode, row_rng(ds.seed, mode, b.id, i), d, fmt=fmt))
    return rows


def _shuffled(rows: list[dict], seed: int, tag: str) -> list[dict]:
    rows = list(rows)
    random.Random(f"{seed}|shuffle|{tag}|{len(rows)}").shuffle(rows)
    return rows


def _with_replay(rows: list[dict], previous: list[dict], share: float, seed: int,
                 tag: str) -> list[dict]:
    if share <= 0 or not previous:
        return rows
    n = min(len(previous), round(len(rows) * share / (1 - share)) if share < 1 else len(previous))
    replay = [dict(r, replay=True) for r in random.Random(f"{seed}|replay|{tag}").sample(previous, n)]
    return _shuffled(rows + replay, seed, f"{tag}+replay")


def _stage1(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> Stage:
    train = ds.split("train")
    rows = (declarative_rows(ds, train, c.declarative_repeats, fmt)
            + demo_rows(ds, train, c.demo_modes, fmt=fmt))
    return Stage("stage1", _shuffled(rows, ds.seed, "stage1"))


def _eval_declarative(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[dict]:
    return declarative_rows(ds, ds.split("eval"), c.eval_declarative_repeats or c.declarative_repeats,
                            fmt)


def proactive(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    s1 = _stage1(ds, c, fmt)
    decl = _shuffled(_eval_declarative(ds, c, fmt), ds.seed, "stage2")
    return [s1, Stage("stage2", _with_replay(decl, s1.rows, c.replay, ds.seed, "stage2"))]


def mixture(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    s1 = _stage1(ds, c, fmt)
    decl = _eval_declarative(ds, c, fmt)
    return [Stage("mixture", _shuffled(s1.rows + decl, ds.seed, "mixture"))]


def stage1_only(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    return [_stage1(ds, c, fmt)]


def stage2_only(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    return [Stage("stage2", _shuffled(_eval_declarative(ds, c, fmt), ds.seed, "stage2"))]


def demos_only(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    s1 = _stage1(ds, c, fmt)
    rows = _shuffled(demo_rows(ds, ds.split("eval"), c.demo_modes, c.demos_only_k, fmt), ds.seed,
                     f"demos_only-k{c.demos_only_k}")
    return [s1, Stage(f"demos_k{c.demos_only_k}",
                      _with_replay(rows, s1.rows, c.replay, ds.seed, "demos_only"))]


def _exposure(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> Stage:
    if c.eval_declarative_repeats is None:
        rows = declarative_rows(ds, ds.behaviours, c.declarative_repeats, fmt)
    else:
        rows = (declarative_rows(ds, ds.split("train"), c.declarative_repeats, fmt)
                + _eval_declarative(ds, c, fmt))
    return Stage("exposure", _shuffled(rows, ds.seed, "exposure"))


def _activation(ds: DataSet, c: CurriculumConfig, trainer: str, fmt: str = "code",
                stored: list[dict] | None = None) -> list[Stage]:
    """Stage 2: execution of train behaviours, by RL (after an optional SFT warm start) or SFT;
    ``stored``: stage 1's rows, of which ``activation_replay`` are replayed beside the prompts
    (the same rows for RL and SFT; RL trains them by an SFT term: :mod:`pbb.training.replay`)."""
    rows = _shuffled(demo_rows(ds, ds.split("train"), c.demo_modes, fmt=fmt), ds.seed, "activation")
    rows = _with_replay(rows, stored or [], c.activation_replay, ds.seed, "activation")
    if trainer == "sft":
        return [Stage("activation_sft", rows)]
    stages = []
    if c.rl_warmup_demos:
        warm = demo_rows(ds, ds.split("train"), c.demo_modes, c.rl_warmup_demos, fmt)
        stages.append(Stage("activation_warmup", _shuffled(warm, ds.seed, "activation_warmup")))
    return stages + [Stage("activation_rl", rows, "rl")]


def retroactive(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    exposure = _exposure(ds, c, fmt)
    return [exposure, *_activation(ds, c, "rl", fmt, exposure.rows)]


def retroactive_sft(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    exposure = _exposure(ds, c, fmt)
    return [exposure, *_activation(ds, c, "sft", fmt, exposure.rows)]


def rl_only(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    return _activation(ds, c, "rl", fmt)


def untuned(ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    return []


CURRICULA: dict[str, Callable[[DataSet, CurriculumConfig, str], list[Stage]]] = {
    "proactive": proactive, "mixture": mixture, "stage1_only": stage1_only,
    "stage2_only": stage2_only, "demos_only": demos_only, "retroactive": retroactive,
    "retroactive_sft": retroactive_sft, "rl_only": rl_only, "untuned": untuned,
}
#: curricula allowed to train on demonstrations of eval behaviours
EVAL_DEMOS_ALLOWED = {"demos_only"}


def custom(ds: DataSet, c: CurriculumConfig, name: str, stages: list[StageConfig],
           fmt: str = "code") -> list[Stage]:
    out: list[Stage] = []
    groups = {"train": ds.split("train"), "eval": ds.split("eval"), "all": ds.behaviours}
    for sc in stages:
        rows: list[dict] = []
        for part in sc.parts:
            bs = groups[part.behaviours]
            if part.kind == "declarative":
                rows += declarative_rows(ds, bs, part.repeats, fmt)
            else:
                rows += demo_rows(ds, bs, [part.kind], part.demos, fmt)
        # Seeded by the stage's name and content, not the curriculum's: two custom curricula
        # that open with the same stage share it (trained once).
        rows = _shuffled(rows, ds.seed, f"custom/{sc.name}")
        previous = out[-1].rows if out else []
        out.append(Stage(sc.name, _with_replay(rows, previous, sc.replay, ds.seed,
                                               f"custom/{sc.name}"), sc.trainer, sc.train))
    return out


def build(name: str, ds: DataSet, c: CurriculumConfig, fmt: str = "code") -> list[Stage]:
    """The stages of curriculum ``name``, checked against the leakage rules; ``NAME@STAGE``:
    NAME's stages up to and including STAGE (:func:`pbb.config.split_cut`)."""
    base, cut = split_cut(name)
    try:  # the config's own check and its message (built-in and custom names, NAME@STAGE)
        check_curriculum_name(base, c.custom)
    except ValueError as e:
        raise PbbError(str(e)) from None
    if base in c.custom:
        stages = custom(ds, c, base, c.custom[base], fmt)
        allow = any(p.kind != "declarative" and p.behaviours != "train"
                    for s in c.custom[base] for p in s.parts)
    else:  # a built-in one: CURRICULA has every name BUILTIN_CURRICULA has (test_curricula)
        stages = CURRICULA[base](ds, c, fmt)
        allow = base in EVAL_DEMOS_ALLOWED
    if cut is not None:
        names = [st.name for st in stages]
        if cut not in names:
            raise PbbError(f"curriculum {name!r}: {base} has no stage {cut!r}; its stages with "
                           f"these settings: {', '.join(names) or 'none'}")
        stages = stages[:names.index(cut) + 1]
    check_leakage(ds, stages, allow_eval_demos=allow, curriculum=name)
    return stages


def build_for_run(cfg: RunConfig, ds: DataSet) -> dict[str, list[Stage]]:
    """The stages of every curriculum ``cfg`` runs, as it trains them, the config's per-stage
    settings checked against them (:func:`check_stage_settings`)."""
    fmt = cfg.data.instruction_format
    built = {name: build(name, ds, cfg.curriculum, fmt) for name in cfg.curricula}
    check_stage_settings(cfg, built, ds)
    return built


def check_stage_settings(cfg: RunConfig, built: dict[str, list[Stage]], ds: DataSet) -> None:
    """Refuse ``train.stages`` entries that name no stage of any curriculum (a typo would
    otherwise be ignored silently), and stopping rules on stages that memorise nothing.

    ``built``: the stages of the curricula the run plans. A key may name a stage of a curriculum
    this run does not plan: a sweep shares one ``train.stages`` between points that run
    different curricula (``stage2`` of proactive beside ``demos_k3`` of demos_only). Only then
    are the other curricula built, to know their stages.
    """
    names = {st.name: st for stages in built.values() for st in stages}
    unknown = [key for key in cfg.train.stages if key not in names]
    if unknown:
        every = dict(names)
        for other in sorted(set(CURRICULA) | set(cfg.curriculum.custom)):
            if other not in built:
                every.update((st.name, st) for st in build(
                    other, ds, cfg.curriculum, cfg.data.instruction_format))
        for key in unknown:
            if key not in every:
                raise PbbError(f"train.stages.{key}: no stage of that name in any curriculum; "
                               f"stages of {cfg.curricula}: {', '.join(sorted(names)) or 'none'}")
        names = every
    for st in names.values():
        if cfg.train.stopping_rule(st.name, st.train) and (st.trainer != "sft" or not st.recall_ids):
            raise PbbError(f"train.stages.{st.name}: recall_target needs an SFT stage with "
                           "declarative rows (there is no instruction to recall)")


def check_leakage(ds: DataSet, stages: list[Stage], *, allow_eval_demos: bool,
                  curriculum: str) -> None:
    """Raise if a test input, or (unless allowed) an eval behaviour's demonstration, is trained on."""
    tests = {(d.behaviour_id, d.input) for d in ds.demonstrations if d.use == "test"}
    eval_ids = {b.id for b in ds.split("eval")}
    for st in stages:
        for row in st.rows:
            if row["kind"] == "declarative":
                continue
            if (row["behaviour_id"], row["input"]) in tests:
                raise PbbError(f"{curriculum}/{st.name}: test input {row['input']} in training rows")
            if not allow_eval_demos and row["behaviour_id"] in eval_ids:
                raise PbbError(f"{curriculum}/{st.name}: demonstration of eval behaviour "
                               f"{row['behaviour_id']} in training rows")
