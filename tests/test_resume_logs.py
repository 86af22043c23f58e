"""A kill in the middle of a write leaves half a line at the end of an append-only file. Every
file pbb resumes from (the partial samples of an evaluation, a stage's metrics.jsonl and
rollouts.jsonl, a sweep point's log) is cut back to its last complete line before anything is
appended to it, and the rerun ends with what an uninterrupted run writes. A bad line before the
last one is not a kill's doing: it stays an error naming file:line. A checkpoint written again at
the step it was written at never passes through a moment without its weights."""

import json
import re
import sys
from pathlib import Path

import pytest

from pbb import data, jsonio
from pbb.errors import PbbError
from pbb.evaluation import evaluate as evaluate_mod
from pbb.evaluation.generators import HFGenerator
from pbb.jsonio import dumps, read_jsonl
from pbb.models import load_model, load_tokenizer, resolve_model_path
from pbb.store import DONE, METRICS, PARTIAL, SAMPLES
from tests.conftest import Canned

TORN = re.compile(r"(\S+): cut a torn last line \((\d+) bytes\) from an interrupted run")


def _torn(rec: dict) -> bytes:
    """What a kill in the middle of appending ``rec`` leaves: its first bytes, no newline. Cut in
    the middle of a multi-byte character when the record has one (a kill cuts bytes, not
    characters), else in the middle of the record."""
    raw = dumps(rec).encode("utf-8")
    wide = [i for i, ch in enumerate(dumps(rec)) if len(ch.encode("utf-8")) > 1]
    cut = len(dumps(rec)[:wide[-1]].encode("utf-8")) + 1 if wide else len(raw) // 2
    return raw[:cut]


def _tearing_append(real, when):
    """``append_jsonl`` that, on the write ``when(path, records)`` picks, writes every record but
    the last and half of the last one, then dies (a kill in the middle of the write)."""

    def append(path, *records):
        if when(Path(path), records):
            real(path, *records[:-1]) if records[:-1] else None
            with open(path, "ab") as f:
                f.write(_torn(records[-1]))
            raise KeyboardInterrupt
        real(path, *records)

    return append


def _notes(text: str) -> list[tuple[str, int]]:
    return [(name, int(n)) for name, n in TORN.findall(text)]


# --- the repair itself ---------------------------------------------------------------------


def test_a_torn_last_line_is_cut_back_to_the_last_complete_record(tmp_path):
    f = tmp_path / "m.jsonl"
    whole = "".join(dumps({"step": i, "text": "héllo"}) + "\n" for i in range(3))
    half = _torn({"step": 3, "text": "héllo wörld"})
    f.write_bytes(whole.encode() + half)
    with pytest.raises((PbbError, UnicodeDecodeError)):  # half a UTF-8 character: unreadable
        read_jsonl(f)
    assert jsonio.repair_jsonl(f) == len(half)
    assert f.read_text(encoding="utf-8") == whole
    assert jsonio.repair_jsonl(f) == 0 and f.read_text(encoding="utf-8") == whole  # idempotent


def test_a_file_that_ends_with_a_newline_is_left_as_it_is(tmp_path):
    f = tmp_path / "m.jsonl"
    assert jsonio.repair_jsonl(f) == 0 and not f.exists()  # nothing to repair, nothing made
    f.write_bytes(b"")
    assert jsonio.repair_jsonl(f) == 0 and f.read_bytes() == b""
    f.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    assert jsonio.repair_jsonl(f) == 0 and f.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    f.write_bytes(b'{"a": 1, "b"')  # only a torn line: nothing complete to keep
    assert jsonio.repair_jsonl(f) == 12 and f.read_bytes() == b""


def test_a_record_written_without_its_newline_is_not_complete(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_bytes(b'{"a": 1}\n{"a": 2}')  # every write ends with its newline: this one did not
    assert jsonio.repair_jsonl(f) == 8 and f.read_bytes() == b'{"a": 1}\n'


def test_a_text_log_is_cut_back_to_its_last_newline_over_many_blocks(tmp_path):
    f = tmp_path / "p.log"
    body = b"x" * 200_000 + b"\n"
    f.write_bytes(body + b"y" * 150_000)  # the torn line spans blocks of the backward search
    assert jsonio.cut_torn_tail(f) == 150_000 and f.read_bytes() == body


def test_a_bad_line_before_the_last_is_an_error_naming_the_line_not_a_repair(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_bytes(b'{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    assert jsonio.repair_jsonl(f) == 0  # not a kill's doing: left for the reader to report
    with pytest.raises(PbbError, match=r"m\.jsonl:2: invalid JSON"):
        read_jsonl(f)


# --- evaluation: samples.partial.jsonl ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_eval():
    path = resolve_model_path("tiny-random")
    ds = data.generate("arithmetic", behaviours=6, demos=2, test_inputs=2, eval_fraction=0.5,
                       seed=0, progress=False)
    return load_model(path), load_tokenizer(path), ds


def _evaluate(tiny_eval, out_dir):
    model, tok, ds = tiny_eval
    # one prompt per batch: the same numbers whichever prompts a run has left to answer
    return evaluate_mod.evaluate(HFGenerator(model, tok, batch_size=1), ds, curriculum="c",
                                 mode="direct", out_dir=out_dir, max_new_tokens=8, progress=False)


def _complete_prompts(raw: bytes) -> set[str]:
    """The prompts of the lines of a partial samples file that are whole records."""
    out = set()
    for line in raw.split(b"\n")[:-1]:
        try:
            out.add(json.loads(line)["prompt"])
        except ValueError:
            pass
    return out


@pytest.mark.slow
def test_a_torn_partial_samples_file_resumes_to_the_uninterrupted_evaluation(
        tiny_eval, tmp_path, monkeypatch, capsys):
    _evaluate(tiny_eval, tmp_path / "whole")
    whole = (tmp_path / "whole" / SAMPLES).read_bytes()
    n = len(whole.splitlines())
    assert n == 12

    real_append, real_generate = evaluate_mod.append_jsonl, HFGenerator.generate
    asked: list[list[str]] = []

    def generate(self, prompts, **kw):
        asked.append(list(prompts))
        return real_generate(self, prompts, **kw)

    monkeypatch.setattr(HFGenerator, "generate", generate)
    out, partial = tmp_path / "cut", tmp_path / "cut" / PARTIAL
    answered = []  # prompts with a complete line in the partial file after each kill
    # killed twice in the middle of a write: after 4 answers, then after 3 more
    for kill_at in (5, 4):
        writes = []
        monkeypatch.setattr(evaluate_mod, "append_jsonl", _tearing_append(
            real_append, lambda p, r: writes.append(p) or len(writes) == kill_at))
        with pytest.raises(KeyboardInterrupt):
            _evaluate(tiny_eval, out)
        raw = partial.read_bytes()
        assert not raw.endswith(b"\n")  # a torn last line
        answered.append(_complete_prompts(raw))
    capsys.readouterr()
    monkeypatch.setattr(evaluate_mod, "append_jsonl", real_append)
    samples = _evaluate(tiny_eval, out)

    assert (out / SAMPLES).read_bytes() == whole  # byte for byte
    assert len({(s["behaviour_id"], s["input"]) for s in samples}) == len(samples) == n
    # each rerun asked for exactly the queries that had no complete answer, the torn one too
    assert [len(a) for a in asked] == [n, n - 4, n - 7]
    every = set(asked[0])
    assert [len(a) for a in answered] == [4, 7]
    assert set(asked[1]) == every - answered[0] and set(asked[2]) == every - answered[1]
    assert not partial.exists()
    notes = _notes(capsys.readouterr().err)
    assert len(notes) == 1 and notes[0][0] == PARTIAL and notes[0][1] > 0


def test_a_bad_line_in_the_middle_of_partial_samples_is_an_error_naming_it(tmp_path):
    ds = data.generate("arithmetic", behaviours=2, demos=2, test_inputs=2, eval_fraction=0.5,
                       seed=0, progress=False)
    q = evaluate_mod.build_queries(ds, "direct")
    good = [{"behaviour_id": x["behaviour_id"], "input": x["input"], "score": 0.0} for x in q]
    (tmp_path / PARTIAL).write_bytes(
        (dumps(good[0]) + "\n").encode() + _torn(good[1]) + (dumps(good[2]) + "\n").encode())
    with pytest.raises(PbbError, match=r"samples\.partial\.jsonl:2: invalid JSON"):
        evaluate_mod.evaluate(Canned(lambda p: "Answer: 0"), ds, curriculum="c", mode="direct",
                              out_dir=tmp_path, max_new_tokens=8)


# --- training stages: metrics.jsonl and rollouts.jsonl -----------------------------------------


def _stage_with_checkpoint(stage_dir: Path, step: int) -> None:
    ckpt = stage_dir / "trainer" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")


def test_torn_stage_logs_are_cut_on_resume_like_uninterrupted_ones(tmp_path, capsys):
    """start_stage of a stage killed mid-write at step 3 (its checkpoint: step 2), then the
    resumed steps 3 and 4: the logs an uninterrupted run writes, whatever was torn."""
    from pbb.store import ROLLOUTS, start_stage

    metrics = [{"step": s, "loss": round(1 / s, 6), "learning_rate": 0.001} for s in (1, 2, 3, 4)]
    rollouts = [{"step": s, "behaviour_id": f"b{k}", "input": "[3, 4]",
                 "completion": f"Answer: {s}{k} — é→∑ 日本", "correct": 0.0}
                for s in (1, 2, 3, 4) for k in range(2)]
    whole = tmp_path / "whole"
    whole.mkdir()
    jsonio.write_jsonl(whole / METRICS, metrics)
    jsonio.write_jsonl(whole / ROLLOUTS, rollouts)

    cut = tmp_path / "cut"
    _stage_with_checkpoint(cut, 2)
    before = [m for m in metrics if m["step"] <= 3]
    (cut / METRICS).write_bytes("".join(dumps(m) + "\n" for m in before[:-1]).encode()
                                + _torn(before[-1]))
    done = [r for r in rollouts if r["step"] <= 2] + rollouts[4:5]
    (cut / ROLLOUTS).write_bytes("".join(dumps(r) + "\n" for r in done).encode()
                                 + _torn(rollouts[5]))
    assert start_stage(cut, logs=(METRICS, ROLLOUTS)) == cut / "trainer" / "checkpoint-2"
    notes = dict(_notes(capsys.readouterr().err))
    assert set(notes) == {METRICS, ROLLOUTS} and all(n > 0 for n in notes.values())
    for name, records in ((METRICS, metrics), (ROLLOUTS, rollouts)):
        jsonio.append_jsonl(cut / name, *(r for r in records if r["step"] > 2))  # resumed steps
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_bad_line_in_the_middle_of_a_stage_log_is_an_error_naming_it(tmp_path):
    from pbb.store import start_stage

    _stage_with_checkpoint(tmp_path, 2)
    (tmp_path / METRICS).write_bytes(b'{"step": 1}\n{"step": 2, "lo\n{"step": 2}\n')
    with pytest.raises(PbbError, match=r"metrics\.jsonl:2: invalid JSON"):
        start_stage(tmp_path)


@pytest.fixture(scope="module")
def tiny():
    path = resolve_model_path("tiny-random")
    return path, load_tokenizer(path)


def _close(a: list[dict], b: list[dict]) -> None:
    """The same records, floats to the precision resumed training reproduces them."""
    assert [sorted(x) for x in a] == [sorted(y) for y in b]
    for x, y in zip(a, b):
        for k in x:
            if isinstance(x[k], float):
                assert x[k] == pytest.approx(y[k], rel=1e-4, abs=1e-6), (k, x, y)
            else:
                assert x[k] == y[k], (k, x, y)


@pytest.mark.slow
def test_a_torn_metrics_line_resumes_an_sft_stage_to_the_uninterrupted_logs(
        tiny, tmp_path, monkeypatch, capsys):
    from pbb.config import TrainConfig
    from pbb.rows.curricula import declarative_rows, demo_rows
    from pbb.training import sft as sft_mod

    path, tok = tiny
    ds = data.generate("arithmetic", behaviours=4, demos=2, test_inputs=1, eval_fraction=0.5,
                       seed=0, progress=False)
    rows = declarative_rows(ds, ds.behaviours, 2) + demo_rows(ds, ds.split("train"), ["direct"])
    cfg = TrainConfig(learning_rate=1e-3, batch_size=4, warmup_ratio=0.0, precision="fp32",
                      save_steps=2, epochs=2)
    kw = dict(init=path, base=path, tokenizer=tok, cfg=cfg, seed=0, progress=False)
    info = sft_mod.train_sft(rows, stage_dir=tmp_path / "whole", **kw)
    assert info["steps"] >= 4
    monkeypatch.setattr(sft_mod, "append_jsonl", _tearing_append(
        sft_mod.append_jsonl, lambda p, r: r[-1].get("step") == 3))  # checkpoint: step 2
    with pytest.raises(KeyboardInterrupt):
        sft_mod.train_sft(rows, stage_dir=tmp_path / "cut", **kw)
    assert not (tmp_path / "cut" / METRICS).read_bytes().endswith(b"\n")
    monkeypatch.undo()
    capsys.readouterr()
    resumed = sft_mod.train_sft(rows, stage_dir=tmp_path / "cut", **kw)
    assert resumed["resumed"] and resumed["steps"] == info["steps"]
    _close(read_jsonl(tmp_path / "cut" / METRICS), read_jsonl(tmp_path / "whole" / METRICS))
    assert [n for n, _ in _notes(capsys.readouterr().err)] == [METRICS]


@pytest.mark.slow
def test_torn_rollouts_and_metrics_resume_a_grpo_stage_to_the_uninterrupted_logs(
        tiny, tmp_path, monkeypatch, capsys):
    from pbb.config import CurriculumConfig, RLConfig, TrainConfig
    from pbb.rows import curricula
    from pbb.training import grpo as rl_mod
    from pbb.training import hf_trainer as train_mod
    from pbb.training.rewards import completion_as_text, reward_functions

    path, tok = tiny
    ds = data.generate("arithmetic", behaviours=8, demos=3, test_inputs=2, eval_fraction=0.5,
                       seed=3, progress=False)
    rows = curricula.build("rl_only", ds, CurriculumConfig(demo_modes=["direct"]))[0].rows
    funcs, _ = reward_functions(ds)

    def varied(completions, **_):
        return [float(len(completion_as_text(c)) % 3) for c in completions]

    rl = RLConfig(max_steps=4, num_generations=2, batch_size=4, max_completion_length=8,
                  learning_rate=1e-2, beta=0.04, save_steps=2)
    kw = dict(init=path, base=path, tokenizer=tok, cfg=TrainConfig(), rl=rl,
              rewards=([funcs[0], varied], [1.0, 1.0]), seed=0, progress=False)
    rl_mod.train_rl_stage(rows, stage_dir=tmp_path / "whole", **kw)

    cut = tmp_path / "cut"
    # first killed while writing step 3's rollouts, then (resumed from step 2) step 3's metrics
    monkeypatch.setattr(rl_mod, "append_jsonl", _tearing_append(
        rl_mod.append_jsonl, lambda p, r: r[-1]["step"] == 3))
    with pytest.raises(KeyboardInterrupt):
        rl_mod.train_rl_stage(rows, stage_dir=cut, **kw)
    assert not (cut / rl_mod.ROLLOUTS).read_bytes().endswith(b"\n")
    monkeypatch.undo()
    monkeypatch.setattr(train_mod, "append_jsonl", _tearing_append(
        train_mod.append_jsonl, lambda p, r: r[-1]["step"] == 3))
    with pytest.raises(KeyboardInterrupt):
        rl_mod.train_rl_stage(rows, stage_dir=cut, **kw)
    assert not (cut / METRICS).read_bytes().endswith(b"\n")
    monkeypatch.undo()
    capsys.readouterr()
    info = rl_mod.train_rl_stage(rows, stage_dir=cut, **kw)
    assert info["resumed"] and info["steps"] == 4 and (cut / DONE).is_file()
    assert [n for n, _ in _notes(capsys.readouterr().err)] == [METRICS]

    def strip(records):
        # how long the steps took is not a result; the Trainer's closing train_loss averages
        # the steps this process trained (transformers' own summary, resumed or not)
        return [{k: v for k, v in r.items()
                 if not any(w in k for w in ("time", "per_second")) and k != "train_loss"}
                for r in records]

    _close(strip(read_jsonl(cut / METRICS)), strip(read_jsonl(tmp_path / "whole" / METRICS)))
    assert (cut / rl_mod.ROLLOUTS).read_bytes() == (tmp_path / "whole" / rl_mod.ROLLOUTS).read_bytes()


# --- sweeps: a point's log -------------------------------------------------------------------


def test_a_torn_sweep_point_log_is_cut_before_the_rerun_appends(tmp_path, monkeypatch, capsys):
    from pbb.config import load_config
    from pbb.experiments import executors

    said = "print('pbb run: stage 1'); print('pbb run: done')"
    monkeypatch.setattr(executors, "point_command",
                        lambda cfg_file, run_dir, stages: [sys.executable, "-c", said])
    point = {"name": "k1/seed0", "config": load_config(Path("configs/quickstart.yaml"))}
    executors.run_local([point], tmp_path / "whole", jobs=1)
    rerun = (tmp_path / "whole" / "logs" / "k1_seed0.log").read_bytes()
    assert rerun == b"pbb run: stage 1\npbb run: done\n"

    log = tmp_path / "cut" / "logs" / "k1_seed0.log"
    log.parent.mkdir(parents=True)
    complete = b"pbb run: stage 1\ntrain 3/9 loss 2.1\n"
    log.write_bytes(complete + "train 4/9 loss 1.9 — é"[:-1].encode() + "é".encode()[:1])
    capsys.readouterr()
    executors.run_local([point], tmp_path / "cut", jobs=1)
    # the killed attempt's complete lines, then the rerun's, every line whole
    assert log.read_bytes() == complete + rerun
    out = capsys.readouterr().out
    assert _notes(" ".join(out.split())) == [("k1_seed0.log", len("train 4/9 loss 1.9 — ".encode()) + 1)]


class _FakeEngine:
    """Writes a checkpoint's weights file, numbered by how often it was asked to."""

    calls = 0

    def save_checkpoint(self, target: Path) -> None:
        self.calls += 1
        (target / "model").mkdir()
        (target / "model" / "model.safetensors").write_bytes(b"weights %d" % self.calls)


def test_a_second_checkpoint_at_the_same_step_keeps_its_weights_and_replaces_only_the_state(
        tmp_path):
    # An epoch's end checkpoints again at the step its last step just checkpointed. Rewriting the
    # whole folder left a window where a kill took the weights but not state.json, and the next
    # life resumed from a checkpoint without weights (seen in the crash test).
    from pbb.store import checkpoint_step
    from pbb.training.engine import write_checkpoint

    engine, trainer = _FakeEngine(), tmp_path / "trainer"
    trainer.mkdir()
    write_checkpoint(engine, trainer, 1, {"step": 1, "epoch": 0, "micro": 1})
    weights = trainer / "checkpoint-1" / "model" / "model.safetensors"
    inode = weights.stat().st_ino
    write_checkpoint(engine, trainer, 1, {"step": 1, "epoch": 1, "micro": 0})
    assert engine.calls == 1
    assert weights.stat().st_ino == inode and weights.read_bytes() == b"weights 1"
    assert jsonio.read_json(trainer / "checkpoint-1" / "state.json")["epoch"] == 1
    assert checkpoint_step(tmp_path) == 1

    write_checkpoint(engine, trainer, 2, {"step": 2, "epoch": 1, "micro": 1})
    assert engine.calls == 2
    assert sorted(p.name for p in trainer.iterdir()) == ["checkpoint-2"]
    assert (trainer / "checkpoint-2" / "model" / "model.safetensors").read_bytes() == b"weights 2"
