"""Retroactive PBB: the reward is the verifier, GRPO stages train, log and resume, no leakage."""

import json
import os
import signal
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from pbb import data, interrupts
from pbb.config import (
    CurriculumConfig,
    PartConfig,
    RLConfig,
    StageConfig,
    TrainConfig,
    load_config,
    with_smoke,
)
from pbb.errors import PbbError
from pbb.evaluation.evaluate import build_queries
from pbb.jsonio import read_jsonl, write_jsonl
from pbb.models import load_model, load_tokenizer, resolve_model_path
from pbb.rows import curricula
from pbb.rows.render import make_row, row_rng
from pbb.store import CHECKPOINT_CLOCK, DONE, METRICS, MODEL, weights_digest
from pbb.training import grpo as rl_mod
from pbb.training.replay import ReplayTerm, with_replay
from pbb.training.rewards import completion_as_text, reward_functions, score_completion
from tests.conftest import Canned, run_cli


@pytest.fixture(scope="module")
def ds():
    return data.generate("arithmetic", behaviours=8, demos=3, test_inputs=2, eval_fraction=0.5,
                         seed=3, progress=False)


@pytest.fixture(scope="module")
def tiny():
    path = resolve_model_path("tiny-random")
    return path, load_tokenizer(path)


def _completions(ds):
    """Right (gold cot and direct), wrong (off by one), malformed (no answer line) completions."""
    out = []
    behaviours = {b.id: b for b in ds.behaviours}
    for d in [d for d in ds.demonstrations if d.use == "test"]:
        b = behaviours[d.behaviour_id]
        gold_cot = make_row(ds.domain, b, "cot", row_rng(0, b.id), d)["completion"][0]["content"]
        wrong = str(int(d.output) + 1)
        out += [(b, d, gold_cot, 1.0), (b, d, f"Answer: {d.output}", 1.0),
                (b, d, f"Trace:\nstuff\n**Answer:** {d.output}", 1.0),
                (b, d, f"Answer: {wrong}", 0.0), (b, d, gold_cot.replace(f"Answer: {d.output}",
                                                                         f"Answer: {wrong}"), 0.0),
                (b, d, f"The result is {d.output}.", 0.0), (b, d, "", 0.0),
                (b, d, "Answer: ", 0.0), (b, d, "Answer: (((", 0.0)]
    return out


def _python_answer(b, query: str) -> int:
    """The answer worked out without pbb: an arithmetic instruction is a Python function and a
    query a call of it, so Python itself runs them."""
    namespace: dict = {}
    exec(b.instruction, namespace)  # noqa: S102 - the test's own generated programs
    return eval(query, namespace)  # noqa: S307


def test_reward_is_one_exactly_for_the_right_answer(ds):
    """Rewards of known completions against scores written down here, with each right answer
    computed by Python from the instruction (not by pbb's interpreter, extractor or verifier)."""
    (correct,), weights = reward_functions(ds, format_weight=0.0)
    assert weights == [1.0]
    behaviours = {b.id: b for b in ds.behaviours}
    cases = []
    for d in [d for d in ds.demonstrations if d.use == "test"]:
        b = behaviours[d.behaviour_id]
        right = _python_answer(b, d.input)
        cases += [(b, d, f"Answer: {right}", 1.0),
                  (b, d, f"Let me trace it.\nx = ...\nAnswer: {right}", 1.0),
                  (b, d, f"Answer:  {right}  ", 1.0),  # spaces around a value are no error
                  (b, d, f"Answer: {right + 1}", 0.0),
                  (b, d, f"Answer: {right - 1}", 0.0),
                  (b, d, f"Answer: {-right if right else 1}", 0.0),
                  (b, d, f"Answer: '{right}'", 0.0),  # a string is not the number
                  (b, d, f"The result is {right}.", 0.0),  # no answer line
                  (b, d, "", 0.0), (b, d, "Answer: ", 0.0), (b, d, "Answer: (((", 0.0)]
    assert len(cases) == 11 * 8 * 2
    as_messages = [[{"role": "assistant", "content": text}] for _, _, text, _ in cases]
    kw = dict(behaviour_id=[b.id for b, *_ in cases], input=[d.input for _, d, *_ in cases])
    rewards = correct(prompts=[None] * len(cases), completions=as_messages, **kw)
    wrong = [(text, want, got) for (_, _, text, want), got in zip(cases, rewards) if got != want]
    assert not wrong, wrong[:5]
    # plain-string completions (non-conversational prompts) score the same
    assert correct(prompts=[None] * len(cases), completions=[t for *_, t, _ in cases], **kw) == rewards
    # and the helper's gold CoT, right and wrong answers, and malformed answer lines
    gold = _completions(ds)
    got = correct(prompts=[None] * len(gold), completions=[t for *_, t, _ in gold],
                  behaviour_id=[b.id for b, *_ in gold], input=[d.input for _, d, *_ in gold])
    assert got == [want for *_, want in gold]
    as_text = correct(completions=[t for _, _, t, _ in cases], behaviour_id=[b.id for b, *_ in cases],
                      input=[d.input for _, d, _, _ in cases])
    assert as_text == rewards


def test_format_reward_is_weighted_and_separate(ds):
    (correct, fmt), weights = reward_functions(ds, format_weight=0.1)
    assert weights == [1.0, 0.1] and fmt.__name__ == "format"
    b = ds.behaviours[0]
    texts = ["Answer: 99999", "no answer here", "Answer: 3"]
    assert fmt(completions=texts) == [1.0, 0.0, 1.0]
    query = next(d.input for d in ds.demonstrations if d.behaviour_id == b.id)
    assert correct(completions=["no answer here"], behaviour_id=[b.id], input=[query]) == [0.0]


def test_evaluation_scores_through_the_same_function(ds, monkeypatch, tmp_path):
    from pbb.evaluation import evaluate as ev
    from pbb.evaluation import scoring

    seen = []
    real = scoring.score_completion
    monkeypatch.setattr(scoring, "score_completion", lambda *a: seen.append(a) or real(*a))
    samples = ev.evaluate(Canned(lambda p: "Answer: 1"), ds, curriculum="c", mode="direct",
                          out_dir=tmp_path, max_new_tokens=4, progress=False)
    assert len(seen) == len(samples) == len(build_queries(ds, "direct"))
    behaviours = {b.id: b for b in ds.behaviours}
    for s in samples:
        assert s["score"] == score_completion(ds.domain, behaviours[s["behaviour_id"]], s["input"],
                                              "Answer: 1")[1]


@pytest.mark.parametrize("warmup", [0, 1])
def test_retroactive_curricula_never_train_execution_of_eval_behaviours(ds, warmup):
    c = CurriculumConfig(declarative_repeats=2, rl_warmup_demos=warmup)
    built = {n: curricula.build(n, ds, c) for n in ("retroactive", "retroactive_sft", "rl_only")}
    eval_ids = {b.id for b in ds.split("eval")}
    tests = {(d.behaviour_id, d.input) for d in ds.demonstrations if d.use == "test"}
    for name, stages in built.items():
        for st in stages:
            for row in st.rows:
                if row["kind"] != "declarative":
                    assert row["behaviour_id"] not in eval_ids, (name, st.name)
                    assert (row["behaviour_id"], row["input"]) not in tests, (name, st.name)
    retro, retro_sft, rl_only = built["retroactive"], built["retroactive_sft"], built["rl_only"]
    warm = ["sft"] * warmup
    assert [s.trainer for s in retro] == ["sft", *warm, "rl"]
    assert [s.trainer for s in retro_sft] == ["sft", "sft"] and [s.trainer for s in rl_only] == [*warm, "rl"]
    # stage 1 stores every instruction, and only instructions
    assert {r["kind"] for r in retro[0].rows} == {"declarative"}
    assert {r["behaviour_id"] for r in retro[0].rows} == {b.id for b in ds.behaviours}
    # shared exposure; RL and SFT stage 2 on the very same prompts; rl_only = retroactive minus stage 1
    assert retro[0].rows == retro_sft[0].rows
    assert [r["prompt"] for r in retro[-1].rows] == [r["prompt"] for r in retro_sft[1].rows]
    assert [s.rows for s in rl_only] == [s.rows for s in retro[1:]]
    assert {r["kind"] for r in retro[-1].rows} == set(c.demo_modes)
    if warmup:  # k demonstrations of each train behaviour, in each mode
        per = {}
        for r in retro[1].rows:
            per[(r["behaviour_id"], r["kind"])] = per.get((r["behaviour_id"], r["kind"]), 0) + 1
        assert set(per.values()) == {warmup}
        assert len(per) == len(ds.split("train")) * len(c.demo_modes)


def test_activation_replay_adds_stage_1_rows_to_both_stage_2s(ds):
    """The same stage-1 rows, tagged, beside the same prompts in RL's and SFT's stage 2; the
    warm start and rl_only untouched; at 0 (the default) stage 2 is as it was."""
    plain = CurriculumConfig(declarative_repeats=2, rl_warmup_demos=1)
    c = plain.model_copy(update={"activation_replay": 0.25})
    retro = curricula.build("retroactive", ds, c)
    retro_sft = curricula.build("retroactive_sft", ds, c)
    before = curricula.build("retroactive", ds, plain)
    rl, sft = retro[-1], retro_sft[-1]
    replayed = [r for r in rl.rows if r.get("replay")]
    # a quarter of the stage: a third as many rows as the prompts, drawn from stage 1's
    assert len(replayed) == round(len(rl.own_rows) / 3) > 0
    exposure = [(r["prompt"], r["completion"]) for r in retro[0].rows]
    assert all((r["prompt"], r["completion"]) in exposure for r in replayed)
    key = lambda rows: sorted(json.dumps([r["prompt"], r["completion"]]) for r in rows)  # noqa: E731
    assert key(rl.rows) == key(sft.rows)  # the same rows: only the trainer differs
    assert key(rl.own_rows) == key(before[-1].rows)  # the prompts of stage 2 without replay
    assert retro[1].rows == before[1].rows  # the warm start replays nothing
    rl_only = [curricula.build("rl_only", ds, x)[-1].rows for x in (c, plain)]
    assert rl_only[0] == rl_only[1]
    assert before[-1].rows == before[-1].own_rows  # nothing tagged by default
    # the custom form: an rl stage's replay is the previous stage's rows, tagged
    custom = CurriculumConfig(custom={"mine": [
        StageConfig(name="code",
                    parts=[PartConfig(kind="declarative", behaviours="all", repeats=3)]),
        StageConfig(name="exec", trainer="rl", replay=0.5,
                    parts=[PartConfig(kind="direct", behaviours="train")])]})
    code, execute = curricula.build("mine", ds, custom)
    assert 0 < len(execute.rows) - len(execute.own_rows) == len(execute.own_rows)
    assert {r["kind"] for r in execute.own_rows} == {"direct"}


def test_custom_rl_stage_is_checked():
    base = {"curricula": ["mine"]}
    # written with the key's old name (`method`), still read: the rl check applies
    bad = [{"name": "s", "method": "rl", "parts": [{"kind": "declarative", "behaviours": "all"}]}]
    with pytest.raises(PbbError, match="execution parts only"):
        load_config(None, {**base, "curriculum.custom": {"mine": bad}})
    ok = [{"name": "s", "trainer": "rl", "parts": [{"kind": "cot", "behaviours": "train"}]}]
    cfg = load_config(None, {**base, "curriculum.custom": {"mine": ok}})
    assert cfg.curriculum.custom["mine"][0].trainer == "rl"
    assert "method" not in cfg.curriculum.custom["mine"][0].model_dump()  # written as `trainer`


@pytest.mark.parametrize("override,message", [
    ({"rl.num_generations": 1}, "num_generations must be at least 2"),
    ({"rl.num_generations": 3}, "not divisible by num_generations 3"),
    ({"rl.batch_size": 6, "rl.grad_accum": 1, "rl.num_generations": 4}, "6 x 1 = 6"),
    ({"rl.loss_type": "ppo"}, "rl.loss_type"),
])
def test_combinations_trl_rejects_are_config_errors(override, message):
    with pytest.raises(PbbError, match=message):
        load_config(None, override)


def test_combination_errors_reach_the_cli_before_work(tmp_path):
    r = run_cli("run", "configs/retroactive_quick.yaml", "--out", str(tmp_path / "r"),
                "--set", "rl.num_generations=3")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "rl: batch_size x grad_accum" in r.stderr
    assert not (tmp_path / "r").exists()


def test_every_rl_setting_is_in_the_resolved_config():
    import yaml

    from pbb.config import dump_config

    cfg = load_config(Path("configs/retroactive_quick.yaml"))
    resolved = yaml.safe_load(dump_config(cfg))["rl"]
    for key in ("loss_type", "num_generations", "temperature", "beta", "learning_rate",
                "max_completion_length", "max_steps", "format_weight", "scale_rewards"):
        assert key in resolved
    args = rl_mod.grpo_args(cfg.rl, cfg.train, Path("/tmp/pbb-grpo-args"), 0, False, [1.0, 0.1])
    assert (args.loss_type, args.num_generations, args.temperature, args.beta, args.learning_rate,
            args.max_completion_length, args.max_steps) == (
        cfg.rl.loss_type, cfg.rl.num_generations, cfg.rl.temperature, cfg.rl.beta,
        cfg.rl.learning_rate, cfg.rl.max_completion_length, cfg.rl.max_steps)


def _rl_rows(ds):
    return curricula.build("rl_only", ds, CurriculumConfig(demo_modes=["direct"]))[0].rows


def _varied(completions, **_):
    """A reward that differs between completions, so GRPO has advantages to follow."""
    return [float(len(completion_as_text(c)) % 3) for c in completions]


def test_correct_signal_counts_groups_equal_on_correctness_alone(tmp_path):
    """A group is one prompt's row at one step; a format reward that differs does not make a
    group with one correctness carry signal; the same prompt at another step is another group,
    and two rows of one behaviour and input (a direct and a CoT prompt) are two groups."""
    def row(step, i, correct, fmt, b="f", x="f(1)"):
        return {"step": step, "row": i, "behaviour_id": b, "input": x, "correct": correct,
                "format": fmt}

    path = tmp_path / "rollouts.jsonl"
    write_jsonl(path, [
        row(1, 0, 1.0, 1.0), row(1, 0, 1.0, 0.0),  # one correctness
        row(1, 1, 0.0, 1.0), row(1, 1, 0.0, 1.0),  # one correctness, the same query as row 0
        row(2, 0, 0.0, 0.0), row(2, 0, 1.0, 0.0),  # row 0 again: a signal
        row(2, 2, 0.0, 1.0, "g", "g(3)"), row(2, 2, 1.0, 1.0, "g", "g(3)"),  # a signal
    ])
    assert rl_mod.correct_signal(path, "correct") == {"frac_correct_zero_std": 0.5}
    assert rl_mod.correct_signal(path, "format") == {"frac_correct_zero_std": 0.75}
    assert rl_mod.correct_signal(path, "other") == {}
    assert rl_mod.correct_signal(tmp_path / "none.jsonl", "correct") == {}
    # rollouts written before rows were logged: behaviour and input stand for the prompt
    old = tmp_path / "old.jsonl"
    write_jsonl(old, [{k: v for k, v in r.items() if k != "row"} for r in read_jsonl(path)])
    # (rows 0 and 1 merge into one group of four with a signal: the fallback undercounts)
    assert rl_mod.correct_signal(old, "correct") == {"frac_correct_zero_std": 0.0}


SMALL_RL = dict(num_generations=2, batch_size=4, max_completion_length=8, learning_rate=1e-2,
                beta=0.04, save_steps=2)


@pytest.mark.slow
def test_grpo_stage_trains_and_logs_per_step(ds, tiny, tmp_path):
    path, tok = tiny
    rl = RLConfig(max_steps=3, **SMALL_RL)
    funcs, weights = reward_functions(ds, 0.1)
    info = rl_mod.train_rl_stage(_rl_rows(ds), init=path, base=path, tokenizer=tok,
                                 cfg=TrainConfig(), rl=rl, rewards=([funcs[0], _varied], [1.0, 1.0]),
                                 stage_dir=tmp_path / "s", seed=0, progress=False)
    lines = [r for r in read_jsonl(tmp_path / "s" / METRICS) if "reward" in r]
    assert [r["step"] for r in lines] == [1, 2, 3] == list(range(1, info["steps"] + 1))
    for r in lines:
        for key in ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "kl",
                    "rewards/correct/mean", "rewards/_varied/mean"):
            assert key in r, key
        assert 0 <= r["frac_reward_zero_std"] <= 1
        assert r["completions/mean_length"] <= rl.max_completion_length
    # every completion was scored by the verifier, and the rollouts say so
    rollouts = read_jsonl(tmp_path / "s" / rl_mod.ROLLOUTS)
    assert len(rollouts) == 3 * rl.batch_size
    behaviours = {b.id: b for b in ds.behaviours}
    for r in rollouts:
        assert r["correct"] == score_completion(ds.domain, behaviours[r["behaviour_id"]], r["input"],
                                                r["completion"])[1]
    assert info["algorithm"] == "grpo" and (tmp_path / "s" / DONE).is_file()
    assert info["weights_sha256"] == weights_digest(tmp_path / "s" / MODEL)  # the saved policy
    # the step's completion budget, by which a plan scales this stage's rate
    assert info["completion_tokens_per_step"] == \
        rl.batch_size * rl.grad_accum * rl.max_completion_length
    # and the completions a step, which with their mean length give the tokens written
    assert info["completions_per_step"] == rl.batch_size * rl.grad_accum
    assert info["reward_first"] == lines[0]["reward"] and info["reward_last"] == lines[-1]["reward"]
    # each prompt's row is logged: a step's groups are its rows, num_generations completions
    # each, and the share of those with one correctness is read from them
    groups = {}
    for r in rollouts:
        groups.setdefault((r["step"], r["row"]), []).append(r["correct"])
    assert len(groups) == 3 * rl.batch_size // rl.num_generations
    assert {len(v) for v in groups.values()} == {rl.num_generations}
    assert info["frac_correct_zero_std"] == round(
        sum(len(set(v)) == 1 for v in groups.values()) / len(groups), 4)
    # the saved model is the trained policy, not the starting one
    before, after = load_model(path), load_model(tmp_path / "s" / MODEL)
    changed = sum(int(not a.equal(b)) for a, b in zip(before.parameters(), after.parameters()))
    assert changed > 0
    assert not (tmp_path / "s" / "trainer").exists()


class _Trainer:
    """What :func:`pbb.training.replay.with_replay` reads of TRL's GRPOTrainer; its own loss 1."""

    def __init__(self):
        self.state = SimpleNamespace(global_step=0)
        self.current_gradient_accumulation_steps = 2
        self._metrics = {"train": defaultdict(list)}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        return torch.tensor(1.0)


@pytest.fixture
def replay_term(ds, tiny):
    """A term of 6 replayed rows, 5 a step, and the tiny model in training mode, no dropout."""
    path, tok = tiny
    stored = curricula.build("retroactive", ds, CurriculumConfig(demo_modes=["direct"]))[0].rows
    term = ReplayTerm([dict(r, replay=True) for r in stored[:6]], tok, per_step=5,
                      max_length=TrainConfig().max_length)
    model = load_model(path).eval()  # no dropout: the same loss computed twice
    model.training = True  # what with_replay asks to tell training from evaluation
    return term, model, stored


def test_replay_deals_a_steps_rows_out_over_its_micro_batches(replay_term):
    """Under gradient accumulation each of a step's replayed rows is computed once: micro-batch
    m of G takes rows m, m + G, ..., weighted by their share of the step's completion tokens,
    so the step's term is its rows' token mean (counted here by SFT's own loss)."""
    import torch

    from pbb.training import sft

    term, model, _ = replay_term
    assert [term.indices(1, m, 2) for m in (0, 1)] == [[5, 1, 3], [0, 2]]
    assert sorted(term.indices(1, 0, 2) + term.indices(1, 1, 2)) == sorted(term.indices(1))
    with torch.no_grad():
        for step in (0, 1):
            x, y, first = sft.collate([term.encoded[i] for i in term.indices(step)], term.pad_id)
            mean, _ = sft.batch_loss(model, x, y, first)  # counts its target tokens itself
            whole = [term.loss(model, step, m, 2) for m in (0, 1)]
            assert sum(share for _, share in whole) == pytest.approx(1.0)
            assert sum(float(loss) * share for loss, share in whole) == \
                pytest.approx(float(mean), rel=1e-5)
        with pytest.raises(ValueError, match="micro-batch 2 of a step of 2"):
            term.loss(model, 0, 2, 2)  # a miscount is an error, never other rows


def test_replay_counts_the_micro_batches_of_each_step(replay_term, tiny):
    """The trainer adds micro-batch m's share at its m-th call of a step; a new step, or a
    shorter one (an epoch's last), starts from 0; a micro-batch left without rows adds
    nothing. TRL divides its own loss for accumulation, so the term is not divided again."""
    import torch
    from trl import GRPOTrainer

    term, model, stored = replay_term
    assert GRPOTrainer.loss_is_scaled_for_ga
    trainer = with_replay(_Trainer, term)()

    def expected(step, micros):
        return [1.0 + float(loss) * share
                for loss, share in (term.loss(model, step, m, micros) for m in range(micros))]

    with torch.no_grad():  # losses only
        for step, micros in ((0, 2), (1, 2), (2, 1), (3, 2)):
            trainer.state.global_step = step
            trainer.current_gradient_accumulation_steps = micros
            got = [float(trainer.compute_loss(model, None)) for _ in range(micros)]
            assert got == pytest.approx(expected(step, micros), rel=1e-5), step
        assert len(trainer._metrics["train"]["replay_loss"]) == 7
        one = with_replay(_Trainer, ReplayTerm([dict(stored[0], replay=True)], tiny[1],
                                               per_step=1,
                                               max_length=TrainConfig().max_length))()
        assert float(one.compute_loss(model, None)) != 1.0  # micro-batch 0 has the step's one row
        assert float(one.compute_loss(model, None)) == 1.0  # micro-batch 1 has none
        assert len(one._metrics["train"]["replay_loss"]) == 1


@pytest.mark.slow
def test_grpo_replay_term_trains_the_replayed_rows(ds, tiny, tmp_path):
    """Rows tagged ``replay`` are no prompts: an SFT term beside GRPO's loss trains them, each
    step the rows its number picks; the term logged is their cross-entropy on the policy (at
    step 1 the starting model's, recomputed here), and it changes the update."""
    path, tok = tiny
    rl = RLConfig(max_steps=2, **SMALL_RL)
    prompts = _rl_rows(ds)
    stored = curricula.build("retroactive", ds, CurriculumConfig(demo_modes=["direct"]))[0].rows
    replayed = [dict(r, replay=True) for r in stored[:len(prompts)]]
    funcs, _ = reward_functions(ds, 0.1)
    kw = dict(init=path, base=path, tokenizer=tok, cfg=TrainConfig(), rl=rl, seed=0,
              rewards=([funcs[0], _varied], [1.0, 1.0]), progress=False)
    info = rl_mod.train_rl_stage(prompts + replayed, stage_dir=tmp_path / "r", **kw)
    plain = rl_mod.train_rl_stage(prompts, stage_dir=tmp_path / "p", **kw)
    each = rl.completions_per_step // rl.num_generations  # as many replayed rows as prompts
    assert (info["rows"], info["replayed_rows"], info["replayed_per_step"]) == \
        (len(prompts), len(replayed), each)
    assert "replayed_rows" not in plain and plain["rows"] == len(prompts)
    lines = [r for r in read_jsonl(tmp_path / "r" / METRICS) if "reward" in r]
    assert len(lines) == 2 and all(r["replay_loss"] > 0 for r in lines)
    assert not any("replay_loss" in r for r in read_jsonl(tmp_path / "p" / METRICS))
    term = ReplayTerm(replayed, tok, per_step=each, max_length=TrainConfig().max_length)
    assert term.indices(1) == list(range(each, 2 * each))
    assert lines[0]["replay_loss"] == pytest.approx(
        float(term.loss(load_model(path), 0)[0].detach()), rel=1e-3)
    # the prompts alone are GRPO's, and the first step sampled the same completions in both
    rollouts = [read_jsonl(tmp_path / d / rl_mod.ROLLOUTS) for d in ("r", "p")]
    assert {r["row"] for r in rollouts[0]} <= set(range(len(prompts)))
    first = [[(r["row"], r["completion"]) for r in part if r["step"] == 1] for part in rollouts]
    assert first[0] == first[1] and first[0]
    # so the policies parted at the update: the term's gradient, which lowered the loss of the
    # rows it trained (steps 0 and 1) against the same GRPO without it
    a, b = load_model(tmp_path / "r" / MODEL), load_model(tmp_path / "p" / MODEL)
    assert any(not x.equal(y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    trained = ReplayTerm(replayed[:2 * each], tok, per_step=2 * each,
                         max_length=TrainConfig().max_length)
    assert float(trained.loss(a, 0)[0].detach()) < float(trained.loss(b, 0)[0].detach())


@pytest.mark.slow
def test_grpo_under_gradient_accumulation_computes_each_replayed_row_once_a_step(
        ds, tiny, tmp_path, monkeypatch):
    """TRL's trainer, as it runs: two micro-batches a step, the first taking the step's rows
    0, 2, ... and the second 1, 3, ...; each step's count starts again at 0."""
    path, tok = tiny
    rl = RLConfig(max_steps=2, grad_accum=2, **SMALL_RL)
    prompts = _rl_rows(ds)
    stored = curricula.build("retroactive", ds, CurriculumConfig(demo_modes=["direct"]))[0].rows
    calls, real = [], ReplayTerm.loss

    def counted(self, model, step, micro=0, of=1):
        calls.append((step, micro, of, self.indices(step, micro, of)))
        return real(self, model, step, micro, of)

    monkeypatch.setattr(ReplayTerm, "loss", counted)
    funcs, _ = reward_functions(ds, 0.1)
    info = rl_mod.train_rl_stage(
        prompts + [dict(r, replay=True) for r in stored[:len(prompts)]], init=path, base=path,
        tokenizer=tok, cfg=TrainConfig(), rl=rl, seed=0, stage_dir=tmp_path / "r",
        rewards=([funcs[0], _varied], [1.0, 1.0]), progress=False)
    each = info["replayed_per_step"]
    assert each == rl.completions_per_step // rl.num_generations >= 2
    assert [c[:3] for c in calls] == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]
    for step in (0, 1):  # each of the step's rows once, over its two micro-batches
        rows = [i for s, _, _, ids in calls if s == step for i in ids]
        assert sorted(rows) == list(range(step * each, (step + 1) * each))


@pytest.mark.slow
def test_interrupted_grpo_stage_resumes_from_its_checkpoint(ds, tiny, tmp_path, monkeypatch):
    path, tok = tiny
    rl = RLConfig(max_steps=4, **SMALL_RL)
    rows = _rl_rows(ds)
    funcs, weights = reward_functions(ds)
    real = rl_mod._MetricsLog

    def crashing_log(p, on_metrics=None):
        from transformers import TrainerCallback

        inner = real(p, on_metrics)

        class Crash(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                inner.on_log(args, state, control, logs=logs, **kw)
                if state.global_step == 3:
                    raise KeyboardInterrupt  # killed after step 3; the checkpoint is step 2

        return Crash()

    monkeypatch.setattr(rl_mod, "_MetricsLog", crashing_log)
    kw = dict(init=path, base=path, tokenizer=tok, cfg=TrainConfig(), rl=rl,
              rewards=([funcs[0], _varied], [1.0, 1.0]), stage_dir=tmp_path / "s", seed=0,
              progress=False)
    with pytest.raises(KeyboardInterrupt):
        rl_mod.train_rl_stage(rows, **kw)
    assert not (tmp_path / "s" / DONE).exists()
    assert (tmp_path / "s" / "trainer" / "checkpoint-2").is_dir()
    assert [r["step"] for r in read_jsonl(tmp_path / "s" / METRICS)] == [1, 2, 3]
    clock = tmp_path / "s" / "trainer" / "checkpoint-2" / CHECKPOINT_CLOCK
    before = json.loads(clock.read_text())["seconds"]

    monkeypatch.setattr(rl_mod, "_MetricsLog", real)
    info = rl_mod.train_rl_stage(rows, **kw)
    assert info["resumed"] is True and info["steps"] == 4
    # its time counts the life before the kill, up to that life's last checkpoint
    assert info["seconds_before"] == pytest.approx(before, abs=0.1)
    assert 0 < before < info["seconds"]
    # this life's own share, a resumed stage's rate: the steps after checkpoint 2, its own time
    assert info["last_life"]["steps"] == 2
    assert info["last_life"]["seconds"] == pytest.approx(info["seconds"] - before, abs=0.2)
    steps = [r["step"] for r in read_jsonl(tmp_path / "s" / METRICS) if "reward" in r]
    assert steps == [1, 2, 3, 4]  # step 3 was trained again and is logged once
    assert {r["step"] for r in read_jsonl(tmp_path / "s" / rl_mod.ROLLOUTS)} == {1, 2, 3, 4}
    assert json.loads((tmp_path / "s" / DONE).read_text())["steps"] == 4


@pytest.mark.slow
def test_run_reports_the_controls_from_the_samples(tmp_path):
    from pbb.evaluation.metrics import bootstrap_ci, per_behaviour
    from pbb.experiments import run as run_mod

    cfg = load_config(Path("configs/retroactive_quick.yaml"), with_smoke({
        "data.demos": 2, "rl.max_steps": 2}))
    out = tmp_path / "r"
    summary = run_mod.run(cfg, out, progress=False)
    plan = json.loads((out / "curricula.json").read_text())
    # stage 1 is shared by retroactive and retroactive_sft: one directory, trained once
    assert plan["retroactive"][0]["dir"] == plan["retroactive_sft"][0]["dir"]
    assert [e["stage"] for e in plan["rl_only"]] == ["activation_warmup", "activation_rl"]
    assert len(list((out / "stages").iterdir())) == 6  # exposure, 2 warmups, 2 RL, 1 SFT
    rl_stages = [e for es in summary["stages"].values() for e in es if e.get("algorithm") == "grpo"]
    assert len(rl_stages) == 2 and all(e["steps"] == 2 for e in rl_stages)
    assert (out / "rewards.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "| retroactive - rl_only |" in report and "## RL stages" in report
    for name, entries in summary["stages"].items():  # each RL stage's row: its correctness
        for e in (e for e in entries if e.get("algorithm") == "grpo"):  # share, tokens, seconds
            row = next(r for r in report.splitlines()
                       if r.startswith(f"| {name}/{e['stage']} | {e['steps']} |"))
            assert row.split(" | ")[-3] == str(e["frac_correct_zero_std"])
    # every comparison is the paired difference recomputed from the samples files
    comps = summary["comparisons"]
    assert {(c["curriculum"], c["control"]) for c in comps} == {
        ("retroactive", "rl_only"), ("retroactive", "retroactive_sft")}
    for c in comps:
        acc = [per_behaviour([s for s in read_jsonl(out / "eval" / name / c["mode"] / "samples.jsonl")
                              if s["split"] == c["split"]]) for name in (c["curriculum"], c["control"])]
        diffs = [acc[0][b] - acc[1][b] for b in sorted(acc[0])]
        assert c["difference"] == pytest.approx(sum(diffs) / len(diffs))
        assert (c["ci_low"], c["ci_high"]) == pytest.approx(bootstrap_ci(diffs, cfg.eval.bootstrap, cfg.seed))
        assert c["n_behaviours"] == len(diffs) == 4


def test_rl_use_vllm_passes_trls_options_and_is_refused_without_vllm_or_gpu(tmp_path, monkeypatch):
    import trl

    from pbb.config import RLConfig, TrainConfig
    from pbb.evaluation import served as backends
    from pbb.experiments import run as run_mod
    from pbb.training.grpo import grpo_args

    # TRL's own GRPOConfig takes the options (a renamed or dropped one is a TypeError here) and
    # keeps them as given; it checks for vllm itself only when the trainer starts
    args = grpo_args(RLConfig(use_vllm=True, vllm_mode="server",
                              vllm_server_base_url="http://h:8000"),
                     TrainConfig(), tmp_path, 0, False, [1.0])
    assert type(args) is trl.GRPOConfig
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_base_url) == \
        (True, "server", "http://h:8000")
    args = grpo_args(RLConfig(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.55),
                     TrainConfig(), tmp_path, 0, False, [1.0])
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization) == \
        (True, "colocate", 0.55)
    assert args.vllm_server_base_url is None  # not set: TRL's host and port defaults apply
    assert grpo_args(RLConfig(), TrainConfig(), tmp_path, 0, False, [1.0]).use_vllm is False
    cfg = load_config(Path("configs/retroactive_quick.yaml"), {"rl.use_vllm": True})
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(PbbError, match="rl.use_vllm needs the vllm package"):
        run_mod.run(cfg, tmp_path / "a", progress=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm"
                        else real(name, *a))
    monkeypatch.setattr(backends, "_has_gpu", lambda: False)
    with pytest.raises(PbbError, match="rl.use_vllm needs a CUDA GPU"):
        run_mod.run(cfg, tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_a_stop_inside_a_grpo_step_checkpoints_that_step(ds, tiny, tmp_path, sigterm_restored):
    """SIGTERM while step 2's completions are scored, in a stage that checkpoints every 1000
    steps: step 2 is finished, logged and checkpointed before the stop is raised, and the rerun
    trains steps 3-4 only."""
    path, tok = tiny
    rl = RLConfig(max_steps=4, **{**SMALL_RL, "save_steps": 1000})
    funcs, weights = reward_functions(ds)
    calls = []

    def signalling(completions, **_):
        calls.append(len(calls) + 1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at once, inside the step
        return _varied(completions)

    kw = dict(init=path, base=path, tokenizer=tok, cfg=TrainConfig(), rl=rl,
              stage_dir=tmp_path / "s", seed=0, progress=False)
    interrupts.install()
    with pytest.raises(KeyboardInterrupt):
        rl_mod.train_rl_stage(_rl_rows(ds), rewards=([funcs[0], signalling], [1.0, 1.0]), **kw)
    assert calls == [1, 2]
    assert [p.name for p in (tmp_path / "s" / "trainer").glob("checkpoint-*")] == ["checkpoint-2"]
    assert (tmp_path / "s" / "trainer" / "checkpoint-2" / CHECKPOINT_CLOCK).is_file()
    assert [r["step"] for r in read_jsonl(tmp_path / "s" / METRICS)] == [1, 2]
    info = rl_mod.train_rl_stage(_rl_rows(ds), rewards=([funcs[0], _varied], [1.0, 1.0]), **kw)
    assert info["resumed"] is True and info["steps"] == 4
    assert [r["step"] for r in read_jsonl(tmp_path / "s" / METRICS) if "reward" in r] \
        == [1, 2, 3, 4]
    assert [r["step"] for r in read_jsonl(tmp_path / "s" / rl_mod.ROLLOUTS)].count(2) \
        == rl.batch_size  # step 2 was not sampled again

