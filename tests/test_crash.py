"""Crash consistency: ``pbb run`` and ``pbb sweep --jobs 2`` killed with SIGKILL again and again,
at seeded random moments in every phase (data, each stage's steps, checkpoint writes,
evaluation), and started again after each kill, end exactly where an uninterrupted run ends:
the same results in ``summary.json``, the same completions byte for byte, every query answered
once, every training step logged once.

A failure prints the seed and the kill schedule, so ``CRASH_SEED=N pytest tests/test_crash.py``
replays it.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("CRASH_SEED", "0"))
# two steps a stage (each checkpointed, so one stage resumes mid-way): a life killed as soon as
# it moves gets a log line or two further, so the kills reach the evaluation within a dozen lives
RUN_SETS = ["--set", "curricula=[proactive, stage1_only]", "--set", "train.max_steps=2",
            "--set", "train.save_steps=1", "--set", "eval.batch_size=1"]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "pbb", *args, "--no-progress"],
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _progress(root: Path) -> dict[str, dict[str, int]]:
    """What the run directory shows of each phase's progress: per file, a number that grows
    while the run moves forward (its size; 1 for a directory that exists)."""
    def sizes(pattern):
        return {str(p): p.stat().st_size for p in root.rglob(pattern) if p.is_file()}

    while True:
        try:
            return {
                "data": {str(p): 1 for p in (root / "data", root / "runs") if p.exists()},
                "stage": sizes("metrics.jsonl"),
                "checkpoint": {str(p): 1 for p in root.rglob("checkpoint-*")},
                "eval": sizes("samples*.jsonl"),
            }
        except FileNotFoundError:  # a temporary folder was renamed while we looked: look again
            continue


def _kill_once_it_moves(proc: subprocess.Popen, root: Path, seen: dict[str, dict],
                        rng: random.Random) -> str | None:
    """Once the run directory shows progress beyond anything an earlier life reached (a resumed
    life rewriting what an earlier one left is not progress), wait a random moment and SIGKILL
    the process group; return the phases that moved (None when the process ended first).
    ``seen`` keeps the furthest state reached."""
    def moved() -> list[str]:
        now = _progress(root)
        return [k for k in now if any(v > seen[k].get(f, 0) for f, v in now[k].items())]

    while proc.poll() is None:
        if moved():
            time.sleep(rng.uniform(0, 0.2))
            if proc.poll() is not None:
                return None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            phases = moved()
            for k, files in _progress(root).items():
                for f, v in files.items():
                    seen[k][f] = max(v, seen[k].get(f, 0))
            return "+".join(phases)
        time.sleep(0.005)
    return None


def _killed_again_and_again(args: list[str], root: Path, log: Path, kills_wanted: int,
                            rng: random.Random) -> list[str]:
    """Start, kill once it moves, start again... ``kills_wanted`` times, then run to the end."""
    kills, seen = [], {k: {} for k in ("data", "stage", "checkpoint", "eval")}
    for _ in range(kills_wanted):
        proc = _start(args, log)
        phase = _kill_once_it_moves(proc, root, seen, rng)
        if phase is None:  # it finished: nothing left to kill
            assert proc.returncode == 0, log.read_text()[-3000:]
            break
        kills.append(phase)
    final = _start(args, log)
    assert final.wait() == 0, log.read_text()[-3000:]
    return kills


def _samples(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("samples.jsonl"))}


def _same_run(done: Path, reference: Path) -> None:
    ref, got = json.loads((reference / "summary.json").read_text()), \
        json.loads((done / "summary.json").read_text())
    assert got["results"] == ref["results"]
    assert got["comparisons"] == ref["comparisons"]
    assert _samples(done) == _samples(reference)
    for f in done.rglob("samples.jsonl"):  # every query answered once
        keys = [(s["behaviour_id"], s["input"]) for s in map(json.loads, f.read_text().splitlines())]
        assert len(keys) == len(set(keys))
    assert not list(done.rglob("samples.partial*.jsonl"))


def _steps_logged_once(stages: Path) -> None:
    for metrics in stages.rglob("metrics.jsonl"):
        steps = [r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r]
        assert steps == list(range(1, len(steps) + 1)), metrics


def _reference_and_killed(args: list[str], tmp_path: Path, kills_wanted: int,
                          rng: random.Random) -> tuple[Path, Path, list[str]]:
    """An uninterrupted run of ``args``, and one killed ``kills_wanted`` times and resumed."""
    reference = tmp_path / "reference"
    assert _start([*args, "--out", str(reference)], tmp_path / "ref.log").wait() == 0, \
        (tmp_path / "ref.log").read_text()[-3000:]
    out = tmp_path / "killed"
    kills = _killed_again_and_again([*args, "--out", str(out)], out, tmp_path / "killed.log",
                                    kills_wanted, rng)
    return reference, out, kills


def test_a_run_killed_at_a_dozen_random_moments_ends_as_the_uninterrupted_run(tmp_path):
    args = ["run", "configs/quickstart.yaml", "--smoke", *RUN_SETS]
    reference, out, kills = _reference_and_killed(args, tmp_path, 16, random.Random(SEED))
    print(f"CRASH_SEED={SEED}: {len(kills)} kills, phases moved in each life: {kills}")
    assert len(kills) >= 12, kills
    moved = {p for k in kills for p in k.split("+")}
    assert {"data", "stage", "checkpoint", "eval"} <= moved, kills
    _same_run(out, reference)
    _steps_logged_once(out / "stages")


def test_a_sweep_with_two_jobs_killed_at_five_random_moments_ends_as_the_uninterrupted_one(
        tmp_path):
    args = ["sweep", "configs/arithmetic_effect.yaml", "--smoke", "--jobs", "2",
            "--set", "sweep.grid.seed=[0]",
            "--set", "sweep.points=[{curricula: [proactive]}, {curricula: [stage1_only]}]",
            "--set", "train.save_steps=1", "--set", "train.max_steps=8",
            "--set", "eval.batch_size=1"]
    reference, out, kills = _reference_and_killed(args, tmp_path, 6, random.Random(SEED + 1))
    print(f"CRASH_SEED={SEED}: sweep, {len(kills)} kills in phases {kills}")
    assert len(kills) >= 5, kills
    ref_summary = json.loads((reference / "sweep_summary.json").read_text())
    got_summary = json.loads((out / "sweep_summary.json").read_text())
    assert got_summary["curricula"] == ref_summary["curricula"]
    for point in (reference / "runs").iterdir():
        _same_run(out / "runs" / point.name, point)
    _steps_logged_once(out / "stages")
