"""One run across processes: `accelerate launch --multi_gpu --num_processes 2` on a machine
without GPUs starts two CPU processes (gloo) through torch's launcher, as it starts one process
per GPU elsewhere (`--cpu --num_processes 2` would start one process: accelerate sends CPU
multi-process launches through MPI). The same training as one process, every query answered
once, files written by one process, a killed launch resumed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pbb.jsonio import read_jsonl
from tests.conftest import free_port, run_cli

pytestmark = pytest.mark.slow

ARGS = ["configs/quickstart.yaml", "--smoke", "--no-progress",
        "--set", 'curricula=["proactive","stage1_only"]', "--set", "train.max_steps=3"]


def _launch_cmd(out: Path, args=ARGS) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "-m", "pbb", "run", *args,
            "--out", str(out)]


def _launch(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_launch_cmd(out), capture_output=True, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    two = _launch(d / "two")
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    one = run_cli("run", *ARGS, "--out", str(d / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    return d / "one", d / "two", two


def test_two_processes_train_the_one_process_update(runs):
    one, two, _ = runs
    stages = sorted(p.name for p in (one / "stages").iterdir())
    assert stages == sorted(p.name for p in (two / "stages").iterdir())  # same stage keys
    for name in stages:
        a = [r for r in read_jsonl(one / "stages" / name / "metrics.jsonl") if "loss" in r]
        b = [r for r in read_jsonl(two / "stages" / name / "metrics.jsonl") if "loss" in r]
        assert [r["step"] for r in b] == [r["step"] for r in a] == [1, 2, 3]  # logged once each
        for x, y in zip(a, b):  # rows split over processes, gradients summed: the same step
            assert y["loss"] == pytest.approx(x["loss"], rel=1e-4)
            assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-3)
            assert (y["rows"], y["tokens"]) == (x["rows"], x["tokens"])
        done = json.loads((two / "stages" / name / "done.json").read_text())
        assert done["processes"] == 2


def test_every_query_is_answered_and_written_once(runs):
    one, two, _ = runs
    for cur in ("proactive", "stage1_only"):
        for mode in ("recall", "cot"):
            d = two / "eval" / cur / mode
            assert sorted(p.name for p in d.iterdir()) == ["samples.jsonl"]  # partials merged
            a, b = read_jsonl(one / "eval" / cur / mode / "samples.jsonl"), read_jsonl(d / "samples.jsonl")
            assert [(s["behaviour_id"], s["input"]) for s in b] == \
                [(s["behaviour_id"], s["input"]) for s in a]
            same = sum(x["completion"] == y["completion"] for x, y in zip(a, b))
            assert same >= 0.9 * len(a)  # the same weights up to float summation order
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2
    for r in summary["results"]:  # the numbers recompute from the merged samples
        by = {}
        for x in read_jsonl(two / "eval" / r["curriculum"] / r["mode"] / "samples.jsonl"):
            if x["split"] == r["split"]:
                by.setdefault(x["behaviour_id"], []).append(x["score"])
        assert r["accuracy"] == pytest.approx(sum(sum(v) / len(v) for v in by.values()) / len(by))


def test_one_process_speaks_and_writes(runs):
    _, two, launched = runs
    said = launched.stdout + launched.stderr
    # proactive's two stages, each announced once (not once per process); stage1_only reuses one
    assert said.count("training on") == 2 and said.count("done earlier") == 1
    assert said.count("wrote ") == 1


def _kill_and_resume(out: Path, args: list[str], marker: str, stage: str) -> tuple[Path, dict]:
    """Start a launch, wait for a complete checkpoint (``marker``: a glob under ``out``), kill
    the launcher and every worker mid-stage, launch again; the stage directory (glob ``stage``)
    and its done.json."""
    import os
    import signal
    import time

    proc = subprocess.Popen(_launch_cmd(out, args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list(out.glob(marker)) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before a checkpoint was seen"
    # the launcher and both workers, mid-stage (torch's launcher starts the workers in their own
    # process groups: find them by their command line, which names this run's directory)
    subprocess.run(["pkill", "-KILL", "-f", str(out)])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)
    assert subprocess.run(["pgrep", "-f", str(out)], capture_output=True).stdout == b""
    (stage_dir,) = out.glob(stage)
    assert not (stage_dir / "done.json").exists()
    again = subprocess.run(_launch_cmd(out, args), capture_output=True, text=True)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    return stage_dir, json.loads((stage_dir / "done.json").read_text())


def test_a_killed_launch_resumes_mid_stage(tmp_path):
    args = ["configs/quickstart.yaml", "--smoke", "--no-progress", "--set", 'curricula=["stage1_only"]',
            "--set", 'eval.modes=["recall"]', "--set", "train.max_steps=-1",
            "--set", "train.save_steps=4"]
    out = tmp_path / "r"
    stage, done = _kill_and_resume(out, args, "stages/*/trainer/checkpoint-*/state.json",
                                   "stages/stage1-*")
    assert done["resumed"] is True and done["steps"] == 24  # 3 epochs of 8 steps
    steps = [r["step"] for r in read_jsonl(stage / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 25))  # every step logged exactly once across the two launches


def test_grpo_stages_train_across_two_processes_and_log_once(tmp_path):
    """RL under the launcher: TRL's GRPOTrainer runs data parallel (each process generates and
    scores its own share of rl.batch_size, the batch over all processes); one process writes
    the stage directory, metrics and every process's rollouts."""
    args = ["configs/retroactive_quick.yaml", "--smoke", "--no-progress",
            "--set", 'curricula=["rl_only"]', "--set", 'eval.modes=["cot"]',
            "--set", "rl.max_steps=2", "--set", "rl.batch_size=8", "--set", "rl.num_generations=4"]
    out = tmp_path / "r"
    done = subprocess.run(_launch_cmd(out, args), capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (stage,) = out.glob("stages/activation_rl-*")
    info = json.loads((stage / "done.json").read_text())
    assert info["processes"] == 2 and info["steps"] == 2 and info["algorithm"] == "grpo"
    assert [r["step"] for r in read_jsonl(stage / "metrics.jsonl") if "reward" in r] == [1, 2]
    rollouts = read_jsonl(stage / "rollouts.jsonl")
    # every completion of both processes once: 4 per process per step, 2 steps
    assert len(rollouts) == 4 * 2 * 2 and sorted({r["step"] for r in rollouts}) == [1, 2]
    assert (stage / "model" / "model.safetensors").is_file()
    said = done.stdout + done.stderr
    assert said.count("GRPO on") == 1 and said.count("wrote ") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2


def test_a_killed_grpo_launch_resumes_mid_stage(tmp_path):
    """RL resume under the launcher: TRL's checkpoint of both processes, the logs and rollouts
    cut back to it, every step logged once across the two launches."""
    args = ["configs/retroactive_quick.yaml", "--smoke", "--no-progress",
            "--set", 'curricula=["rl_only"]', "--set", 'eval.modes=["cot"]',
            "--set", "rl.max_steps=6", "--set", "rl.save_steps=2", "--set", "rl.batch_size=8",
            "--set", "rl.num_generations=4"]
    out = tmp_path / "r"
    # TRL writes trainer_state.json last; a torn checkpoint would be skipped on resume anyway
    stage, info = _kill_and_resume(out, args, "stages/*/trainer/checkpoint-*/trainer_state.json",
                                   "stages/activation_rl-*")
    assert info["resumed"] is True and info["steps"] == 6 and info["processes"] == 2
    assert [r["step"] for r in read_jsonl(stage / "metrics.jsonl") if "reward" in r] == \
        list(range(1, 7))
    steps = [r["step"] for r in read_jsonl(stage / "rollouts.jsonl")]
    assert sorted(set(steps)) == list(range(1, 7))
    assert all(steps.count(s) == 4 * 2 for s in range(1, 7))  # 4 per process, once each


def test_an_rl_batch_the_processes_cannot_share_is_refused_before_any_write(tmp_path):
    """rl.batch_size is the batch over all processes: 3 completions in groups of 3 load and run
    in one process, and a 2-process launch refuses them with one line before writing anything."""
    args = ["configs/retroactive_quick.yaml", "--smoke", "--no-progress",
            "--set", 'curricula=["rl_only"]', "--set", "rl.batch_size=3",
            "--set", "rl.num_generations=3"]
    out = tmp_path / "r"
    done = subprocess.run(_launch_cmd(out, args), capture_output=True, text=True)
    assert done.returncode != 0
    said = [line for line in (done.stdout + done.stderr).splitlines() if "rl.batch_size" in line]
    assert said and all("3 completions (the batch over all processes) do not split evenly over 2 "
                        "processes" in line for line in said), done.stderr[-3000:]
    assert not out.exists()
